"""Reconciliation: compare what the DB says each person holds with what the providers say.

Access that should exist but is missing is re-applied; access past its end that is still
present is revoked. Both are audited as drift (found, then repaired) and reported to the
flow's channel. The DB stays the source of truth: a provider is never believed over it.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from app import lifecycle, queries
from app.access import holding_key, reapply, target_of
from app.db import lock_holding, utcnow
from app.models import AccessRequest, Grant, RequestStatus
from app.providers.base import GrantSpec, ProviderError
from app.runtime import Runtime

log = logging.getLogger(__name__)
S = RequestStatus

# Ended grants are checked for lingering access this long after they end.
LOOKBACK = timedelta(days=1)


def reconcile(rt: Runtime) -> dict[str, int]:
    now = utcnow()
    with rt.db.session() as session:
        live = queries.active_grants(session, now)
        ended = queries.recently_ended(session, now - LOOKBACK)
    counts = {"checked": 0, "reapplied": 0, "revoked": 0, "errors": 0}
    live_keys = {holding_key(g) for g in live}
    for grant in live:
        counts["checked"] += 1
        present = _check(rt, grant)
        if present is None:
            counts["errors"] += 1
        elif not present and _repair_missing(rt, grant):
            counts["reapplied"] += 1
    seen: set[str] = set()
    for grant in ended:  # newest first: one check per person and target
        key = holding_key(grant)
        if key in live_keys or key in seen:
            continue
        seen.add(key)
        counts["checked"] += 1
        present = _check(rt, grant)
        if present is None:
            counts["errors"] += 1
        elif present and _repair_lingering(rt, grant):
            counts["revoked"] += 1
    return counts


def _spec(rt: Runtime, grant: Grant) -> GrantSpec | None:
    with rt.db.session() as session:
        request = session.get(AccessRequest, grant.request_id)
    target = target_of(rt, request.flow, request.target) if request else None
    return GrantSpec(grant.principal, target, grant.expires_at) if target else None


def _check(rt: Runtime, grant: Grant) -> bool | None:
    spec = _spec(rt, grant)
    if spec is None:
        return None
    try:
        return rt.providers.get(grant.provider).check(spec)
    except ProviderError as exc:
        log.warning("reconcile could not check request=%s: %s", grant.request_id, exc)
        return None


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


def _repair_missing(rt: Runtime, grant: Grant) -> bool:
    _drift(
        rt,
        grant,
        "drift_found",
        {"drift": "missing", "expected_until": grant.expires_at.isoformat()},
    )
    if not reapply(rt, grant, why="reconciliation found it missing at the provider"):
        return False
    _drift(rt, grant, "drift_repaired", {"drift": "missing", "action": "re-applied"})
    with rt.db.session() as session:
        request = session.get(AccessRequest, grant.request_id)
        still_active = request is not None and request.status == S.ACTIVE
    if not still_active:
        # The grant ended while we re-applied it: take it away again at once.
        _repair_lingering(rt, grant)
    rt.tasks.notify(grant.request_id, "drift_missing")
    return True


def _repair_lingering(rt: Runtime, grant: Grant) -> bool:
    with rt.db.session() as session:
        lock_holding(session, holding_key(grant))
        if queries.covering_grants(session, grant, utcnow()):
            return False  # a newer grant gives this access now; nothing lingers
    spec = _spec(rt, grant)
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
