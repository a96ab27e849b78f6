"""The Celery app: broker, reliability settings and the beat schedule, from Settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import Celery

from app.audit.checkpoint import CHECKPOINT_EVERY
from app.config import Settings
from app.worker import (
    log_context,  # noqa: F401 - connects the task signals (log fields)
    warmup,
)
from app.worker.heartbeat import HeartbeatScheduler, WorkerHeartbeat
from app.worker.metrics import WorkerMetrics, connect_task_signals
from app.worker.queue import AUDIT_CHECKPOINT, AUDIT_DELIVER, RECONCILE, SWEEP

# Two queues, so a grant or a revoke never waits behind a message (issue 14). Access work is
# short and bounded by provider calls; messages make several Slack calls each and stall
# with Slack. `latchkey worker` serves each from its own pool (app/worker/pools.py).
ACCESS = "access"
MESSAGES = "messages"
# Celery's default queue: what a web or beat of the previous release still sends there is
# drained by the messages pool after an upgrade (nothing lost).
LEGACY = "celery"
QUEUES = (ACCESS, MESSAGES)

# Globs, so decision and ending tasks added later (latchkey.decide_*, latchkey.end_*) are
# access work without a change here. The sweep hands due grants and revokes over and ends
# overdue ones itself, so it is access work too. Everything else (notify, submissions,
# App Home, audit delivery and checkpoints, reconcile, which posts to Slack and may walk
# the whole estate) is a message: task_default_queue.
ACCESS_TASKS = (
    "latchkey.grant_access",
    "latchkey.revoke_access",
    "latchkey.decide_*",
    "latchkey.end_*",
    SWEEP,
)


def queue_of(task_name: str, celery: Celery) -> str:
    """The queue Celery's routes send `task_name` to (what an operator asks when scaling)."""
    route = celery.amqp.router.route({}, task_name)
    return str(route["queue"].name)


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    every_sweep = timedelta(seconds=settings.sweep_seconds)
    schedule: dict[str, dict[str, Any]] = {
        "sweep": {"task": SWEEP, "schedule": every_sweep},
        "audit-checkpoint": {"task": AUDIT_CHECKPOINT, "schedule": CHECKPOINT_EVERY},
        "reconcile": {
            "task": RECONCILE,
            "schedule": timedelta(seconds=settings.reconcile_seconds),
        },
    }
    # Only with a webhook: without one the task had nothing to do but cost a message, a
    # worker slot and a log line every sweep interval.
    if settings.audit_webhook_url:
        every = settings.audit_deliver_seconds or settings.sweep_seconds
        schedule["audit-deliver"] = {"task": AUDIT_DELIVER, "schedule": timedelta(seconds=every)}
    return schedule


def create_celery(settings: Settings) -> Celery:
    celery = Celery("latchkey", broker=settings.redis_url)
    celery.conf.update(
        task_routes={name: {"queue": ACCESS} for name in ACCESS_TASKS},
        task_default_queue=MESSAGES,
        # A worker given both queues (`--queues access,messages --shared`) asks Redis for
        # them in this order every time, so waiting access work is always taken first.
        # (kombu's default, round_robin, rotates the queues after each message.)
        task_ignore_result=True,  # state lives in the DB, not in a result backend
        task_acks_late=True,  # a task taken by a worker that dies is delivered again
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # No message waits longer than about a sweep interval (app/worker/queue.py), so the
        # visibility timeout only matters for a task whose worker died: redelivered then.
        # Short socket timeouts: a hung Redis fails a publish fast instead of a Slack ack.
        broker_transport_options={
            "visibility_timeout": 3600,
            "socket_timeout": 5,
            "socket_connect_timeout": 2,
            "queue_order_strategy": "priority",
        },
        # Each pool process builds its runtime and cloud clients at start (app/worker/
        # warmup.py); on a busy machine that can pass Celery's 4 s default for a child to
        # report in, and a child killed for it would be started again, warming forever.
        worker_proc_alive_timeout=60,
        timezone="UTC",
        enable_utc=True,
        beat_schedule=beat_schedule(settings),
        beat_schedule_filename=str(settings.beat_schedule_file),
        # Beat writes its heartbeat from its own loop; the worker from a bootstep (/healthz).
        beat_scheduler=f"{HeartbeatScheduler.__module__}:{HeartbeatScheduler.__name__}",
        include=["app.worker.tasks"],
    )
    celery.steps["worker"].add(WorkerHeartbeat)
    # Prometheus on LATCHKEY_WORKER_METRICS_PORT, and task failures and retries counted.
    celery.steps["worker"].add(WorkerMetrics)
    connect_task_signals()
    warmup.connect()
    return celery
