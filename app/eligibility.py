"""Who may request a flow and who may decide, asked again at every step (submit, approval,
grant), from Slack as it is now: never from an answer older than Slack's last change event
about that person or group (see app.slack.directory)."""

from __future__ import annotations

from sqlmodel import Session

from app.accounts import account_problem
from app.clients import is_client
from app.clients.eligibility import client_principal, client_verdict
from app.flows.hooks import call_hook
from app.flows.loader import LoadedFlow
from app.flows.policy import Verdict, may_decide, may_request, refuse
from app.flows.schema import Flow
from app.identity import Principal, principal_for
from app.identity_links.resolve import email_for
from app.runtime import Runtime
from app.slack.directory import SlackChanges, SlackUser, group_key, user_key


def current_user(rt: Runtime, user_id: str) -> SlackUser:
    """users.info as of Slack's last change event about this person (afresh when the
    shared counters cannot be read)."""
    versions = SlackChanges(rt.redis).versions([user_key(user_id)])
    if versions is None:
        return rt.directory.user(user_id, fresh=True)
    return rt.directory.user(user_id, version=versions[user_key(user_id)])


def current_members(rt: Runtime, group_ids: tuple[str, ...]) -> dict[str, frozenset[str]]:
    """Members of these user groups as of Slack's last change event about each."""
    if not group_ids:
        return {}
    versions = SlackChanges(rt.redis).versions(group_key(g) for g in group_ids)
    return rt.directory.members_of(group_ids, versions or {})


def requester_account_problem(rt: Runtime, flow: Flow, user_id: str) -> str | None:
    """Why this person's Slack account may not request this flow (None: it may). A service
    client has no Slack account: requester_verdict decides about it."""
    if is_client(user_id):
        return None
    account = current_user(rt, user_id).account
    if account is None:
        return None
    return account_problem(
        account,
        rt.directory.workspace(),
        allow_guests=flow.allow_guests,
        allow_other_teams=flow.allow_other_teams,
    )


def requester_verdict(rt: Runtime, loaded: LoadedFlow, user_id: str) -> Verdict:
    """Whether this person may request this flow now, per Slack's current account, profile
    and groups and the flow's get_requesters hook (which, if it fails, adds nobody: fail
    closed). Group members are asked of Slack only for someone not listed by id."""
    if is_client(user_id):
        return client_verdict(rt, loaded, user_id)
    flow = loaded.flow
    problem = requester_account_problem(rt, flow, user_id)
    if problem is not None:
        return refuse(problem)
    if flow.requesters is None:
        return may_request(flow, user_id=user_id, email=None, group_members={})
    if user_id in flow.requesters.users:
        return may_request(flow, user_id=user_id, email=None, group_members={})
    needs_email = bool(flow.requesters.email_domains) or "get_requesters" in loaded.hooks
    email = current_user(rt, user_id).email if needs_email else None
    members = current_members(rt, flow.requesters.usergroups)
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


def is_admin(rt: Runtime, user_id: str) -> bool:
    """A Latchkey admin (LATCHKEY_ADMINS: users, or members of user groups now)."""
    settings = rt.settings
    if user_id in settings.admin_users:
        return True
    return any(user_id in m for m in current_members(rt, settings.admin_groups).values())


def on_behalf_problem(rt: Runtime, flow: Flow, user_id: str, beneficiary: str) -> str | None:
    """Why this person may not request this flow for `beneficiary` (None: they may): the
    flow must allow it, and they must be one of its approvers or a Latchkey admin."""
    if not flow.on_behalf:
        return f"The {flow.name} flow does not take requests for someone else."
    if beneficiary == user_id:
        return None
    if is_admin(rt, user_id):
        return None
    verdict = may_decide(
        flow,
        requester_id=beneficiary,
        approver_id=user_id,
        usergroup_members=lambda: current_members(rt, flow.approvers.usergroups),
    )
    if not verdict.allowed:
        return f"Only approvers of {flow.name} and Latchkey admins may request it for someone else."
    return None


def for_others(rt: Runtime, user_id: str, flows: list[Flow]) -> frozenset[str]:
    """The flows among these whose form offers this person the "For" picker."""
    return frozenset(
        f.name for f in flows if f.on_behalf and on_behalf_problem(rt, f, user_id, "") is None
    )


def approver_verdict(
    rt: Runtime,
    flow: Flow,
    *,
    requester_id: str,
    user_id: str,
    extra_approvers: frozenset[str] = frozenset(),
) -> Verdict:
    """May this person decide (or revoke) this requester's access, per the flow and Slack's
    user groups now (plus anyone a get_approvers hook named, where the caller asked it).

    Listed ids are checked before any call to Slack; group members are fetched only for
    someone not listed. An approver's own account must be a full member of the workspace
    (no flow opts approvers in).
    """
    verdict = may_decide(
        flow,
        requester_id=requester_id,
        approver_id=user_id,
        usergroup_members=lambda: current_members(rt, flow.approvers.usergroups),
        extra_approvers=extra_approvers,
    )
    if not verdict.allowed:
        return verdict
    account = current_user(rt, user_id).account
    problem = account_problem(account, rt.directory.workspace()) if account else None
    if problem is not None:
        return refuse(f"You cannot decide on access: {problem}")
    return verdict


def request_problem(rt: Runtime, loaded: LoadedFlow, target: str, user_id: str) -> str | None:
    """Why this person cannot request this target now (None: they can): their Slack
    account, not among the requesters, or no identity at the target's provider (told now,
    not at grant time)."""
    eligible = requester_verdict(rt, loaded, user_id)
    if not eligible.allowed:
        return eligible.reason
    return requester_principal(rt, loaded, target, user_id).problem


def requester_email(rt: Runtime, requester_id: str) -> str | None:
    """The requester's Slack profile email, for hooks; a service client has none."""
    return None if is_client(requester_id) else rt.directory.user(requester_id).email


def requester_principal(
    rt: Runtime, loaded: LoadedFlow, target: str, requester_id: str, session: Session | None = None
) -> Principal:
    """Who the requester is at the target's provider, as the grant will decide it: a
    service client's own principal, or a person's through the flow's identity rules."""
    if is_client(requester_id):
        return client_principal(rt, loaded, target, requester_id, session)
    email = email_for(rt, loaded.flow, requester_id, current_user(rt, requester_id).email, session)
    return principal_for(rt.providers, loaded, target, user_id=requester_id, email=email)
