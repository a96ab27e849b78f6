"""Who may request a flow, asked again at every step (submit, approval, grant)."""

from __future__ import annotations

from app.flows.policy import Verdict, may_request
from app.flows.schema import Flow
from app.runtime import Runtime


def requester_verdict(rt: Runtime, flow: Flow, user_id: str) -> Verdict:
    """Whether this person may request this flow now, per Slack's current profile and groups."""
    if flow.requesters is None:
        return may_request(flow, user_id=user_id, email=None, group_members={})
    email = rt.directory.user(user_id).email if flow.requesters.email_domains else None
    members = rt.directory.members_of(flow.requesters.usergroups)
    return may_request(flow, user_id=user_id, email=email, group_members=members)


def requestable_flows(rt: Runtime, user_id: str) -> list[Flow]:
    """The flows this person may request: the modal shows only these."""
    return [
        loaded.flow for loaded in rt.flows if requester_verdict(rt, loaded.flow, user_id).allowed
    ]
