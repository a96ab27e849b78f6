"""Orphans: access Latchkey made at a provider that no live grant accounts for (a grant
whose activation was lost, a grant row deleted). Revoked, audited without a request, and
posted to the flows' channels."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from app.access import reapply, target_of
from app.db import lock_holding, utcnow
from app.flows.schema import Target, provider_of
from app.models import AccessRequest, Grant, RequestStatus
from app.providers.base import GrantSpec, Provider, ProviderError
from app.reconcile.estate import Place
from app.runtime import Runtime
from app.slack.blocks.text import escape

log = logging.getLogger(__name__)
S = RequestStatus

# A principal holding a resource through a request in one of these states is no orphan.
HOLDING = (S.ACTIVE, S.REVOKING, S.REVOKE_FAILED)
# Requests that may be at the provider this moment without a grant row yet: while one of
# them is on a resource, its orphans wait for the next pass (whose principal it will
# get is only known once the grant is applied).
ABOUT_TO_HOLD = (S.APPROVED, S.GRANTING)
ORPHAN = "provisioned without a live grant"

Listed = list[tuple[str, Target, str]]  # (flow, target, principal)


def key_of(provider: Provider, principal: str) -> str:
    keyed = getattr(provider, "principal_key", None)
    return keyed(principal) if keyed else principal


def provisioned(provider: Provider, place: Place) -> Listed | None:
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


def among_members(provider: Any, place: Place, members: dict[str, set[str]]) -> Listed | None:
    """The same as `provisioned`, from a `members` read already made for the scope."""
    for flow, target in place.targets:
        if provider.lists_own(target):
            return [(flow, target, p) for p in sorted(members.get(place.resource, ()))]
    return None


def remove_orphans(
    rt: Runtime, provider: Provider, place: Place, listed: Listed
) -> tuple[int, int]:
    """Revoke each listed principal no grant holds; (removed, errors)."""
    removed = errors = 0
    with rt.db.session() as session:
        if _about_to_hold(rt, session, place):
            log.info("orphans of %s wait: a grant is under way", place.resource)
            return 0, 0
        held = _holders(rt, session, provider, place)
    for flow, target, principal in listed:
        if key_of(provider, principal) in held:
            continue
        outcome = _remove_orphan(rt, provider, place, flow, target, principal)
        if outcome is None:
            errors += 1
        elif outcome:
            removed += 1
    return removed, errors


def _holders(rt: Runtime, session: Session, provider: Provider, place: Place) -> set[str]:
    """Principals (by principal_key) of grants holding this resource, in any flow."""
    return {key_of(provider, g.principal) for g in _grants_of(rt, session, place, HOLDING)}


def _grants_of(
    rt: Runtime, session: Session, place: Place, statuses: tuple[RequestStatus, ...]
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


def _about_to_hold(rt: Runtime, session: Session, place: Place) -> bool:
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


def _held_now(rt: Runtime, session: Session, provider: Provider, place: Place, key: str) -> bool:
    return key in _holders(rt, session, provider, place) or _about_to_hold(rt, session, place)


def _remove_orphan(
    rt: Runtime, provider: Provider, place: Place, flow: str, target: Target, principal: str
) -> bool | None:
    """Revoke one orphan; True when removed, False when it was not one, None on failure."""
    spec = GrantSpec(principal=principal, target=target, expires_at=utcnow())
    key = key_of(provider, principal)
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
            if key_of(provider, g.principal) == key
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


def _alert(rt: Runtime, place: Place, target: Target, principal: str) -> None:
    text = (
        f":warning: Drift: {escape(principal)} held {escape(target.name)} at the provider "
        "with no live grant. Latchkey removed it."
    )
    for channel in place.channels:
        try:
            rt.slack.chat_postMessage(channel=channel, text=text)
        except Exception as exc:  # a Slack outage must not stop reconciliation
            log.warning("drift alert to %s failed: %s", channel, type(exc).__name__)
