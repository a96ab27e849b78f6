"""Thin Celery tasks: ids in, one call into app.access / app.notify, nothing else."""

from __future__ import annotations

import logging
import uuid
from functools import lru_cache
from typing import Any

from celery import shared_task
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError
from slack_sdk.errors import SlackApiError

from app import access, granting, notify, reconcile, sweeps
from app.config import get_settings
from app.lifecycle import EndCause
from app.providers.base import ProviderError
from app.runtime import Runtime, build_runtime, retry_after
from app.turns import TURN_WAIT
from app.worker.queue import (
    AUDIT_CHECKPOINT,
    AUDIT_DELIVER,
    DECIDE_DEFERRED,
    GRANT,
    NOTIFY,
    PUBLISH_HOME,
    RECONCILE,
    REVOKE,
    SUBMITTED,
    SWEEP,
)

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
    # The task's id names the claim on the provider call, so its own retries renew it.
    owner = self.request.id or uuid.uuid4().hex
    try:
        granting.grant_access(rt, uuid.UUID(request_id), owner=owner)
    except ProviderError as exc:
        if self.request.retries >= self.max_retries:
            granting.fail_grant(
                rt, uuid.UUID(request_id), f"{exc} (after {self.max_retries} retries)", owner
            )
            return
        raise TransientProviderError(str(exc)) from None


@shared_task(name=REVOKE)
def revoke_access(request_id: str, *ignored: str) -> None:
    """End a grant that is due or already ending; who ended it and why come from the DB.

    Anything else a message carries is ignored (messages of older versions carried the
    cause and actor; an injected one must not name an actor in the audit trail).
    """
    if ignored:
        log.warning("revoke task for %s: ignored %d extra arguments", request_id, len(ignored))
    # Failures are recorded as revoke_failed inside; the sweep retries them with backoff.
    access.revoke_access(runtime(), uuid.UUID(request_id), EndCause.EXPIRED)


@shared_task(name=SWEEP)
def sweep() -> None:
    from app.slack.deferred import resume_deferred_decisions

    rt = runtime()
    counts = sweeps.sweep(rt)
    # Approver clicks kept while Slack could not be asked, whose task the broker lost.
    counts["deferred_decisions"] = resume_deferred_decisions(rt)
    if any(counts.values()):
        log.info("sweep %s", counts)


@shared_task(name=AUDIT_DELIVER)
def deliver_audit() -> None:
    from app.audit.sink import Webhook, deliver

    rt = runtime()
    webhook = Webhook.from_settings(rt.settings)
    if webhook is None:
        return
    # One delivery at a time, so the cursor is never raced; a busy run is simply skipped.
    lock = rt.redis.lock("latchkey:audit-sink", timeout=300, blocking=False)
    if not lock.acquire():
        return
    try:
        sent = deliver(rt.db, webhook)
    finally:
        lock.release()
    if sent:
        log.info("audit webhook: delivered %d events", sent)


@shared_task(name=AUDIT_CHECKPOINT)
def publish_audit_checkpoint() -> None:
    """The chain's head, keyed, to the logs and the SIEM: a cut tail shows against it."""
    from app.audit.checkpoint import run_checkpoint

    rt = runtime()
    run_checkpoint(rt.db, rt.settings.require_audit_key(), rt.settings)


@shared_task(name=RECONCILE)
def reconcile_grants() -> None:
    counts = reconcile.reconcile(runtime())
    log.info("reconcile %s", counts)


def _retry_after(exc: SlackApiError) -> int | None:
    """Slack's Retry-After, when it answered 429 (rate limited)."""
    response = exc.response
    if getattr(response, "status_code", None) != 429:
        return None
    return retry_after(response.headers)


# A message task also holds a Redis lock: a Redis just back from an outage drops the
# first command on an old pooled connection, which is a reason to retry, not to lose a DM.
@shared_task(
    name=NOTIFY,
    bind=True,
    autoretry_for=(SlackApiError, OSError, RedisConnectionError),
    retry_backoff=2,
    retry_backoff_max=120,
    max_retries=10,
)
def notify_request(self: Any, request_id: str, what: str) -> None:
    try:
        notify.notify(runtime(), uuid.UUID(request_id), what)
    except LockError:
        # Another message of this request has the turn (or a lock Redis lost the release
        # of): this process serves other messages meanwhile. About 2 minutes of turns.
        raise self.retry(countdown=TURN_WAIT, max_retries=40) from None
    except SlackApiError as exc:
        wait = _retry_after(exc)
        if wait is None:
            raise
        # A long rate limit is waited out by Celery, not in this worker slot, so grants
        # and revokes queued behind this message are never held up by Slack.
        raise self.retry(countdown=wait, max_retries=30) from None


@shared_task(
    name=PUBLISH_HOME,
    bind=True,
    autoretry_for=(SlackApiError, OSError, RedisConnectionError),
    retry_backoff=2,
    max_retries=5,
)
def publish_home(self: Any, user_id: str) -> None:
    """A person's App Home at the end of its quiet window (debounced in app.notify)."""
    try:
        notify.publish_home_when_due(runtime(), user_id)
    except LockError:
        raise self.retry(countdown=TURN_WAIT, max_retries=40) from None


@shared_task(
    name=SUBMITTED,
    autoretry_for=(SlackApiError, OSError, RedisConnectionError),
    retry_backoff=2,
    max_retries=10,
)
def process_submission(request_id: str) -> None:
    # Hooks may call slow services (an on-call schedule), so they run here, not in the web.
    access.process_submission(runtime(), uuid.UUID(request_id))


@shared_task(name=DECIDE_DEFERRED, bind=True, max_retries=240)
def decide_deferred(self: Any, request_id: str, seq: str, *more: str) -> None:
    """Decide approvers' clicks from their keyed audit events: (request id, seq) pairs, one
    or a burst's chunk. While Slack cannot answer, wait (its Retry-After, at most a minute)
    and try again; clicks already decided are skipped then, so a retry decides each once."""
    from app.slack.deferred import finish_deferred_decision
    from app.slack.directory import slack_unreachable

    pairs = [request_id, seq, *more]
    wait: int | None = None
    failure: Exception | None = None
    for at in range(0, len(pairs) - 1, 2):
        try:
            finish_deferred_decision(runtime(), uuid.UUID(pairs[at]), int(pairs[at + 1]))
        except Exception as exc:
            if not slack_unreachable(exc):
                failure = failure or exc  # the others of the chunk are still decided
                continue
            retry_after = (_retry_after(exc) if isinstance(exc, SlackApiError) else None) or 5
            wait = max(wait or 0, retry_after)
    if wait is not None:
        raise self.retry(countdown=min(wait, 60))
    if failure is not None:
        raise failure
