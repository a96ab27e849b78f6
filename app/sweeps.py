"""What the beat runs: act on whatever the DB says is due, whatever the broker lost.

Countdown tasks only make things punctual; these sweeps read the DB alone and revoke
what is past its end, retry what a dead worker left half-done, warn holders before their
grants end, and time out requests nobody decided.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from app import lifecycle, queries
from app.access import revoke_access
from app.db import utcnow
from app.escalation import take_due_steps
from app.lifecycle import EndCause
from app.models import AccessRequest, Grant, RequestStatus
from app.runtime import Runtime

log = logging.getLogger(__name__)
S = RequestStatus

# A request approved this long ago but not yet claimed lost its grant task (the broker was
# away, or a worker died): ring again. Safe early: the claim lets one caller at a time in.
STUCK_APPROVED = timedelta(seconds=5)
# A stored request with no card this long after it was made lost its submission task.
CARDLESS = timedelta(seconds=10)
# A revoke started this long ago and not finished lost its worker mid-call.
STUCK_REVOKING = timedelta(seconds=120)
REVOKE_RETRY_MAX = timedelta(hours=1)


@dataclass
class DueWork:
    """What one sweep acts on, read from the DB in one short transaction.

    Each question reads only open work through an index (the open-grant index for grants,
    the status index for requests), so a sweep costs what is due, not the history.
    """

    expired: list[uuid.UUID]
    ending_soon: list[tuple[uuid.UUID, datetime]]
    regrant: list[uuid.UUID]
    cardless: list[uuid.UUID]
    failed_revokes: list[uuid.UUID]
    notices: list[tuple[Grant, timedelta]]
    # (id, flow, created_at, reminded_at, escalation steps taken) of each pending request.
    pending: list[tuple[uuid.UUID, str, datetime, datetime | None, int]]


def read_due_work(rt: Runtime, session: Session, now: datetime) -> DueWork:
    return DueWork(
        # Active grants past their end, and revokes whose worker died mid-call.
        expired=queries.due_for_expiry(session, now)
        + queries.stuck(session, S.REVOKING, STUCK_REVOKING, now),
        ending_soon=queries.ending_between(session, now, now + rt.tasks.horizon),
        regrant=queries.stuck(session, S.APPROVED, STUCK_APPROVED, now)
        + queries.lapsed_claims(session, now),
        cardless=queries.cardless(session, now - CARDLESS),
        failed_revokes=_failed_revokes_due(rt, session, now),
        notices=_notices_due(rt, session, now),
        pending=[
            (r.id, r.flow, r.created_at, r.reminded_at, r.escalated_steps)
            for r in queries.pending(session)
        ],
    )


def sweep(rt: Runtime) -> dict[str, int]:
    now = utcnow()
    with rt.db.session() as session:
        work = read_due_work(rt, session, now)
    counts = {"expired": 0, "regranted": len(work.regrant), "scheduled": 0, "resubmitted": 0}
    for request_id in work.expired:
        counts["expired"] += _guarded(lambda i: revoke_access(rt, i, EndCause.EXPIRED), request_id)
    # The DB is the schedule: ends within the next interval go to the broker with a short
    # countdown, for punctuality; nothing is handed over hours ahead.
    for request_id, ends in work.ending_soon:
        if _first_ring(rt, timed_revoke(request_id, ends), rt.tasks.horizon):
            counts["scheduled"] += rt.tasks.revoke_at(request_id, ends)
    for request_id in work.regrant:
        rt.tasks.grant(request_id)
    for request_id in work.cardless:
        # Stored while the broker was away: its card and the flow's rules never ran. Once a
        # minute at most, so a Slack outage does not pile up copies of the same work.
        if _first_ring(rt, f"submission:{request_id}", timedelta(seconds=60)):
            counts["resubmitted"] += rt.tasks.process_submission(request_id)
    counts.update(retry_failed_revokes(rt, work.failed_revokes))
    counts.update(send_expiry_notices(rt, work.notices))
    counts.update(expire_pending(rt, work.pending, now))
    return counts


def revoke_retry_delay(base: timedelta, failures: int) -> timedelta:
    """Wait before the next try after `failures` failed revokes: base, twice that, four times, … up to 1 h."""
    return min(base * (2 ** max(failures - 1, 0)), REVOKE_RETRY_MAX)


def _failed_revokes_due(rt: Runtime, session: Session, now: datetime) -> list[uuid.UUID]:
    """Revokes the provider refused whose backoff has run out."""
    base = timedelta(seconds=rt.settings.revoke_retry_seconds)
    due = []
    for request_id in queries.stuck(session, S.REVOKE_FAILED, timedelta(0), now):
        request = session.get(AccessRequest, request_id)
        failures = len(queries.events_of(session, request_id, ("revoke_failed",)))
        if request is not None and request.updated_at + revoke_retry_delay(base, failures) <= now:
            due.append(request_id)
    return due


def retry_failed_revokes(rt: Runtime, due: list[uuid.UUID]) -> dict[str, int]:
    """A revoke the provider refused is tried again with backoff, never marked done unseen."""
    retried = 0
    for request_id in due:
        with rt.db.session() as session:
            claimed = lifecycle.retry_revoke(session=session, audit=rt.audit, request_id=request_id)
        if claimed:
            retried += _guarded(lambda i: revoke_access(rt, i, EndCause.EXPIRED), request_id)
    return {"revoke_retried": len(due), "revoked_on_retry": retried}


def _notices_due(rt: Runtime, session: Session, now: datetime) -> list[tuple[Grant, timedelta]]:
    """Grants whose holder is due a warning before their current end, with its lead."""
    leads = [f.flow.expiry_notice for f in rt.flows if f.flow.expiry_notice]
    if not leads:
        return []
    due = []
    for grant, flow_name in queries.unnoticed_ending(session, now, now + max(leads)):
        loaded = rt.flows.get(flow_name)
        lead = loaded.flow.notice_lead(grant.expires_at - grant.granted_at) if loaded else None
        if lead is not None and now >= grant.expires_at - lead:
            due.append((grant, lead))
    return due


def send_expiry_notices(rt: Runtime, due: list[tuple[Grant, timedelta]]) -> dict[str, int]:
    """Warn each holder once before their grant's current end (again after an extension)."""
    sent = 0
    for grant, lead in due:
        with rt.db.session() as session:
            # Claimed (and committed) before the message goes out: one notice per end.
            claimed = lifecycle.mark_noticed(
                session=session, audit=rt.audit, grant=grant, lead=lead
            )
        if claimed:
            sent += 1
            rt.tasks.notify(grant.request_id, "expiring")
    return {"noticed": sent}


