"""Access of a person whose Slack account may no longer take part (deactivated, turned
guest, moved to another organisation…): live grants end at once, pending requests are
denied, each audited with the reason. Called on Slack's user_change event, and by each
reconciliation pass for the holders of live grants, which catches a change whose event the
web never received (Slack stops retrying an event after about five minutes)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from app import lifecycle
from app.access import end_grant
from app.accounts import Account, account_problem, withdrawal_reason
from app.clients.eligibility import client_verdict
from app.lifecycle import EndCause
from app.models import AccessRequest, RequestStatus
from app.runtime import Runtime

S = RequestStatus


def withdraw_access(rt: Runtime, account: Account) -> dict[str, list[uuid.UUID]]:
    """End the live grants and deny the pending requests of a person whose Slack account
    may no longer take part, under each request's flow (a flow may opt guests in)."""
    with rt.db.session() as session:
        requests = _open_requests(session, account.id)
    workspace = rt.directory.workspace() if requests else None
    return _withdraw(rt, requests, lambda request: _why_not(rt, account, request.flow, workspace))


def withdraw_client_access(rt: Runtime, requester_id: str) -> dict[str, list[uuid.UUID]]:
    """End the live grants and deny the pending requests of a service client that may no
    longer request their flow: revoked, its token's scope or the flow's list narrowed, or
    its keyed record gone. Asked of the DB alone, on every reconciliation pass."""
    with rt.db.session() as session:
        requests = _open_requests(session, requester_id)

    def why_not(request: AccessRequest) -> str | None:
        loaded = rt.flows.get(request.flow)
        if loaded is None:
            return None  # the grant's own checks deal with a flow that is gone
        verdict = client_verdict(rt, loaded, requester_id)
        return None if verdict.allowed else verdict.reason

    return _withdraw(rt, requests, why_not)


def _open_requests(session: Any, requester_id: str) -> list[AccessRequest]:
    return list(
        session.execute(
            select(AccessRequest).where(
                AccessRequest.requester_id == requester_id,  # type: ignore[arg-type]
                AccessRequest.status.in_((S.ACTIVE, S.PENDING)),  # type: ignore[attr-defined]
            )
        ).scalars()
    )


def _withdraw(
    rt: Runtime, requests: list[AccessRequest], why_not: Callable[[AccessRequest], str | None]
) -> dict[str, list[uuid.UUID]]:
    done: dict[str, list[uuid.UUID]] = {"revoked": [], "denied": []}
    for request in requests:
        reason = why_not(request)
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
