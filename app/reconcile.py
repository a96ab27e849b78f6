"""Reconciliation: compare what the DB says each person holds with what the providers say.

Access that should exist but is missing is re-applied; access past its end that is still
present is revoked; access Latchkey made at a provider that no live grant accounts for
(an orphan: a grant whose activation was lost, a grant row deleted) is revoked. All are
audited as drift (found, then repaired) and reported to the flow's channel. The DB stays
the source of truth: a provider is never believed over it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from app import lifecycle, queries
from app.access import holding_key, reapply, target_of
from app.db import lock_holding, utcnow
from app.flows.schema import Target, provider_of
from app.models import AccessRequest, Grant, RequestStatus
from app.providers.base import GrantSpec, Provider, ProviderError
from app.runtime import Runtime
from app.slack.blocks.text import escape

log = logging.getLogger(__name__)
S = RequestStatus

# Ended grants are checked for lingering access this long after they end.
LOOKBACK = timedelta(days=1)
# A principal holding a resource through a request in one of these states is no orphan.
HOLDING = (S.ACTIVE, S.REVOKING, S.REVOKE_FAILED)
# Requests that may be at the provider this moment without a grant row yet: while one of
# them is on a resource, its orphans wait for the next pass (whose principal it will
# get is only known once the grant is applied).
ABOUT_TO_HOLD = (S.APPROVED, S.GRANTING)
ORPHAN = "provisioned without a live grant"


def reconcile(rt: Runtime) -> dict[str, int]:
    now = utcnow()
    with rt.db.session() as session:
        live = queries.active_grants(session, now)
        ended = queries.recently_ended(session, now - LOOKBACK)
    counts = {"checked": 0, "reapplied": 0, "revoked": 0, "errors": 0, "orphans_removed": 0}
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
    orphans = sweep_orphans(rt)
    counts["orphans_removed"] = orphans["orphans_removed"]
    counts["errors"] += orphans["errors"]
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


@dataclass
class _Resource:
    """One thing granted at one provider, and every flow target that grants it."""

    provider: str
    resource: str
    targets: list[tuple[str, Target]] = field(default_factory=list)  # (flow, target)
    channels: list[str] = field(default_factory=list)


def sweep_orphans(rt: Runtime) -> dict[str, int]:
    """Revoke access Latchkey provisioned that no live grant accounts for.

    Asks each provider that can tell (`provisioned`) who holds Latchkey's access to each
    resource the flows grant, once per (provider, resource) however many flows share it.
    """
    counts = {"orphans_removed": 0, "errors": 0}
    for place in _resources(rt):
        try:
            provider = rt.providers.get(place.provider)
            listed = _provisioned(provider, place)
        except ProviderError as exc:
            log.warning("reconcile could not list %s %s: %s", place.provider, place.resource, exc)
            counts["errors"] += 1
            continue
        if listed is None:
            continue
        with rt.db.session() as session:
            if _about_to_hold(rt, session, place):
                log.info("orphans of %s wait: a grant is under way", place.resource)
                continue
            held = _holders(rt, session, provider, place)
        for flow, target, principal in listed:
            if _key(provider, principal) in held:
                continue
            removed = _remove_orphan(rt, provider, place, flow, target, principal)
            if removed is None:
                counts["errors"] += 1
            elif removed:
                counts["orphans_removed"] += 1
    return counts


def _resources(rt: Runtime) -> list[_Resource]:
    by_key: dict[tuple[str, str], _Resource] = {}
    for loaded in rt.flows:
        flow = loaded.flow
        for target in flow.targets:
            name = provider_of(target)
            place = by_key.setdefault((name, target.resource), _Resource(name, target.resource))
            place.targets.append((flow.name, target))
            if flow.approval_channel not in place.channels:
                place.channels.append(flow.approval_channel)
    return list(by_key.values())


def _provisioned(provider: Provider, place: _Resource) -> list[tuple[str, Target, str]] | None:
    """(flow, target, principal) for each holder of Latchkey's access; None: cannot tell.

    The first target that can tell answers for the resource: one exclusive IAM group
    target makes the group exclusive for every flow that grants it.
    """
    lister = getattr(provider, "provisioned", None)
    if lister is None:
        return None
    for flow, target in place.targets:
        listed = lister(target)
        if listed is not None:
            return [(flow, target, principal) for principal in listed]
    return None


def _key(provider: Provider, principal: str) -> str:
    keyed = getattr(provider, "principal_key", None)
    return keyed(principal) if keyed else principal


def _holders(rt: Runtime, session: Session, provider: Provider, place: _Resource) -> set[str]:
    """Principals (by principal_key) of grants holding this resource, in any flow."""
    return {_key(provider, g.principal) for g in _grants_of(rt, session, place, HOLDING)}


def _grants_of(
    rt: Runtime, session: Session, place: _Resource, statuses: tuple[RequestStatus, ...]
) -> list[Grant]:
    rows = session.execute(
        select(Grant, AccessRequest.flow)
        .join(AccessRequest, AccessRequest.id == Grant.request_id)  # type: ignore[arg-type]
        .where(
            Grant.provider == place.provider,  # type: ignore[arg-type]
            AccessRequest.status.in_(statuses),  # type: ignore[attr-defined]
        )
    ).all()
    return [grant for grant, flow in rows if _resource_of(rt, grant, flow) == place.resource]


def _resource_of(rt: Runtime, grant: Grant, flow: str) -> str:
    if grant.resource:
        return grant.resource
    # Grants made before migration 0006 recorded only their target's name.
    target = target_of(rt, flow, grant.target)
    return target.resource if target is not None else grant.target


def _about_to_hold(rt: Runtime, session: Session, place: _Resource) -> bool:
    requests = session.execute(
        select(AccessRequest).where(
            AccessRequest.status.in_(ABOUT_TO_HOLD),  # type: ignore[attr-defined]
            AccessRequest.extends_id.is_(None),  # type: ignore[union-attr]
        )
    ).scalars()
    for request in requests:
        target = target_of(rt, request.flow, request.target)
        if (
            target is not None
            and provider_of(target) == place.provider
            and target.resource == place.resource
        ):
            return True
    return False


def _held_now(
    rt: Runtime, session: Session, provider: Provider, place: _Resource, key: str
) -> bool:
    return key in _holders(rt, session, provider, place) or _about_to_hold(rt, session, place)


def _remove_orphan(
    rt: Runtime, provider: Provider, place: _Resource, flow: str, target: Target, principal: str
) -> bool | None:
    """Revoke one orphan; True when removed, False when it was not one, None on failure."""
    spec = GrantSpec(principal=principal, target=target, expires_at=utcnow())
    key = _key(provider, principal)
    lock = f"{place.provider}|{place.resource}|{principal}"
    try:
        if not provider.check(spec):
            return False  # gone since the listing (a revoke that just finished)
    except ProviderError as exc:
        log.warning("reconcile could not check orphan %s: %s", place.resource, exc)
        return None
    facts = {
        "drift": ORPHAN,
        "provider": place.provider,
        "principal": principal,
        "resource": place.resource,
    }
    with rt.db.session() as session:
        # Decided under the holding lock, as revoke_access decides, against a grant of
        # this access that began since the listing.
        lock_holding(session, lock)
        if _held_now(rt, session, provider, place, key):
            return False
        _orphan_event(rt, session, "drift_found", flow, target, facts)
    try:
        details = provider.revoke(spec)
    except ProviderError as exc:
        with rt.db.session() as session:
            _orphan_event(
                rt, session, "drift_repair_failed", flow, target, {**facts, "error": str(exc)}
            )
        # Not posted: the next pass tries again, and a channel told every few minutes
        # learns to ignore it. The audit trail and the error count say it.
        return None
    with rt.db.session() as session:
        lock_holding(session, lock)
        _orphan_event(
            rt,
            session,
            "drift_repaired",
            flow,
            target,
            {**facts, "action": "revoked", "result": details},
        )
        covering = [
            g
            for g in _grants_of(rt, session, place, (S.ACTIVE,))
            if _key(provider, g.principal) == key
        ]
    # A grant of this access that became active while the revoke ran lost it: put it back.
    for grant in covering[:1]:
        reapply(rt, grant, why="reconciliation removed orphaned access as this grant began")
    _alert(rt, place, target, principal)
    log.warning("removed orphaned access %s at %s", place.resource, place.provider)
    return True


def _orphan_event(
    rt: Runtime, session: Session, event: str, flow: str, target: Target, details: dict[str, Any]
) -> None:
    # No request: no grant row accounts for this access, which is the drift.
    rt.audit.append(
        session, event=event, actor="latchkey", flow=flow, target=target.name, details=details
    )


def _alert(rt: Runtime, place: _Resource, target: Target, principal: str) -> None:
    text = (
        f":warning: Drift: {escape(principal)} held {escape(target.name)} at the provider "
        "with no live grant. Latchkey removed it."
    )
    for channel in place.channels:
        try:
            rt.slack.chat_postMessage(channel=channel, text=text)
        except Exception as exc:  # a Slack outage must not stop reconciliation
            log.warning("drift alert to %s failed: %s", channel, type(exc).__name__)
