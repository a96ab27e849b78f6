"""How the web and the worker hand work to Celery: task names and ids only, never objects."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

GRANT = "latchkey.grant_access"
REVOKE = "latchkey.revoke_access"
SWEEP = "latchkey.sweep"
NOTIFY = "latchkey.notify"
SUBMITTED = "latchkey.process_submission"
RECONCILE = "latchkey.reconcile"
AUDIT_DELIVER = "latchkey.audit_deliver"


class TaskQueue:
    """Sends tasks by name, so the web needs no worker code loaded to enqueue them."""

    def __init__(self, celery: Any) -> None:
        self._celery = celery

    def grant(self, request_id: uuid.UUID) -> None:
        self._celery.send_task(GRANT, args=[str(request_id)])

    def revoke_at(self, request_id: uuid.UUID, when: datetime) -> None:
        # Punctuality only: the sweep revokes from the DB if this task is ever lost.
        self._celery.send_task(REVOKE, args=[str(request_id), "expired"], eta=when)

    def revoke_now(self, request_id: uuid.UUID, cause: str, actor: str, reason: str = "") -> None:
        self._celery.send_task(REVOKE, args=[str(request_id), cause, actor, reason])

    def process_submission(self, request_id: uuid.UUID) -> None:
        self._celery.send_task(SUBMITTED, args=[str(request_id)])

    def notify(self, request_id: uuid.UUID, what: str) -> None:
        self._celery.send_task(NOTIFY, args=[str(request_id), what])
