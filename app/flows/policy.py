"""Policy decisions: pure functions of (flow, request, people, clock) that return a reason."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from app.flows.schema import Flow, format_duration

REASON_MAX_LENGTH = 2000


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str
    # No __bool__ on purpose: `verdict or default` must never turn a refusal into a yes.


def allow(reason: str) -> Verdict:
    return Verdict(True, reason)


def refuse(reason: str) -> Verdict:
    return Verdict(False, reason)


@dataclass(frozen=True)
class RequestInput:
    """What a requester submitted, before it is stored."""

    flow: str
    target: str
    duration: timedelta
    reason: str


def check_request(flow: Flow | None, ask: RequestInput) -> dict[str, str]:
    """Field -> what is wrong with it; empty when the request may be stored.

    Fields are 'target', 'duration' and 'reason', the names the modal maps to its blocks.
    """
    errors: dict[str, str] = {}
    if flow is None:
        return {"target": f"There is no flow named {ask.flow!r}; pick one from the list."}
    if flow.target(ask.target) is None:
        errors["target"] = f"{ask.target!r} is not a target of the {flow.name} flow."
    if ask.duration not in flow.durations:
        allowed = ", ".join(format_duration(d) for d in flow.durations)
        errors["duration"] = f"Pick one of the durations this flow allows: {allowed}."
    elif ask.duration > flow.max_duration:
        errors["duration"] = f"At most {format_duration(flow.max_duration)}."
    reason = ask.reason.strip()
    if flow.reason_required and not reason:
        errors["reason"] = "Say why you need this access."
    elif len(reason) > REASON_MAX_LENGTH:
        errors["reason"] = f"Keep the reason under {REASON_MAX_LENGTH} characters."
    return errors


def may_decide(
    flow: Flow,
    *,
    requester_id: str,
    approver_id: str,
    usergroup_members: Mapping[str, frozenset[str]],
) -> Verdict:
    """Decide whether this person may approve or deny this request, and say why.

    Approvers come from the flow only, never from who can see the channel; group
    membership is what Slack says at the moment of the click.
    """
    if approver_id == requester_id:
        return refuse("You can't approve or deny your own request.")
    if approver_id in flow.approvers.users:
        return allow(f"<@{approver_id}> is an approver of {flow.name}")
    for group in flow.approvers.usergroups:
        if approver_id in usergroup_members.get(group, frozenset()):
            return allow(f"<@{approver_id}> is in approver group <!subteam^{group}>")
    return refuse(f"You are not an approver of the {flow.name} flow.")


def principal_for(flow: Flow, *, user_id: str, email: str | None) -> str | None:
    """The cloud principal for a Slack user: an explicit mapping, else their profile email."""
    mapped = flow.identity.principals
    if user_id in mapped:
        return mapped[user_id]
    if email and email in mapped:
        return mapped[email]
    return email or None
