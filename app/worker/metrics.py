"""The worker's Prometheus endpoint and its task counters.

Tasks run in Celery's prefork pool processes, so their counters go to a multiprocess
directory (a fresh temporary one per worker start, made when Celery initialises the
worker, before the pool forks) and the main process serves the sum of them all on
LATCHKEY_WORKER_METRICS_PORT (0: no server, no directory), from a bootstep like the
heartbeat's. A port already taken is logged and the worker runs on without metrics.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import bootsteps, signals

from app.config import get_settings
from app.db import Database
from app.metrics import exposition, process

log = logging.getLogger(__name__)


def _worker_init(**_: Any) -> None:
    if get_settings().worker_metrics_port:
        exposition.use_fresh_dir(exposition.WORKER_PREFIX)


def _pool_process_exit(**_: Any) -> None:
    if os.environ.get(exposition.ENV):
        exposition.mark_process_dead(os.getpid())


def _worker_shutdown(**_: Any) -> None:
    exposition.remove_temporary_dir()


def _task_name(sender: Any) -> str:
    return str(getattr(sender, "name", None) or "unknown")


def _task_postrun(sender: Any = None, state: str | None = None, **_: Any) -> None:
    process.task_finished(_task_name(sender), (state or "unknown").lower())


def _task_failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    process.task_failed(_task_name(sender), type(exception).__name__ if exception else "unknown")


def _task_retry(sender: Any = None, **_: Any) -> None:
    process.task_retried(_task_name(sender))


def connect_task_signals() -> None:
    """Connect once per process (Celery's signals are global; dispatch_uid dedupes)."""
    for signal, handler in (
        (signals.worker_init, _worker_init),
        (signals.worker_process_shutdown, _pool_process_exit),
        (signals.worker_shutdown, _worker_shutdown),
        (signals.task_postrun, _task_postrun),
        (signals.task_failure, _task_failure),
        (signals.task_retry, _task_retry),
    ):
        signal.connect(handler, weak=False, dispatch_uid=f"latchkey.metrics.{handler.__name__}")


class WorkerMetrics(bootsteps.StartStopStep):
    """Worker bootstep: serve GET /metrics on LATCHKEY_WORKER_METRICS_PORT."""

    label = "Latchkey metrics"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._server: Any = None

    def start(self, parent: Any) -> None:
        from prometheus_client import start_http_server

        settings = get_settings()
        if not settings.worker_metrics_port:
            return
        registry = exposition.build_registry(Database(settings.database_url), settings)
        try:
            self._server, _ = start_http_server(
                settings.worker_metrics_port, addr=settings.worker_metrics_host, registry=registry
            )
        except OSError as exc:
            log.warning(
                "worker metrics not served: %s:%s (LATCHKEY_WORKER_METRICS_PORT): %s",
                settings.worker_metrics_host,
                settings.worker_metrics_port,
                exc,
            )
            return
        log.info(
            "worker metrics at http://%s:%s/metrics",
            settings.worker_metrics_host,
            settings.worker_metrics_port,
        )

    def stop(self, parent: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    shutdown = stop
