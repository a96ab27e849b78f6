"""Policy decisions: pure functions of (flow, request, people, clock) that return a reason."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
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
    problem = check_reason(flow, ask.reason)
    if problem:
        errors["reason"] = problem
    return errors


def clamp_duration(flow: Flow, asked: timedelta) -> tuple[timedelta | None, str | None]:
    """The duration the flow allows now for something decided as `asked`, and why it differs.

    A flow may have changed since a request was made (a lower `max_duration`, other
    durations): what was asked is kept when the flow still offers it, else shortened to the
    longest duration it offers that is not above what was asked, never lengthened. (None,
    why) when the flow offers nothing that short.
    """
    allowed = [d for d in flow.durations if timedelta(0) < d <= min(asked, flow.max_duration)]
    if asked in allowed:
        return asked, None
    if not allowed:
        return None, (
            f"The {flow.name} flow no longer allows {format_duration(asked)} or less "
            f"(it allows {', '.join(format_duration(d) for d in flow.durations)}); "
            "ask for it again."
        )
    longest = max(allowed)
    why = (
        f"at most {format_duration(flow.max_duration)}"
        if asked > flow.max_duration
        else f"{', '.join(format_duration(d) for d in flow.durations)}, not {format_duration(asked)}"
    )
    return longest, (
        f"Shortened from {format_duration(asked)} to {format_duration(longest)}: "
        f"the {flow.name} flow now allows {why}."
    )


def approve_for_less_problem(flow: Flow, asked: timedelta, chosen: timedelta) -> str | None:
    """Why an approver's "approve for less" choice is not one (None when it is): only the
    flow's durations above zero and below what was asked may be chosen, so a forged value
    (0, or a length the flow does not offer) is refused."""
    if timedelta(0) < chosen < asked and chosen in flow.durations:
        return None
    if chosen > asked:
        return "You can approve for less time than asked, never more."
    offered = ", ".join(format_duration(d) for d in flow.durations if timedelta(0) < d < asked)
    return (
        f"You can approve for less only with one of the {flow.name} flow's durations "
        f"shorter than asked ({offered or 'none'}); {format_duration(chosen)} is not one."
    )


def check_reason(flow: Flow, text: str) -> str | None:
    """What is wrong with a justification under the flow's rules, if anything."""
    reason = text.strip()
    if not reason:
        return "Say why you need this access." if flow.reason_required else None
    if len(reason) > REASON_MAX_LENGTH:
        return f"Keep the reason under {REASON_MAX_LENGTH} characters."
    if len(reason) < flow.reason_min_length:
        return f"Say a little more: at least {flow.reason_min_length} characters."
    if flow.reason_pattern and not re.search(flow.reason_pattern, reason):
        return f"The reason must include {flow.reason_hint}."
    return None


def may_request(
    flow: Flow,
    *,
    user_id: str,
    email: str | None,
    group_members: Mapping[str, frozenset[str]],
    extra_requesters: frozenset[str] = frozenset(),
) -> Verdict:
    """Decide whether this person may ask for access through this flow.

    `extra_requesters` are user ids or emails named by the flow's get_requesters hook.
    """
    if flow.requesters is None:
        return allow("anyone in the workspace may request")
    if user_id in extra_requesters or (
        email and email.lower() in {e.lower() for e in extra_requesters}
    ):
        return allow("may request: named by the flow's get_requesters hook")
    why = flow.requesters.includes(user_id, email, group_members)
    if why is None:
        return refuse(f"You are not among the people who may request {flow.name}.")
    return allow(f"may request: {why}")


@dataclass(frozen=True)
class Quorum:
    """Where a request stands: distinct counted approvers against the flow's requirement."""

    approvers: tuple[str, ...]
    required: int

    @property
    def reached(self) -> bool:
        return len(self.approvers) >= self.required

    @property
    def progress(self) -> str:
        who = ", ".join(f"<@{a}>" for a in self.approvers)
        return f"{len(self.approvers)} of {self.required} approvals" + (f": {who}" if who else "")


