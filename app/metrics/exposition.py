"""The registry behind `GET /metrics`, and the multiprocess directory that adds up the
counters of a process's children (gunicorn workers, Celery pool processes).

prometheus-client's multiprocess mode: every process writes its counters to files in
PROMETHEUS_MULTIPROC_DIR, and a scrape adds up the files of every process, dead or alive,
since the directory was made. The directory must be set before the children start and be
empty at each start of the parent (old files would count again), so the parent makes it:
`latchkey web` before gunicorn starts (prepare_web_metrics_dir), the worker when Celery
initialises it (app.worker.metrics).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, values
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from app.config import Settings
from app.db import Database, utcnow
from app.metrics import process
from app.metrics.db import DatabaseCollector

log = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"
WEB_PREFIX = "latchkey-web-metrics-"
WORKER_PREFIX = "latchkey-worker-metrics-"


def use_multiprocess_dir(path: Path) -> Path:
    """Make `path` this process's (and its future children's) metrics directory, emptied."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[ENV] = str(path)
    # prometheus-client picks its value class when it is first imported; this process may
    # have imported it before its directory was known (the worker, at start-up).
    values.ValueClass = values.MultiProcessValue()
    process.reset()  # metrics built before now would keep their in-process values
    return path


def use_fresh_dir(prefix: str) -> Path:
    """A new temporary metrics directory for this start."""
    return use_multiprocess_dir(Path(tempfile.mkdtemp(prefix=prefix)))


def prepare_web_metrics_dir() -> Path:
    """For `latchkey web`, before gunicorn starts: PROMETHEUS_MULTIPROC_DIR when the
    operator set one (emptied), else a fresh temporary directory."""
    given = os.environ.get(ENV)
    return use_multiprocess_dir(Path(given)) if given else use_fresh_dir(WEB_PREFIX)


def remove_temporary_dir() -> None:
    """At the parent's exit: remove the directory if it is one of our temporary ones."""
    given = os.environ.get(ENV)
    if given and Path(given).name.startswith((WEB_PREFIX, WORKER_PREFIX)):
        shutil.rmtree(given, ignore_errors=True)


def gunicorn_on_starting(server: Any) -> None:
    """gunicorn's `on_starting` hook (in the master, before any worker forks): the
    directory every worker writes to, so /metrics adds up all of them."""
    prepare_web_metrics_dir()


def gunicorn_child_exit(server: Any, worker: Any) -> None:
    """gunicorn's `child_exit` hook: a worker that exited keeps its counters, loses its
    live gauges."""
    if os.environ.get(ENV):
        mark_process_dead(worker.pid)


def gunicorn_on_exit(server: Any) -> None:
    """gunicorn's `on_exit` hook."""
    remove_temporary_dir()


class _ThisProcess(Collector):
    """The process's own metrics, when there is no multiprocess directory."""

    def collect(self) -> Iterable[Metric]:
        return process.metrics().registry.collect()


def build_registry(
    db: Database, settings: Settings, *, clock: Callable[[], datetime] = utcnow
) -> CollectorRegistry:
    """What /metrics serves: the DB's figures and the counters of this process and its
    siblings (multiprocess) or of this process alone."""
    registry = CollectorRegistry()
    directory = os.environ.get(ENV)
    if directory:
        MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_ThisProcess())
    registry.register(DatabaseCollector(db, settings, clock=clock))
    return registry


class MetricsEndpoint:
    """`GET /metrics` as a WSGI app (no authentication: keep it off the internet)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        payload = generate_latest(self.registry)
        start_response(
            "200 OK",
            [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(payload)))],
        )
        return [payload]