def expire_pending(
    rt: Runtime,
    waiting: list[tuple[uuid.UUID, str, datetime, datetime | None, int]],
    now: datetime,
) -> dict[str, int]:
    """Time out requests nobody decided in the flow's time; remind approvers once halfway;
    take the flow's escalation steps as they fall due."""
    counts = {"timed_out": 0, "reminded": 0, "escalated": 0}
    for request_id, flow_name, created_at, reminded_at, escalated in waiting:
        loaded = rt.flows.get(flow_name)
        timeout = loaded.flow.pending_timeout if loaded else None
        if loaded is not None and escalated < len(loaded.flow.escalation):
            counts["escalated"] += take_due_steps(
                rt, loaded, request_id, created_at, escalated, now
            )
        if timeout is None:
            continue
        if created_at + timeout <= now:
            with rt.db.session() as session:
                moved = lifecycle.time_out(
                    session=session, audit=rt.audit, request_id=request_id, after=timeout
                )
            if moved:
                counts["timed_out"] += 1
                rt.tasks.notify(request_id, "timed_out")
        elif reminded_at is None and created_at + timeout / 2 <= now:
            with rt.db.session() as session:
                claimed = lifecycle.mark_reminded(
                    session=session, audit=rt.audit, request_id=request_id, now=now
                )
            if claimed:
                counts["reminded"] += 1
                rt.tasks.notify(request_id, "remind")
    return counts


def timed_revoke(request_id: uuid.UUID, ends: datetime) -> str:
    """The doorbell of one grant's timed revoke: rung once for each end it has."""
    return f"revoke:{request_id}:{ends.isoformat()}"


def rung_key(what: str) -> str:
    """The Redis key that says a doorbell was rung lately."""
    return f"latchkey:rung:{what}"


def _first_ring(rt: Runtime, what: str, ttl: timedelta) -> bool:
    """Whether this doorbell was not rung for `what` within `ttl` (and mark it rung)."""
    try:
        seconds = max(int(ttl.total_seconds()), 1)
        return bool(rt.redis.set(rung_key(what), "1", nx=True, ex=seconds))
    except Exception:
        return True  # ringing twice is harmless; every task is idempotent


def _guarded(act: Callable[[uuid.UUID], bool], request_id: uuid.UUID) -> int:
    # One grant's trouble must not stop the sweep from ending the others.
    try:
        return int(act(request_id))
    except Exception:
        log.exception("sweep could not revoke request=%s", request_id)
        return 0
