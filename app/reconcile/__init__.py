"""Reconciliation: compare what the DB says each person holds with what the providers say.

Access that should exist but is missing is re-applied; access past its end that is still
present is revoked; access Latchkey made at a provider that no live grant accounts for
(an orphan) is revoked. All are audited as drift (found, then repaired) and reported to
the flow's channel. The DB stays the source of truth: a provider is never believed over it.

A pass has a budget: it reads the DB in two joined queries, then makes at most
`LATCHKEY_RECONCILE_BUDGET` provider reads (one per IAM group or GCP policy, where the
provider can list members; one per person's hold elsewhere), in a stable order from where
the last pass stopped (a cursor in Redis). So every grant is checked at least once every
ceil(reads needed / budget) passes. A Redis lock keeps passes from overlapping.
"""

from __future__ import annotations

import logging

from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from app.db import utcnow
from app.reconcile import accounts, checks, estate
from app.reconcile.checks import Tally
from app.reconcile.estate import Unit
from app.runtime import Runtime

log = logging.getLogger(__name__)

LOCK = "latchkey:reconcile:pass"
CURSOR = "latchkey:reconcile:cursor"
# Renewed after every provider read, so only a worker that died mid-pass lets it lapse.
LOCK_SECONDS = 900


def reconcile(rt: Runtime) -> dict[str, int]:
    """One pass, unless another is still running (then nothing, and it says so)."""
    tally = Tally()
    lock = rt.redis.lock(LOCK, timeout=LOCK_SECONDS, blocking=False)
    try:
        acquired = lock.acquire()
    except RedisError as exc:
        log.warning("reconcile pass skipped: Redis did not answer (%s)", type(exc).__name__)
        tally.skipped = 1
        return tally.as_dict()
    if not acquired:
        log.warning("reconcile pass skipped: the previous pass is still running")
        tally.skipped = 1
        return tally.as_dict()
    try:
        _pass(rt, lock, tally)
    finally:
        try:
            lock.release()
        except (LockError, RedisError):
            log.warning("reconcile pass outlived its lock (%d s)", LOCK_SECONDS)
    return tally.as_dict()


def _pass(rt: Runtime, lock: Lock, tally: Tally) -> None:
    accounts.check_holders(rt, tally)
    live, ended = estate.load(rt, utcnow())
    units, lost = estate.plan(rt, live, ended)
    tally.errors += lost
    budget = rt.settings.reconcile_budget
    ordered = _from_cursor(units, rt.redis.get(CURSOR))
    for done, unit in enumerate(ordered):
        if done >= budget:
            tally.deferred = len(ordered) - done
            rounds = -(-len(ordered) // budget)
            log.info(
                "reconcile: budget of %d provider reads spent; %d left for the next passes "
                "(every grant is checked once every %d passes)",
                budget,
                tally.deferred,
                rounds,
            )
            return
        checks.run(rt, unit, tally)
        tally.provider_reads += 1
        try:
            rt.redis.set(CURSOR, unit.key)
            lock.reacquire()
        except (LockError, RedisError) as exc:
            # Without the lock another pass may start: stop rather than run side by side.
            log.warning("reconcile pass stopped: lost its lock (%s)", type(exc).__name__)
            tally.deferred = len(ordered) - done - 1
            return


def _from_cursor(units: list[Unit], cursor: bytes | str | None) -> list[Unit]:
    """Units after the last one the previous pass read, then from the start again."""
    if cursor is None:
        return units
    last = cursor.decode() if isinstance(cursor, bytes) else cursor
    return [u for u in units if u.key > last] + [u for u in units if u.key <= last]
