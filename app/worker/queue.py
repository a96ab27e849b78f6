"""How the web and the worker hand work to Celery: task names and ids only, never objects.

The broker is a doorbell, not the schedule (DESIGN.md, invariant 1): every piece of due work
is found again from the DB by the beat's sweep. So ringing never raises — with Redis down
the action stays stored and the caller says so — and no message waits in the broker longer
than about one sweep interval: a revoke further away than that is left to the sweep, which
hands it over with a short countdown when its time comes.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from app.db import utcnow

log = logging.getLogger(__name__)

GRANT = "latchkey.grant_access"
REVOKE = "latchkey.revoke_access"
SWEEP = "latchkey.sweep"
NOTIFY = "latchkey.notify"
SUBMITTED = "latchkey.process_submission"
RECONCILE = "latchkey.reconcile"
AUDIT_DELIVER = "latchkey.audit_deliver"
AUDIT_CHECKPOINT = "latchkey.audit_checkpoint"
DECIDE_DEFERRED = "latchkey.decide_deferred"
PUBLISH_HOME = "latchkey.publish_home"

# A publish with the broker down gives up after about a second: the caller is usually
# answering a person, and the sweep will find the work anyway.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.3, "interval_max": 0.5}


class TaskQueue:
    """Sends tasks by name, so the web needs no worker code loaded to enqueue them.

    Every method returns whether the doorbell rang; False means the broker could not take
    the message and the work waits, stored in the DB, for the next sweep.
    """

    def __init__(self, celery: Any, horizon: timedelta = timedelta(seconds=30)) -> None:
        self._celery = celery
        # How far ahead a timed revoke may be handed to the broker (about one sweep).
        self.horizon = horizon

    def _send(
        self,
        name: str,
        args: list[str],
        *,
        eta: datetime | None = None,
        task_id: str | None = None,
    ) -> bool:
        try:
            self._celery.send_task(
                name, args=args, eta=eta, task_id=task_id, retry_policy=PUBLISH_RETRY
            )
        except Exception as exc:  # kombu and redis raise several kinds for "broker away"
            log.warning(
                "broker did not take %s for %s (%s); the sweep will find the work in the DB",
                name,
                args[0] if args else "-",
                type(exc).__name__,
            )
            return False
        return True

    def grant(self, request_id: uuid.UUID, *, task_id: str | None = None) -> bool:
        """`task_id` names the task, and so its claim on the provider call (see
        app.granting.grant_access): a caller that claimed and failed hands over its claim."""
        return self._send(GRANT, [str(request_id)], task_id=task_id)

    def revoke_at(self, request_id: uuid.UUID, when: datetime) -> bool:
        """Punctuality only, and only for ends within the horizon; the sweep does the rest."""
        if when - utcnow() > self.horizon:
            return False
        return self._send(REVOKE, [str(request_id)], eta=when)

    def revoke_now(self, request_id: uuid.UUID) -> bool:
        # Who ended it and why were stored with the revoking transition; the task re-reads them.
        return self._send(REVOKE, [str(request_id)])

    def process_submission(self, request_id: uuid.UUID) -> bool:
        return self._send(SUBMITTED, [str(request_id)])

    def notify(self, request_id: uuid.UUID, what: str) -> bool:
        return self._send(NOTIFY, [str(request_id), what])

    def publish_home(self, user_id: str, *, after: float) -> bool:
        """The person's App Home, published `after` seconds from now (app/notify.py)."""
        return self._send(PUBLISH_HOME, [user_id], eta=utcnow() + timedelta(seconds=after))

    def decide_deferred(self, request_id: uuid.UUID, seq: int) -> bool:
        """A click kept as the keyed audit event `seq`: the worker re-reads it and decides."""
        return self.decide_many([(request_id, seq)])

    def decide_many(self, clicks: list[tuple[uuid.UUID, int]]) -> bool:
        """Several kept clicks in one message (request id, seq, request id, seq, …)."""
        return self._send(DECIDE_DEFERRED, [str(part) for click in clicks for part in click])
