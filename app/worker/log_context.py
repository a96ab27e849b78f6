"""Every log line of a Celery task carries its task id, and the access request, flow and
requester it works on (app.logs context), set by the task_prerun / task_postrun signals.

Tasks carry ids only: the first argument, when it is a UUID, is the access request's id.
Its flow and requester are read with one primary-key lookup; a lookup that fails leaves
them empty, never the task.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery.signals import task_postrun, task_prerun

from app.logs import bind

log = logging.getLogger(__name__)


def _request_id(args: Any) -> uuid.UUID | None:
    if not args:
        return None
    try:
        return uuid.UUID(str(args[0]))
    except ValueError:
        return None


def _flow_and_user(request_id: uuid.UUID) -> tuple[str | None, str | None]:
    from app.models import AccessRequest
    from app.worker.tasks import runtime

    try:
        with runtime().db.session() as session:
            request = session.get(AccessRequest, request_id)
            return (request.flow, request.requester_id) if request else (None, None)
    except Exception as exc:  # the task runs and says what is wrong itself
        log.debug("no log context for request %s: %s", request_id, type(exc).__name__)
        return None, None


@task_prerun.connect
def _enter_task(task_id: str | None = None, args: Any = None, **_: Any) -> None:
    request_id = _request_id(args)
    flow, user = _flow_and_user(request_id) if request_id else (None, None)
    bind(task_id=task_id, request_id=request_id, flow=flow, user=user)


@task_postrun.connect
def _leave_task(**_: Any) -> None:
    bind(task_id=None, request_id=None, flow=None, user=None)
