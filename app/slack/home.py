"""Read what one person holds, asked for and may decide, for App Home and `/access list`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from app.checkouts import told_queued
from app.db import utcnow
from app.eligibility import approver_verdict
from app.identity_links.store import linked
from app.models import AccessRequest, Approval, Grant, RequestStatus
from app.notify import extension_offered
from app.passkeys.credentials import passkeys_of
from app.queries import pending
from app.runtime import Runtime
from app.slack.blocks.home import HeldGrant, HomeData, home_view

S = RequestStatus


def home_data(rt: Runtime, user_id: str, now: datetime) -> HomeData:
    with rt.db.session() as session:
        rows = session.execute(
            select(AccessRequest, Grant)
            .join(Grant, Grant.request_id == AccessRequest.id)  # type: ignore[arg-type]
            .where(
                AccessRequest.requester_id == user_id,  # type: ignore[arg-type]
                AccessRequest.status == S.ACTIVE,  # type: ignore[arg-type]
            )
            .order_by(Grant.expires_at)
        ).all()
        waiting_all = pending(session)
        extending = {r.extends_id for r in waiting_all if r.extends_id}
        decided = set(
            session.execute(
                select(Approval.request_id).where(Approval.approver_id == user_id)  # type: ignore[arg-type]
            ).scalars()
        )
        held = []
        for request, grant in rows:
            loaded = rt.flows.get(request.flow)
            # Offered only while some duration still fits the caps, as in the DM.
            can_extend = bool(loaded) and extension_offered(session, loaded.flow, request, grant)
            held.append(
                HeldGrant(
                    request,
                    grant,
                    can_extend=can_extend,
                    extension_pending=request.id in extending,
                    credentials=rt.providers.shows_credentials(grant.provider),
                )
            )
        # Approved, waiting for a shared account someone else has checked out.
        queued = [
            r
            for r in session.execute(
                select(AccessRequest).where(
                    AccessRequest.requester_id == user_id,  # type: ignore[arg-type]
                    AccessRequest.status == S.APPROVED,  # type: ignore[arg-type]
                )
            ).scalars()
            if told_queued(session, r.id)
        ]
    asked = [r for r in waiting_all if r.requester_id == user_id]
    waiting = []
    for request in waiting_all:
        loaded = rt.flows.get(request.flow)
        if request.requester_id == user_id or request.id in decided or loaded is None:
            continue
        flow = loaded.flow
        verdict = approver_verdict(rt, flow, requester_id=request.requester_id, user_id=user_id)
        if verdict.allowed:
            waiting.append(request)
    offered = rt.settings.oidc_problem is None
    return HomeData(
        user_id,
        rt.directory.user(user_id).tz,
        held,
        asked,
        waiting,
        _passkeys(rt, user_id),
        identity_offered=offered,
        identity_email=_linked_email(rt, user_id) if offered else None,
        queued=queued,
    )


def _linked_email(rt: Runtime, user_id: str) -> str | None:
    with rt.db.session() as session:
        row = linked(session, rt.audit, user_id)
        return row.email if row is not None else None


def _passkeys(rt: Runtime, user_id: str) -> int | None:
    if not rt.settings.public_url:
        return None
    with rt.db.session() as session:
        return len(passkeys_of(session, rt.audit, user_id))


def build_home(rt: Runtime, user_id: str) -> dict[str, Any]:
    now = utcnow()
    return home_view(home_data(rt, user_id, now), now)
