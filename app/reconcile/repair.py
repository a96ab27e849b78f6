"""Repairs of drift found on a live or ended grant: re-apply what is missing, revoke what
lingers past its end. Both audited as drift (found, then repaired or failed)."""

from __future__ import annotations

import logging

from app import lifecycle, queries
from app.access import holding_key, reapply, target_of
from app.db import lock_holding, utcnow
from app.held_before import held_before
from app.models import AccessRequest, Grant, RequestStatus
from app.providers.base import GrantSpec, ProviderError
from app.runtime import Runtime

log = logging.getLogger(__name__)
S = RequestStatus


def spec_of(rt: Runtime, grant: Grant) -> GrantSpec | None:
    with rt.db.session() as session:
        request = session.get(AccessRequest, grant.request_id)
    target = target_of(rt, request.flow, request.target) if request else None
    return GrantSpec(grant.principal, target, grant.expires_at) if target else None


def _drift(rt: Runtime, grant: Grant, event: str, details: dict[str, object]) -> None:
    with rt.db.session() as session:
        request = session.get(AccessRequest, grant.request_id)
        assert request is not None
        lifecycle.record(
            session,
            rt.audit,
            request,
            event,
            "latchkey",
            {"provider": grant.provider, "principal": grant.principal, **details},
        )


def _still_active(rt: Runtime, grant: Grant) -> bool:
    with rt.db.session() as session:
        request = session.get(AccessRequest, grant.request_id)
        return request is not None and request.status == S.ACTIVE


def repair_missing(rt: Runtime, grant: Grant) -> bool:
    """Re-apply a live grant the provider does not show; True when re-applied."""
    # The pass read the DB before the provider: a grant that ended since is not drift.
    if not _still_active(rt, grant):
        return False
    with rt.db.session() as session:
        if held_before(session, rt.audit, grant):
            # A membership the person held before the grant, since removed by someone:
            # never Latchkey's to put back (the end would leave it for ever).
            return False
    _drift(
        rt,
        grant,
        "drift_found",
        {"drift": "missing", "expected_until": grant.expires_at.isoformat()},
    )
    if not reapply(rt, grant, why="reconciliation found it missing at the provider"):
        return False
    _drift(rt, grant, "drift_repaired", {"drift": "missing", "action": "re-applied"})
    if not _still_active(rt, grant):
        # The grant ended while we re-applied it: take it away again at once.
        repair_lingering(rt, grant)
    rt.tasks.notify(grant.request_id, "drift_missing")
    return True


def repair_lingering(rt: Runtime, grant: Grant) -> bool:
    """Revoke access still present after its grant ended; True when revoked."""
    with rt.db.session() as session:
        lock_holding(session, holding_key(grant))
        if queries.covering_grants(session, grant, utcnow()):
            return False  # a newer grant gives this access now; nothing lingers
        if held_before(session, rt.audit, grant):
            # A member before the grant (its keyed `granted` event says): the end left the
            # membership as it was, and so does every pass after it.
            return False
    spec = spec_of(rt, grant)
    if spec is None:
        return False
    _drift(
        rt,
        grant,
        "drift_found",
        {"drift": "present after its end", "ended_at": str(grant.ended_at)},
    )
    try:
        details = rt.providers.get(grant.provider).revoke(spec)
    except ProviderError as exc:
        _drift(rt, grant, "drift_repair_failed", {"error": str(exc)})
        return False
    _drift(
        rt,
        grant,
        "drift_repaired",
        {"drift": "present after its end", "action": "revoked", **details},
    )
    rt.tasks.notify(grant.request_id, "drift_lingering")
    return True
