"""Thin Celery tasks: ids in, one call into app.access / app.notify, nothing else."""

from __future__ import annotations

import logging
import uuid
from functools import lru_cache
from typing import Any

from celery import shared_task
from slack_sdk.errors import SlackApiError

from app import access, notify
from app.config import get_settings
from app.lifecycle import EndCause
from app.providers.base import ProviderError
from app.runtime import Runtime, build_runtime
from app.worker.queue import GRANT, NOTIFY, REVOKE, SUBMITTED, SWEEP

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def runtime() -> Runtime:
    """Built on the first task of each worker process, never at import."""
    return build_runtime(get_settings())


class TransientProviderError(Exception):
    pass


@shared_task(
    name=GRANT,
    bind=True,
    autoretry_for=(TransientProviderError,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=6,
)
def grant_access(self: Any, request_id: str) -> None:
    rt = runtime()
    try:
        access.grant_access(rt, uuid.UUID(request_id))
    except ProviderError as exc:
        if self.request.retries >= self.max_retries:
            access.fail_grant(
                rt, uuid.UUID(request_id), f"{exc} (after {self.max_retries} retries)"
            )
            return
        raise TransientProviderError(str(exc)) from None


@shared_task(name=REVOKE)
def revoke_access(
    request_id: str, cause: str = "expired", actor: str = "latchkey", reason: str = ""
) -> None:
    # Failures are recorded as revoke_failed inside; the sweep retries them with backoff.
    access.revoke_access(runtime(), uuid.UUID(request_id), EndCause(cause), actor, reason)


@shared_task(name=SWEEP)
def sweep() -> None:
    counts = access.sweep(runtime())
    if any(counts.values()):
        log.info("sweep %s", counts)


@shared_task(
    name=NOTIFY,
    autoretry_for=(SlackApiError, OSError),
    retry_backoff=2,
    retry_backoff_max=120,
    max_retries=10,
)
def notify_request(request_id: str, what: str) -> None:
    notify.notify(runtime(), uuid.UUID(request_id), what)


@shared_task(
    name=SUBMITTED, autoretry_for=(SlackApiError, OSError), retry_backoff=2, max_retries=10
)
def process_submission(request_id: str) -> None:
    # Hooks may call slow services (an on-call schedule), so they run here, not in the web.
    access.process_submission(runtime(), uuid.UUID(request_id))
