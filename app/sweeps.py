"""What the beat runs: act on whatever the DB says is due, whatever the broker lost.

Countdown tasks only make things punctual; these sweeps read the DB alone and revoke
what is past its end, retry what a dead worker left half-done, warn holders before their
grants end, and time out requests nobody decided.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from app import lifecycle, queries
from app.access import revoke_access
from app.db import utcnow
from app.lifecycle import EndCause
from app.models import AccessRequest, RequestStatus
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


def sweep(rt: Runtime) -> dict[str, int]:
    now = utcnow()
    with rt.db.session() as session:
        due = queries.due_for_expiry(session, now)
        ending_soon = queries.ending_between(session, now, now + rt.tasks.horizon)
        stuck_approved = queries.stuck(session, S.APPROVED, STUCK_APPROVED, now)
        lapsed = queries.lapsed_claims(session, now)
        cardless = queries.cardless(session, now - CARDLESS)
    counts = {
        "expired": 0,
        "regranted": len(stuck_approved) + len(lapsed),
        "scheduled": 0,
        "resubmitted": 0,
    }
    for request_id in due + stuck_revoking_ids(rt, now):
        counts["expired"] += _guarded(lambda i: revoke_access(rt, i, EndCause.EXPIRED), request_id)
    # The DB is the schedule: ends within the next interval go to the broker with a short
    # countdown, for punctuality; nothing is handed over hours ahead.
    for request_id, ends in ending_soon:
        if _first_ring(rt, f"revoke:{request_id}:{ends.isoformat()}", rt.tasks.horizon):
            counts["scheduled"] += rt.tasks.revoke_at(request_id, ends)
    for request_id in stuck_approved + lapsed:
        rt.tasks.grant(request_id)
    for request_id in cardless:
        # Stored while the broker was away: its card and the flow's rules never ran. Once a
        # minute at most, so a Slack outage does not pile up copies of the same work.
        if _first_ring(rt, f"submission:{request_id}", timedelta(seconds=60)):
            counts["resubmitted"] += rt.tasks.process_submission(request_id)
    counts.update(retry_failed_revokes(rt, now))
    counts.update(send_expiry_notices(rt, now))
    counts.update(expire_pending(rt, now))
    return counts


def stuck_revoking_ids(rt: Runtime, now: datetime) -> list[uuid.UUID]:
    """Revokes begun long enough ago that their worker must have died mid-call."""
    with rt.db.session() as session:
        return queries.stuck(session, S.REVOKING, STUCK_REVOKING, now)


def revoke_retry_delay(base: timedelta, failures: int) -> timedelta:
    """Wait before the next try after `failures` failed revokes: base, twice that, four times, … up to 1 h."""
    return min(base * (2 ** max(failures - 1, 0)), REVOKE_RETRY_MAX)


def retry_failed_revokes(rt: Runtime, now: datetime) -> dict[str, int]:
    """A revoke the provider refused is tried again with backoff, never marked done unseen."""
    base = timedelta(seconds=rt.settings.revoke_retry_seconds)
    retried = 0
    with rt.db.session() as session:
        failed = queries.stuck(session, S.REVOKE_FAILED, timedelta(0), now)
        due = []
        for request_id in failed:
            request = session.get(AccessRequest, request_id)
            failures = len(queries.events_of(session, request_id, ("revoke_failed",)))
            if (
                request is not None
                and request.updated_at + revoke_retry_delay(base, failures) <= now
            ):
                due.append(request_id)
    for request_id in due:
        with rt.db.session() as session:
            claimed = lifecycle.retry_revoke(session=session, audit=rt.audit, request_id=request_id)
        if claimed:
            retried += _guarded(lambda i: revoke_access(rt, i, EndCause.EXPIRED), request_id)
    return {"revoke_retried": len(due), "revoked_on_retry": retried}


def send_expiry_notices(rt: Runtime, now: datetime) -> dict[str, int]:
    """Warn each holder once before their grant's current end (again after an extension)."""
    leads = [f.flow.expiry_notice for f in rt.flows if f.flow.expiry_notice]
    if not leads:
        return {"noticed": 0}
    sent = 0
    with rt.db.session() as session:
        soon = queries.active_grants(session, now, ending_before=now + max(leads))
        for grant in soon:
            if grant.notice_sent_for == grant.expires_at:
                continue
            request = session.get(AccessRequest, grant.request_id)
            loaded = rt.flows.get(request.flow) if request else None
            lead = loaded.flow.notice_lead(grant.expires_at - grant.granted_at) if loaded else None
            if lead is None or now < grant.expires_at - lead:
                continue
            if lifecycle.mark_noticed(session=session, audit=rt.audit, grant=grant, lead=lead):
                sent += 1
                session.commit()  # the notice is claimed before the message goes out
                rt.tasks.notify(grant.request_id, "expiring")
    return {"noticed": sent}


def expire_pending(rt: Runtime, now: datetime) -> dict[str, int]:
    """Time out requests nobody decided in the flow's time; remind approvers once halfway."""
    counts = {"timed_out": 0, "reminded": 0}
    with rt.db.session() as session:
        waiting = [(r.id, r.flow, r.created_at, r.reminded_at) for r in queries.pending(session)]
    for request_id, flow_name, created_at, reminded_at in waiting:
        loaded = rt.flows.get(flow_name)
        timeout = loaded.flow.pending_timeout if loaded else None
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


def _first_ring(rt: Runtime, what: str, ttl: timedelta) -> bool:
    """Whether this doorbell was not rung for `what` within `ttl` (and mark it rung)."""
    try:
        seconds = max(int(ttl.total_seconds()), 1)
        return bool(rt.redis.set(f"latchkey:rung:{what}", "1", nx=True, ex=seconds))
    except Exception:
        return True  # ringing twice is harmless; every task is idempotent


def _guarded(act: Callable[[uuid.UUID], bool], request_id: uuid.UUID) -> int:
    # One grant's trouble must not stop the sweep from ending the others.
    try:
        return int(act(request_id))
    except Exception:
        log.exception("sweep could not revoke request=%s", request_id)
        return 0
