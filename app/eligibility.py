"""Who may request a flow, asked again at every step (submit, approval, grant)."""

from __future__ import annotations

from app.flows.hooks import call_hook
from app.flows.loader import LoadedFlow
from app.flows.policy import Verdict, may_decide, may_request
from app.flows.schema import Flow
from app.identity import principal_for
from app.runtime import Runtime


def requester_verdict(rt: Runtime, loaded: LoadedFlow, user_id: str) -> Verdict:
    """Whether this person may request this flow now, per Slack's current profile and groups
    and the flow's get_requesters hook (which, if it fails, adds nobody: fail closed)."""
    flow = loaded.flow
    if flow.requesters is None:
        return may_request(flow, user_id=user_id, email=None, group_members={})
    needs_email = bool(flow.requesters.email_domains) or "get_requesters" in loaded.hooks
    email = rt.directory.user(user_id).email if needs_email else None
    members = rt.directory.members_of(flow.requesters.usergroups)
    extra = (
        call_hook(loaded, "get_requesters").names()
        if "get_requesters" in loaded.hooks
        else frozenset()
    )
    return may_request(
        flow, user_id=user_id, email=email, group_members=members, extra_requesters=extra
    )


def requestable_flows(rt: Runtime, user_id: str) -> list[Flow]:
    """The flows this person may request: the modal shows only these."""
    return [loaded.flow for loaded in rt.flows if requester_verdict(rt, loaded, user_id).allowed]


def approver_verdict(
    rt: Runtime,
    flow: Flow,
    *,
    requester_id: str,
    user_id: str,
    extra_approvers: frozenset[str] = frozenset(),
) -> Verdict:
    """May this person decide (or revoke) this requester's access, per the flow and Slack's
    user groups now (plus anyone a get_approvers hook named, where the caller asked it)."""
    return may_decide(
        flow,
        requester_id=requester_id,
        approver_id=user_id,
        usergroup_members=rt.directory.members_of(flow.approvers.usergroups),
        extra_approvers=extra_approvers,
    )


def request_problem(rt: Runtime, loaded: LoadedFlow, target: str, user_id: str) -> str | None:
    """Why this person cannot request this target now (None: they can): not among the
    requesters, or no identity at the target's provider (told now, not at grant time)."""
    eligible = requester_verdict(rt, loaded, user_id)
    if not eligible.allowed:
        return eligible.reason
    email = rt.directory.user(user_id).email
    return principal_for(rt.providers, loaded, target, user_id=user_id, email=email).problem
