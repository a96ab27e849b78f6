"""Signs of life for /healthz: the worker and the beat each keep a row of `heartbeat` fresh.

The worker writes from a daemon thread started by a bootstep (so only a running worker
writes, never a process that merely built the Celery app to send tasks); the beat writes
from its scheduler's own loop, so a beat stuck or gone stops writing. A failed write is
logged and tried again next time: a heartbeat never takes its process down.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime
from typing import Any

from celery import bootsteps
from celery.beat import PersistentScheduler
from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError

from app.config import Settings, get_settings
from app.db import Database, utcnow
from app.models import Heartbeat

log = logging.getLogger(__name__)

WORKER = "worker"
BEAT = "beat"


def heartbeat_interval(settings: Settings) -> float:
    """How often a process writes: every sweep, within 1 to 5 s (well inside the stale limit)."""
    return min(5.0, max(1.0, settings.sweep_seconds))


def write_heartbeat(
    db: Database,
    *,
    process: str,
    kind: str,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """Upsert this process's row: UPDATE, then INSERT when there was none (any backend)."""
    values = {"kind": kind, "at": now or utcnow(), "details": details or {}}
    table = Heartbeat.__table__  # type: ignore[attr-defined]
    for _ in range(2):
        try:
            with db.engine.begin() as connection:
                updated = connection.execute(
                    update(table).where(table.c.process == process).values(**values)
                ).rowcount
                if updated == 0:
                    connection.execute(insert(table).values(process=process, **values))
            return
        except IntegrityError:
            continue  # another writer inserted the same process first: update it now


class HeartbeatWriter:
    """Writes one process's heartbeat, swallowing (and logging once per outage) DB errors."""

    def __init__(
        self, db: Database, *, process: str, kind: str, details: dict[str, Any] | None = None
    ) -> None:
        self.db = db
        self.process = process
        self.kind = kind
        self.details = details or {}
        self.started_at = utcnow()
        self._failing = False
        # A forked child (a prefork pool process) must not reuse the parent's connections.
        os.register_at_fork(after_in_child=lambda: db.engine.dispose(close=False))

    def beat(self) -> bool:
        details = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": self.started_at.isoformat(),
            **self.details,
        }
        try:
            write_heartbeat(self.db, process=self.process, kind=self.kind, details=details)
        except Exception as exc:
            if not self._failing:
                log.warning(
                    "heartbeat of %s %s not written (%s: %s); retrying",
                    self.kind,
                    self.process,
                    type(exc).__name__,
                    exc,
                )
            self._failing = True
            return False
        if self._failing:
            log.info("heartbeat of %s %s written again", self.kind, self.process)
        self._failing = False
        return True


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Worker bootstep: a daemon thread writes the worker's heartbeat every few seconds."""

    label = "Latchkey heartbeat"
    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, parent: Any) -> None:
        settings = get_settings()
        # Which queues this worker serves: readiness wants each queue served by someone.
        queues = sorted(parent.app.amqp.queues.consume_from)
        writer = HeartbeatWriter(
            Database(settings.database_url),
            process=parent.hostname,
            kind=WORKER,
            details={"queues": queues},
        )
        interval = heartbeat_interval(settings)
        writer.beat()  # at once, so health is true as soon as the worker runs

        def run() -> None:
            while not self._stop.wait(interval):
                writer.beat()

        self._thread = threading.Thread(target=run, name="latchkey-heartbeat", daemon=True)
        self._thread.start()

    def stop(self, parent: Any) -> None:
        self._stop.set()

    def shutdown(self, parent: Any) -> None:
        self._stop.set()


class HeartbeatScheduler(PersistentScheduler):
    """The beat's scheduler: also writes the beat's heartbeat from its own loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self._interval = heartbeat_interval(settings)
        self._writer: HeartbeatWriter | None = None
        self._database_url = settings.database_url
        self._last = float("-inf")

    def tick(self, *args: Any, **kwargs: Any) -> float:
        delay = super().tick(*args, **kwargs)
        now = time.monotonic()
        if now - self._last >= self._interval:
            if self._writer is None:
                self._writer = HeartbeatWriter(
                    Database(self._database_url),
                    process=f"beat@{socket.gethostname()}",
                    kind=BEAT,
                )
            self._writer.beat()
            self._last = now
        # Wake at least once per interval, even when the next entry is far off.
        return min(delay, self._interval)
