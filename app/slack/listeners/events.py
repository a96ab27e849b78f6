"""What Slack tells us changed: people (user_change) and user groups (subteam_*).

Every such event bumps a counter in Redis that every process's cache keys carry, so the
next decision anywhere asks Slack afresh (app.slack.directory). An account that may no
longer take part (deactivated, turned guest, …) loses its live grants at once and its
pending requests are denied, each audited.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from sqlalchemy import select

from app import lifecycle
from app.access import end_grant
from app.accounts import Account, account_problem, withdrawal_reason
from app.lifecycle import EndCause
from app.models import AccessRequest, RequestStatus
from app.runtime import Runtime
from app.slack.directory import SlackChanges, group_key, user_key
from app.slack.listeners.errors import guarded

log = logging.getLogger(__name__)
S = RequestStatus


def withdraw_access(rt: Runtime, account: Account) -> dict[str, list[uuid.UUID]]:
    """End the live grants and deny the pending requests of a person whose Slack account
    may no longer take part, under each request's flow (a flow may opt guests in)."""
    with rt.db.session() as session:
        requests = list(
            session.execute(
                select(AccessRequest).where(
                    AccessRequest.requester_id == account.id,  # type: ignore[arg-type]
                    AccessRequest.status.in_((S.ACTIVE, S.PENDING)),  # type: ignore[attr-defined]
                )
            ).scalars()
        )
    done: dict[str, list[uuid.UUID]] = {"revoked": [], "denied": []}
    workspace = rt.directory.workspace() if requests else None
    for request in requests:
        reason = _why_not(rt, account, request.flow, workspace)
        if reason is None:
            continue
        if request.status == S.ACTIVE:
            problem = end_grant(
                rt, request.id, cause=EndCause.REVOKED, actor="latchkey", reason=reason
            )
            if problem is None:
                done["revoked"].append(request.id)
            continue
        with rt.db.session() as session:
            moved = lifecycle.auto_decide(
                session=session, audit=rt.audit, request_id=request.id, approve=False, reason=reason
            )
        if moved is not None:
            rt.tasks.notify(request.id, "denied")
            done["denied"].append(request.id)
    return done


def _why_not(rt: Runtime, account: Account, flow_name: str, workspace: Any) -> str | None:
    loaded = rt.flows.get(flow_name)
    problem = account_problem(
        account,
        workspace,
        allow_guests=bool(loaded and loaded.flow.allow_guests),
        allow_other_teams=bool(loaded and loaded.flow.allow_other_teams),
    )
    return withdrawal_reason(problem) if problem else None


def user_changed(rt: Runtime, user: dict[str, Any]) -> None:
    account = Account.from_slack(user)
    if not account.id:
        return
    SlackChanges(rt.redis).bump([user_key(account.id)])
    done = withdraw_access(rt, account)
    if done["revoked"] or done["denied"]:
        log.info(
            "account change of %s: %d grants revoked, %d requests denied",
            account.id,
            len(done["revoked"]),
            len(done["denied"]),
        )


def register(app: App, rt: Runtime) -> None:
    @app.event("user_change")
    @guarded
    def on_user_change(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        user = body["event"].get("user")
        if isinstance(user, dict):
            user_changed(rt, user)

    @app.event("subteam_members_changed")
    @guarded
    def on_members_changed(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        group = body["event"].get("subteam_id")
        if group:
            SlackChanges(rt.redis).bump([group_key(str(group))])

    @app.event("subteam_updated")
    @guarded
    def on_group_updated(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        group = (body["event"].get("subteam") or {}).get("id")
        if group:
            SlackChanges(rt.redis).bump([group_key(str(group))])