def quorum(flow: Flow, *, requester_id: str, approver_ids: list[str]) -> Quorum:
    """Count approvals: distinct people, the requester only where self-approval is allowed."""
    counted: list[str] = []
    for approver in approver_ids:
        if approver in counted or (approver == requester_id and not flow.allow_self_approval):
            continue
        counted.append(approver)
    return Quorum(tuple(counted), flow.approvals_required)


def may_decide(
    flow: Flow,
    *,
    requester_id: str,
    approver_id: str,
    usergroup_members: Mapping[str, frozenset[str]] | Callable[[], Mapping[str, frozenset[str]]],
    extra_approvers: frozenset[str] = frozenset(),
) -> Verdict:
    """Decide whether this person may approve or deny this request, and say why.

    Approvers come from the flow (and its get_approvers hook) only, never from who can
    see the channel; group membership is what Slack says at the moment of the click.
    `usergroup_members` may be a loader: it is called only for someone not listed by id,
    so a listed approver's click needs no call to Slack.
    """
    if approver_id == requester_id and not flow.allow_self_approval:
        return refuse("You can't approve or deny your own request.")
    if approver_id in flow.approvers.users:
        return allow(f"<@{approver_id}> is an approver of {flow.name}")
    if approver_id in extra_approvers:
        # Named for this request: by the get_approvers hook, an escalation step, or on call.
        return allow(f"<@{approver_id}> was named an approver of this request")
    if flow.approvers.usergroups:
        members = usergroup_members() if callable(usergroup_members) else usergroup_members
        for group in flow.approvers.usergroups:
            if approver_id in members.get(group, frozenset()):
                return allow(f"<@{approver_id}> is in approver group <!subteam^{group}>")
    return refuse(f"You are not an approver of the {flow.name} flow.")


@dataclass(frozen=True)
class AutoDecision:
    """approve, deny or human (needs an approver), and why."""

    outcome: str
    reason: str


def auto_decide(
    flow: Flow,
    *,
    requester_id: str,
    email: str | None,
    group_members: Mapping[str, frozenset[str]],
    hook_defined: bool,
    hook_value: object,
    hook_error: str | None,
    eligible: Verdict | None = None,
    on_call: Mapping[str, str] | None = None,
    no_incident: str | None = None,
) -> AutoDecision:
    """Whether a request is decided without a human: the on_request hook first, then the
    flow's auto_approve list. A hook error or an unexpected answer means a human decides;
    a requester who may not request this flow (any more) is never auto-approved.

    `on_call`: who the auto_approve list's on-call sources name now (Slack id -> why);
    `no_incident`: set (to the incident check's words) when auto_approve_during found none
    open, or could not ask."""
    if eligible is not None and not eligible.allowed:
        return AutoDecision("deny", f"not eligible: {eligible.reason}")
    if hook_error is not None:
        return AutoDecision("human", f"on_request hook failed ({hook_error}); needs human approval")
    if hook_defined and hook_value is not None:
        approve_ = getattr(hook_value, "approve", None)
        reason = str(getattr(hook_value, "reason", "") or "").strip()
        if not isinstance(approve_, bool) or not reason:
            return AutoDecision(
                "human",
                "on_request hook returned neither approve(reason) nor deny(reason); needs human approval",
            )
        return AutoDecision("approve" if approve_ else "deny", f"on_request: {reason}")
    if flow.auto_approve is not None and no_incident is not None:
        # auto_approve_during: without an open incident nobody is approved automatically.
        return AutoDecision(
            "human", f"auto_approve only during {no_incident}; needs human approval"
        )
    if flow.auto_approve is not None:
        why = flow.auto_approve.includes(requester_id, email, group_members, on_call)
        if why is not None:
            during = flow.auto_approve_during
            return AutoDecision(
                "approve",
                f"auto_approve: {why}" + (f", during {during.describe()}" if during else ""),
            )
    return AutoDecision("human", "needs human approval")
