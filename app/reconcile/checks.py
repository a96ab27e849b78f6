"""Run one unit of a pass: one provider read, then the repairs it calls for."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from app.providers.base import GrantSpec, ProviderError
from app.reconcile import orphans
from app.reconcile.estate import GrantCheck, Holding, OrphanListing, ScopeRead, Unit
from app.reconcile.repair import repair_lingering, repair_missing
from app.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class Tally:
    """What a pass did; logged by the task and returned to tests and the bench."""

    checked: int = 0
    reapplied: int = 0
    revoked: int = 0
    errors: int = 0
    orphans_removed: int = 0
    provider_reads: int = 0  # units run: one members/check/provisioned read each
    deferred: int = 0  # units left for the next passes by the budget
    skipped: int = 0  # 1: another pass held the lock, this one did nothing
    accounts_checked: int = 0  # holders whose Slack account was asked about afresh
    access_withdrawn: int = 0  # grants ended because the holder's account may not hold them
    accounts_unanswered: int = 0  # holders Slack did not answer about (asked next pass)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def run(rt: Runtime, unit: Unit, tally: Tally) -> None:
    if isinstance(unit, ScopeRead):
        _read_scope(rt, unit, tally)
    elif isinstance(unit, GrantCheck):
        _check_grant(rt, unit, tally)
    else:
        _list_orphans(rt, unit, tally)


def _read_scope(rt: Runtime, unit: ScopeRead, tally: Tally) -> None:
    provider: Any = rt.providers.get(unit.provider)
    try:
        members: dict[str, set[str]] = provider.members(unit.target)
    except ProviderError as exc:
        log.warning("reconcile could not list %s %s: %s", unit.provider, unit.key, exc)
        tally.errors += 1
        return
    keyed = {r: {orphans.key_of(provider, p) for p in held} for r, held in members.items()}

    def present(holding: Holding) -> bool:
        assert holding.target is not None  # planned only with a target
        held = keyed.get(holding.target.resource, set())
        return orphans.key_of(provider, holding.grant.principal) in held

    for holding in unit.live:
        tally.checked += 1
        if not present(holding) and repair_missing(rt, holding.grant):
            tally.reapplied += 1
    for holding in unit.ended:
        tally.checked += 1
        if present(holding) and repair_lingering(rt, holding.grant):
            tally.revoked += 1
    for place in unit.places:
        listed = orphans.among_members(provider, place, members)
        live = {
            orphans.key_of(provider, h.grant.principal)
            for h in unit.live
            if h.target is not None and h.target.resource == place.resource
        }
        # Only those no live grant of this pass accounts for need the DB asked again.
        suspects = [item for item in listed or [] if orphans.key_of(provider, item[2]) not in live]
        if suspects:
            _count_orphans(tally, orphans.remove_orphans(rt, provider, place, suspects))


def _check_grant(rt: Runtime, unit: GrantCheck, tally: Tally) -> None:
    first = unit.live[0] if unit.live else unit.ended
    assert first is not None and first.target is not None  # planned only with a target
    spec = GrantSpec(first.grant.principal, first.target, first.grant.expires_at)
    try:
        present = rt.providers.get(first.grant.provider).check(spec)
    except ProviderError as exc:
        log.warning("reconcile could not check request=%s: %s", first.grant.request_id, exc)
        tally.errors += 1
        return
    for holding in unit.live:
        tally.checked += 1
        if not present and repair_missing(rt, holding.grant):
            tally.reapplied += 1
    if unit.ended is not None:
        tally.checked += 1
        if present and repair_lingering(rt, unit.ended.grant):
            tally.revoked += 1


def _list_orphans(rt: Runtime, unit: OrphanListing, tally: Tally) -> None:
    provider = rt.providers.get(unit.place.provider)
    try:
        listed = orphans.provisioned(provider, unit.place)
    except ProviderError as exc:
        log.warning("reconcile could not list %s: %s", unit.key, exc)
        tally.errors += 1
        return
    if listed:
        _count_orphans(tally, orphans.remove_orphans(rt, provider, unit.place, listed))


def _count_orphans(tally: Tally, outcome: tuple[int, int]) -> None:
    tally.orphans_removed += outcome[0]
    tally.errors += outcome[1]
