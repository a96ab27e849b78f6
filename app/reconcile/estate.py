"""What one reconciliation pass looks at, and the provider reads it takes to look.

The DB side is two joined queries (live grants; grants ended in the last day), whatever the
number of grants. The provider side is cut into units of one provider read each, so a pass
can stop at its budget and the next one carry on: one `members` read per scope where the
provider can list who holds access (an IAM group, a GCP policy), one `check` per person's
hold on one access where it cannot, one orphan listing per resource for providers that
list orphans but not members.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from app.access import holding_key, target_of
from app.flows.schema import Target, provider_of
from app.models import AccessRequest, Grant, RequestStatus
from app.providers.base import Provider
from app.runtime import Runtime

S = RequestStatus
# Ended grants are checked for lingering access this long after they end.
LOOKBACK = timedelta(days=1)


@dataclass
class Holding:
    """A grant with the flow target it was made from (None: the flow or target is gone)."""

    grant: Grant
    flow: str
    target: Target | None


@dataclass
class Place:
    """One thing granted at one provider, and every flow target that grants it."""

    provider: str
    resource: str
    targets: list[tuple[str, Target]] = field(default_factory=list)  # (flow, target)
    channels: list[str] = field(default_factory=list)


@dataclass
class ScopeRead:
    """One `members` read answers every grant, ended grant and orphan in its scope."""

    key: str
    provider: str
    target: Any  # any target in the scope: the provider reads the scope from it
    live: list[Holding] = field(default_factory=list)
    ended: list[Holding] = field(default_factory=list)
    places: list[Place] = field(default_factory=list)


@dataclass
class GrantCheck:
    """One `check` of one person's hold on one access: its live grants, or else the newest
    grant of it that ended (is the access still there?)."""

    key: str
    live: list[Holding] = field(default_factory=list)
    ended: Holding | None = None


@dataclass
class OrphanListing:
    """One `provisioned` listing of a resource whose provider cannot list members."""

    key: str
    place: Place


Unit = ScopeRead | GrantCheck | OrphanListing


def load(rt: Runtime, now: datetime) -> tuple[list[Holding], list[Holding]]:
    """Live grants, and grants ended since LOOKBACK (newest first), each with its flow."""
    joined = select(Grant, AccessRequest.flow).join(
        AccessRequest,
        AccessRequest.id == Grant.request_id,  # type: ignore[arg-type]
    )
    with rt.db.session() as session:
        live = session.execute(
            joined.where(
                AccessRequest.status == S.ACTIVE,  # type: ignore[arg-type]
                Grant.expires_at > now,  # type: ignore[arg-type]
            ).order_by(Grant.expires_at)
        ).all()
        # On the grant's own end column, so the "ended recently" index answers it.
        ended = session.execute(
            joined.where(
                Grant.ended_at >= now - LOOKBACK,  # type: ignore[arg-type,operator]
                AccessRequest.status.in_((S.EXPIRED, S.REVOKED)),  # type: ignore[attr-defined]
            ).order_by(Grant.ended_at.desc())  # type: ignore[union-attr]
        ).all()
    return _holdings(rt, live), _holdings(rt, ended)


def _holdings(rt: Runtime, rows: Any) -> list[Holding]:
    return [Holding(grant, flow, target_of(rt, flow, grant.target)) for grant, flow in rows]


def places(rt: Runtime) -> list[Place]:
    """Every (provider, resource) the flows grant, once however many flows share it."""
    by_key: dict[tuple[str, str], Place] = {}
    for loaded in rt.flows:
        flow = loaded.flow
        for target in flow.targets:
            name = provider_of(target)
            place = by_key.setdefault((name, target.resource), Place(name, target.resource))
            place.targets.append((flow.name, target))
            channel = target.approval_channel or flow.approval_channel
            if channel not in place.channels:
                place.channels.append(channel)
    return list(by_key.values())


def lists_members(provider: Provider) -> bool:
    return all(hasattr(provider, m) for m in ("member_scope", "members", "lists_own"))


def plan(rt: Runtime, live: list[Holding], ended: list[Holding]) -> tuple[list[Unit], int]:
    """The pass's units in a stable order (by key, so a cursor can say where a pass
    stopped), and how many holdings cannot be checked (their flow, target or provider is
    gone: each is a reconciliation error, as before)."""
    scopes: dict[str, ScopeRead] = {}
    checks: dict[str, GrantCheck] = {}
    lost = 0

    def scope_of(provider: Any, name: str, target: Any) -> ScopeRead:
        key = f"members|{name}|{provider.member_scope(target)}"
        return scopes.setdefault(key, ScopeRead(key, name, target))

    live_keys = {holding_key(h.grant) for h in live}
    seen: set[str] = set()
    for holding, is_live in [(h, True) for h in live] + [(h, False) for h in ended]:
        key = holding_key(holding.grant)
        if not is_live:  # one check per person and access, the newest grant, if none is live
            if key in live_keys or key in seen:
                continue
            seen.add(key)
        provider = _provider(rt, holding.grant.provider)
        if holding.target is None or provider is None:
            lost += 1
        elif lists_members(provider):
            scope = scope_of(provider, holding.grant.provider, holding.target)
            (scope.live if is_live else scope.ended).append(holding)
        else:
            check = checks.setdefault(f"check|{key}", GrantCheck(f"check|{key}"))
            if is_live:
                check.live.append(holding)
            else:
                check.ended = holding
    listings: list[OrphanListing] = []
    for place in places(rt):
        provider = _provider(rt, place.provider)
        if provider is None:
            continue
        if lists_members(provider):
            scope_of(provider, place.provider, place.targets[0][1]).places.append(place)
        elif hasattr(provider, "provisioned"):
            key = f"orphans|{place.provider}|{place.resource}"
            listings.append(OrphanListing(key, place))
    units: list[Unit] = [*scopes.values(), *checks.values(), *listings]
    return sorted(units, key=lambda u: u.key), lost


def _provider(rt: Runtime, name: str) -> Provider | None:
    try:
        return rt.providers.get(name)
    except KeyError:
        return None
