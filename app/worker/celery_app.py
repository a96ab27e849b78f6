"""The Celery app: broker, reliability settings and the beat schedule, from Settings."""

from __future__ import annotations

from datetime import timedelta

from celery import Celery

from app.audit.checkpoint import CHECKPOINT_EVERY
from app.config import Settings
from app.worker import log_context  # noqa: F401 - connects the task signals (log fields)
from app.worker.heartbeat import HeartbeatScheduler, WorkerHeartbeat
from app.worker.metrics import WorkerMetrics, connect_task_signals
from app.worker.queue import AUDIT_CHECKPOINT, AUDIT_DELIVER, RECONCILE, SWEEP


def create_celery(settings: Settings) -> Celery:
    celery = Celery("latchkey", broker=settings.redis_url)
    celery.conf.update(
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
        },
        timezone="UTC",
        enable_utc=True,
        beat_schedule={
            "sweep": {"task": SWEEP, "schedule": timedelta(seconds=settings.sweep_seconds)},
            # Harmless when no webhook is configured: the task returns at once.
            "audit-deliver": {
                "task": AUDIT_DELIVER,
                "schedule": timedelta(seconds=settings.sweep_seconds),
            },
            "audit-checkpoint": {"task": AUDIT_CHECKPOINT, "schedule": CHECKPOINT_EVERY},
            "reconcile": {
                "task": RECONCILE,
                "schedule": timedelta(seconds=settings.reconcile_seconds),
            },
        },
        beat_schedule_filename=str(settings.beat_schedule_file),
        # Beat writes its heartbeat from its own loop; the worker from a bootstep (/healthz).
        beat_scheduler=f"{HeartbeatScheduler.__module__}:{HeartbeatScheduler.__name__}",
        include=["app.worker.tasks"],
    )
    celery.steps["worker"].add(WorkerHeartbeat)
    # Prometheus on LATCHKEY_WORKER_METRICS_PORT, and task failures and retries counted.
    celery.steps["worker"].add(WorkerMetrics)
    connect_task_signals()
    return celery
