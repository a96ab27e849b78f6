"""The Flow schema: what can be requested, by whom, who approves, for how long.

A flow file in `flows/` builds one `Flow`; pydantic validates it when the file loads,
so a mistake is reported with the field at fault before any process starts.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from app.clients import name_problem

# People and on-call sources live in their own module; flows import them from here.
from app.flows.people import (  # noqa: F401
    _DOMAIN,
    MAX_APPROVER_DMS,
    Approvers,
    Escalation,
    OnCall,
    OpenIncident,
    OpsgenieOnCall,
    PagerDutyOnCall,
    People,
    Watchers,
)

# Targets live in their own module; flows import them from here, as they always have.
from app.flows.targets import (  # noqa: F401
    BUILTIN_PROVIDERS,
    SLACK_CHANNEL,
    AwsIamGroupTarget,
    AwsRoleTarget,
    AwsSsoPermissionSetTarget,
    CustomTarget,
    EntraGroupTarget,
    GcpImpersonationTarget,
    GcpRoleBindingTarget,
    GoogleGroupTarget,
    MariaDBLoginTarget,
    OktaGroupTarget,
    PostgresAccountTarget,
    PostgresLoginTarget,
    Target,
    provider_of,
)
from app.flows.targets import Strict as _Strict

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class Identity(_Strict):
    """How a Slack user becomes a principal at a provider.

    In order: the provider's own map, the flow's map, the flow's `get_principal` hook (when
    the module defines one, it decides for everyone not mapped), the Slack profile email
    (unless `use_email` is False). Map keys are Slack user ids or emails.
    """

    principals: dict[str, str] = Field(default_factory=dict)
    # Provider name (aws_sso, gcp_role, a custom provider's name…) -> its own map.
    per_provider: dict[str, dict[str, str]] = Field(default_factory=dict)
    use_email: bool = True
    # True: the email is the one the person's verified identity link says (their company
    # OpenID Connect login, app.identity_links), never the Slack profile's; someone who has
    # not linked is refused with the way to link. Needs the LATCHKEY_OIDC_* settings.
    verified: bool = False


class Flow(_Strict):
    """One access flow, as the admin wrote it."""

    name: str
    description: str
    targets: tuple[Target, ...] = Field(min_length=1)
    approvers: People
    # Where cards are posted; a target may name its own (`approval_channel` on the target).
    approval_channel: str
    # Each approver also gets the card in a DM, with working buttons; every copy is
    # re-rendered at every transition, so a decision anywhere shows everywhere.
    approver_dms: bool = False
    # Who sees the cards without being approvers (a copy without buttons).
    notify: Watchers = Field(default_factory=Watchers)
    # Steps taken while a request waits for a decision, in order of `after`.
    escalation: tuple[Escalation, ...] = ()
    # An approver of the flow (or a Latchkey admin) may request it for someone else: the
    # modal's "For" picker. Eligibility is the beneficiary's; neither may approve it.
    on_behalf: bool = False
    # auto_approve applies only while this incident check finds one open.
    auto_approve_during: OpenIncident | None = None
    durations: tuple[timedelta, ...] = Field(min_length=1)
    max_duration: timedelta
    # Who may request; None means everyone in the workspace.
    requesters: People | None = None
    # N approvals from N distinct approvers; one deny ends the request.
    approvals_required: int = Field(default=1, ge=1, le=10)
    # "passkey": an approval counts only once the approver confirms that request on the
    # web's page with their registered passkey (app.passkeys); needs LATCHKEY_PUBLIC_URL.
    # A stolen Slack session can then deny, but not approve.
    approval_assurance: Literal["slack", "passkey"] = "slack"
    # "passkey": the requester's own activation (break-glass) counts only once confirmed
    # with their passkey on the web's page, like approvals under approval_assurance.
    requester_assurance: Literal["slack", "passkey"] = "slack"
    # The requester may approve their own request (and counts toward the quorum) only
    # when this says so; `latchkey flows check` warns about it.
    allow_self_approval: bool = False
    # Break-glass: a requester may activate access at once (mandatory reason, a confirm
    # step); the channel is alerted loudly and an approver reviews it afterwards.
    break_glass: bool = False
    # People whose requests are approved without a human (declarative auto-approval).
    auto_approve: People | None = None
    # Requests with no decision in this time are timed out; approvers are reminded once
    # halfway. None: they wait until someone decides or the requester cancels.
    pending_timeout: timedelta | None = timedelta(hours=24)
    reason_required: bool = True
    reason_min_length: int = Field(default=0, ge=0, le=500)
    # A regular expression the reason must contain a match of (e.g. a ticket id), and the
    # words that tell the requester what is expected when it does not.
    reason_pattern: str | None = None
    reason_hint: str = ""
    identity: Identity = Field(default_factory=Identity)
    # Slack accounts: guests (multi- and single-channel) and people of another team or
    # organisation (Slack Connect) may request only where the flow opts them in.
    # Deactivated accounts, bots and unconfirmed emails never may; approvers never are guests.
    allow_guests: bool = False
    allow_other_teams: bool = False
    # Principals must be emails (or GCP members) in these domains; empty: any principal.
    principal_domains: tuple[str, ...] = ()
    # The requester is warned this long before a grant ends, or a tenth of the grant's
    # length when that is shorter (a 20-minute grant is warned 2 minutes ahead). None: never.
    expiry_notice: timedelta | None = timedelta(minutes=10)
    # Extensions: how many a grant may have (0: none), whether each needs an approver
    # (through the same card as a request) or is granted automatically within the limits,
    # and the most a grant may last in all, extensions included (default: max_duration
    # for the grant and again for each allowed extension).
    max_extensions: int = Field(default=2, ge=0, le=20)
    extension_needs_approval: bool = True
    max_total_duration: timedelta | None = None
    # Service clients (app.clients) that may request this flow over the web's API, by the
    # name `latchkey clients create` gave them; their token must be scoped to the flow too.
    # Empty: no machine may. Their requests always wait for a person in Slack.
    service_clients: tuple[str, ...] = ()

    @property
    def total_duration_cap(self) -> timedelta:
        return self.max_total_duration or self.max_duration * (1 + self.max_extensions)

    def notice_lead(self, window: timedelta) -> timedelta | None:
        """How long before the end of a grant of this length its holder is warned.

        A tenth of the grant, but at least a minute (time to read the DM and extend), never
        more than half the grant nor more than `expiry_notice`.
        """
        if self.expiry_notice is None:
            return None
        return min(self.expiry_notice, max(window / 10, timedelta(minutes=1)), window / 2)

    @field_validator("reason_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("service_clients")
    @classmethod
    def _client_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        problems = [p for p in map(name_problem, value) if p]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("principal_domains")
    @classmethod
    def _principal_domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for domain in value:
            if not _DOMAIN.match(domain):
                raise ValueError(f"{domain!r} is not an email domain (like example.com)")
        return tuple(d.lower() for d in value)

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError("must be lowercase letters, digits, '-' or '_' (at most 63)")
        return value

    @field_validator("approval_channel")
    @classmethod
    def _channel_id(cls, value: str) -> str:
        if not SLACK_CHANNEL.match(value):
            raise ValueError(f"{value!r} is not a Slack channel id (C… or G…)")
        return value

    @field_validator("durations")
    @classmethod
    def _positive_sorted(cls, value: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
        if any(d <= timedelta(0) for d in value):
            raise ValueError("every duration must be longer than zero")
        if len(set(value)) != len(value):
            raise ValueError("durations are listed twice")
        return tuple(sorted(value))

    @model_validator(mode="after")
    def _consistent(self) -> Flow:
        if self.max_duration <= timedelta(0):
            raise ValueError("max_duration must be longer than zero")
        too_long = [d for d in self.durations if d > self.max_duration]
        if too_long:
            raise ValueError(
                f"durations {', '.join(format_duration(d) for d in too_long)} exceed "
                f"max_duration {format_duration(self.max_duration)}"
            )
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError("two targets share a name; target names must be unique")
        if self.approvers.email_domains:
            raise ValueError("approvers: email domains cannot approve; list users or user groups")
        if self.pending_timeout is not None and self.pending_timeout <= timedelta(0):
            raise ValueError("pending_timeout must be longer than zero (or None)")
        if self.expiry_notice is not None and self.expiry_notice <= timedelta(0):
            raise ValueError("expiry_notice must be longer than zero (or None)")
        if self.max_total_duration is not None and self.max_total_duration < self.max_duration:
            raise ValueError("max_total_duration cannot be shorter than max_duration")
        afters = [step.after for step in self.escalation]
        if afters != sorted(set(afters)):
            raise ValueError("escalation: list the steps in order of `after`, each later")
        if self.pending_timeout is not None and any(a >= self.pending_timeout for a in afters):
            raise ValueError("escalation: every step must come before pending_timeout")
        if self.auto_approve_during is not None and self.auto_approve is None:
            raise ValueError("auto_approve_during needs auto_approve (who is approved then)")
        if self.reason_pattern and not self.reason_hint:
            raise ValueError(
                "reason_hint: say what reason_pattern expects (e.g. 'a JIRA ticket like OPS-123')"
            )
        return self

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)

    def channel_for(self, target: str) -> str:
        """Where a request for this target is decided: the target's channel, else the flow's."""
        found = self.target(target)
        return (found.approval_channel if found else None) or self.approval_channel


def format_duration(duration: timedelta) -> str:
    """'1h 30m', '45s', '2d' — how durations appear in menus and messages."""
    seconds = int(duration.total_seconds())
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts) or "0s"


def dump_flow(flow: Flow) -> dict[str, Any]:
    return flow.model_dump(mode="json")
