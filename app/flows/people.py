"""Sets of people in flows: who may request, approve, be approved automatically, be told
(`People`, `Watchers`), the escalation steps that reach them, and the on-call sources
(PagerDuty, Opsgenie) that name them at the moment of a decision.

Flows import these from app.flows.schema, as they import everything."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from app.flows.targets import SLACK_CHANNEL
from app.flows.targets import Strict as _Strict

_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_SLACK_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-zA-Z0-9-]{1,63}\.)+[a-zA-Z]{2,63}$")


def _slack_ids(pattern: re.Pattern[str], what: str) -> AfterValidator:
    """A check that every id of a tuple has the shape of one kind of Slack id: a typo'd
    id would otherwise load and silently match nobody."""

    def check(value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not pattern.match(item):
                raise ValueError(f"{item!r} is not a Slack {what}")
        return value

    return AfterValidator(check)


SlackUsers = Annotated[tuple[str, ...], _slack_ids(_SLACK_USER, "user id (U… or W…)")]
SlackUserGroups = Annotated[tuple[str, ...], _slack_ids(_SLACK_GROUP, "user-group id (S…)")]
SlackChannels = Annotated[tuple[str, ...], _slack_ids(SLACK_CHANNEL, "channel id (C… or G…)")]


class PagerDutyOnCall(_Strict):
    """Whoever PagerDuty has on call now for a schedule or an escalation policy, at
    escalation levels up to `max_level` (1: only the first responders)."""

    source: Literal["pagerduty"] = "pagerduty"
    schedule: str | None = None
    escalation_policy: str | None = None
    max_level: int = Field(default=1, ge=1, le=10)

    @model_validator(mode="after")
    def _one_of(self) -> PagerDutyOnCall:
        if (self.schedule is None) == (self.escalation_policy is None):
            raise ValueError("name exactly one of schedule or escalation_policy (PagerDuty ids)")
        return self

    def describe(self) -> str:
        what = (
            f"schedule {self.schedule}"
            if self.schedule
            else (f"escalation policy {self.escalation_policy}")
        )
        return f"on call in PagerDuty ({what}, level ≤ {self.max_level})"


class OpsgenieOnCall(_Strict):
    """Whoever Opsgenie has on call now for a schedule (by name)."""

    source: Literal["opsgenie"] = "opsgenie"
    schedule: str

    def describe(self) -> str:
        return f"on call in Opsgenie (schedule {self.schedule})"


OnCall = Annotated[PagerDutyOnCall | OpsgenieOnCall, Field(discriminator="source")]


class OpenIncident(_Strict):
    """An incident open now (triggered or acknowledged) on a service of PagerDuty or Opsgenie."""

    source: Literal["pagerduty", "opsgenie"]
    service: str

    def describe(self) -> str:
        return f"an open {self.source} incident on service {self.service}"


class People(_Strict):
    """A set of people: Slack user ids, user-group ids (members resolved when a decision is
    made), whoever is on call (PagerDuty, Opsgenie: asked when a decision is made, people
    found in Slack by their email) and, where it makes sense, email domains of profiles."""

    users: SlackUsers = ()
    usergroups: SlackUserGroups = ()
    email_domains: tuple[str, ...] = ()
    oncall: tuple[OnCall, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.users or self.usergroups or self.email_domains or self.oncall)

    def includes(
        self,
        user_id: str,
        email: str | None,
        group_members: Mapping[str, frozenset[str]],
        on_call: Mapping[str, str] | None = None,
    ) -> str | None:
        """Why this person is in the set (None when they are not). `on_call`: the people
        the `oncall` sources name now, each with why (app.oncall.people)."""
        if user_id in self.users:
            return f"<@{user_id}> is listed"
        if on_call and user_id in on_call:
            return f"<@{user_id}> is {on_call[user_id]}"
        for group in self.usergroups:
            if user_id in group_members.get(group, frozenset()):
                return f"<@{user_id}> is in <!subteam^{group}>"
        domain = (email or "").rpartition("@")[2].lower()
        if domain and domain in self.email_domains:
            return f"their email is in {domain}"
        return None

    @field_validator("email_domains")
    @classmethod
    def _domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for domain in value:
            if not _DOMAIN.match(domain):
                raise ValueError(f"{domain!r} is not an email domain (like example.com)")
        return tuple(d.lower() for d in value)


# Approvers are People too; the name stays for the admin's readability.
Approvers = People


class Escalation(_Strict):
    """One step of a flow's escalation: when a request has had no decision for `after`,
    these people are told (and, with `may_approve`, may decide it from then on)."""

    after: timedelta
    to: People = Field(default_factory=People)
    # A get_* function of the flow's module, given the request (like get_approvers): the
    # Slack user ids or emails it returns are told too (a service catalogue's owners…).
    hook: str | None = None
    # True: the people told join the approvers of this request (the card says so).
    may_approve: bool = False

    @model_validator(mode="after")
    def _sensible(self) -> Escalation:
        if self.after <= timedelta(0):
            raise ValueError("after must be longer than zero")
        if self.to.email_domains:
            raise ValueError("to: escalate to users or user groups, not email domains")
        if not (self.to.users or self.to.usergroups or self.to.oncall or self.hook):
            raise ValueError("to: name at least one user, user group or on-call source, or a hook")
        if self.hook is not None and not self.hook.startswith("get_"):
            raise ValueError(f"hook: {self.hook!r} must be a get_* function of the flow's module")
        return self


# The most approvers a card is sent to by DM: a group of hundreds would be spammed, and
# each DM is one Slack call per transition. `flows check` says when a flow lists more.
MAX_APPROVER_DMS = 25


class Watchers(_Strict):
    """People and channels who see a flow's cards without deciding: a copy of the card,
    kept current like the channel's, without buttons."""

    users: SlackUsers = ()
    channels: SlackChannels = ()
