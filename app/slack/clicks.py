"""Approve and Deny clicks after their ack: kept in the DB, many per transaction, and handed
to the worker, from one thread of the web process.

A burst of clicks (an incident, fifty approvals at once) used to cost each click its own
transaction, Redis writes and Celery publish on a listener thread, all competing with the
next clicks' acks for the one interpreter. Here the listener only queues the click and
returns; the keeper stores whatever has queued up meanwhile in one transaction (still one
keyed `decision_deferred` audit event per click) and rings the worker once per chunk.
A click that cannot be kept is never dropped in silence: its clicker is told, in words.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from redis.exceptions import RedisError
from slack_sdk import WebClient
from sqlalchemy import select

from app.models import AccessRequest, AuditEvent, Decision
from app.runtime import Runtime
from app.slack.deferred import (
    DEFERRED,
    NOTICE_AFTER,
    RESPONSE_URL_TTL,
    RESUMED,
    claim_key,
    deciding_text,
    later_text,
    url_key,
)
from app.slack.listeners.errors import (
    Refusal,
    actor_of,
    from_home,
    report,
    response_url_of,
    tell,
)

log = logging.getLogger(__name__)

# Clicks stored per transaction at most; a burst larger than this takes several.
BATCH = 100
# The worker's access pool decides a batch as this many tasks, so its processes share it.
CHUNKS = 4
# A burst of clicks is written together once no click came for SETTLE_GAP seconds, or at
# most SETTLE_MAX seconds after its first click.
SETTLE_GAP = 0.02
SETTLE_MAX = 0.25
# How long a stopping web process waits for the clicks it acked to be kept and handed over.
DRAIN_SECONDS = 10.0


@dataclass(frozen=True)
class Click:
    """An approver's Approve or Deny, as much of it as deciding and answering need."""

    request_id: uuid.UUID
    decision: Decision
    user_id: str
    response_url: str | None
    from_home: bool = False
    duration: timedelta | None = None
    reason: str = ""

    @classmethod
    def of(
        cls,
        body: dict[str, Any],
        request_id: uuid.UUID,
        decision: Decision,
        *,
        duration: timedelta | None = None,
        reason: str = "",
    ) -> Click:
        return cls(
            request_id,
            decision,
            actor_of(body),
            response_url_of(body),
            from_home(body),
            duration,
            reason,
        )

    @property
    def reach(self) -> dict[str, Any]:
        """What `tell` and `report` need to answer the clicker (not the whole payload)."""
        return {"user": {"id": self.user_id}, "response_url": self.response_url}


class ClickKeeper:
    """Stores queued clicks as keyed audit events and rings the worker for them."""

    def __init__(self, rt: Runtime, client: WebClient, notices: LateNotices | None) -> None:
        self._rt, self._client, self._notices = rt, client, notices
        self._queue: queue.SimpleQueue[Click] = queue.SimpleQueue()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None
        # Clicks acked and not yet kept and handed to the worker: a stopping process
        # (a deploy, a gunicorn worker recycled) waits for them rather than leave them to
        # the sweep minutes later.
        self._pending = 0
        self._settled = threading.Condition()

    def keep(self, click: Click) -> None:
        with self._settled:
            self._pending += 1
        self._queue.put(click)
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="clicks", daemon=True)
                    self._thread.start()
                    atexit.register(self.drain)

    def drain(self, timeout: float = DRAIN_SECONDS) -> bool:
        """Wait until every click queued so far is kept and handed over; False on timeout."""
        with self._settled:
            settled = self._settled.wait_for(lambda: self._pending == 0, timeout)
        if not settled:
            log.error("clicks: stopping with %d clicks not yet kept", self._pending)
        return settled

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            # Group commit: while clicks keep arriving (a burst), wait for the burst to
            # settle before writing, so the write and the worker it rings do not take the
            # CPU from the acks still being answered.
            settle_by = time.monotonic() + SETTLE_MAX
            while len(batch) < BATCH:
                try:
                    wait = min(SETTLE_GAP, settle_by - time.monotonic())
                    batch.append(
                        self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
            try:
                self.keep_now(batch)
            except Exception as exc:  # the thread must live on for the next clicks
                log.exception("clicks: a batch of %d failed", len(batch), exc_info=exc)
            finally:
                with self._settled:
                    self._pending -= len(batch)
                    self._settled.notify_all()

    def keep_now(self, batch: list[Click]) -> None:
        """Store `batch`, tell whoever's click could not be kept, ring the worker."""
        try:
            kept = store_clicks(self._rt, batch)
        except Exception as exc:  # the DB is away: nothing was kept, everyone is told
            for click in batch:
                report(exc, click.reach, self._client)
            return
        for click, seq in kept:
            if isinstance(seq, Refusal):
                report(seq, click.reach, self._client)
        stored = [(click, seq) for click, seq in kept if isinstance(seq, int)]
        if stored:
            self._hand_to_worker(stored)

    def _hand_to_worker(self, stored: list[tuple[Click, int]]) -> None:
        """Keep each click's response_url for the worker's words, mark the clicks as being
        worked on, ring the worker. With the broker away the clickers hear so now; the
        sweep rings later (app.slack.deferred.resume_deferred_decisions)."""
        rt = self._rt
        try:
            with rt.redis.pipeline(transaction=False) as pipe:
                for click, seq in stored:
                    if click.response_url:
                        pipe.set(url_key(seq), click.response_url, ex=RESPONSE_URL_TTL)
                    pipe.set(claim_key(seq), "1", ex=120)
                pipe.execute()
        except RedisError:
            pass  # the worker's words go by DM; the sweep rings for unclaimed clicks
        size = -(-len(stored) // CHUNKS)
        for start in range(0, len(stored), size):
            chunk = stored[start : start + size]
            if rt.tasks.decide_many([(click.request_id, seq) for click, seq in chunk]):
                if self._notices is not None:
                    for click, seq in chunk:
                        self._notices.watch(click, seq)
                continue
            for click, _ in chunk:
                try:
                    tell(self._client, click.reach, later_text(click.decision))
                except Exception:
                    log.warning("could not tell %s their click waits", click.user_id)


def store_clicks(rt: Runtime, batch: list[Click]) -> list[tuple[Click, int | Refusal]]:
    """One transaction: each click of a request that exists becomes a keyed audit event
    (its seq); a click on a request that does not is refused."""
    with rt.db.session() as session:
        ids = {click.request_id for click in batch}
        requests = {
            row.id: row
            for row in session.execute(
                select(
                    AccessRequest.id,
                    AccessRequest.flow,
                    AccessRequest.target,
                    AccessRequest.requester_id,
                ).where(AccessRequest.id.in_(ids))  # type: ignore[attr-defined]
            )
        }
        kept: list[tuple[Click, AuditEvent | Refusal]] = []
        for click in batch:
            request = requests.get(click.request_id)
            if request is None:
                kept.append((click, Refusal("That request no longer exists.")))
                continue
            details: dict[str, Any] = {"decision": click.decision.value}
            if click.duration is not None:
                details["duration_seconds"] = int(click.duration.total_seconds())
            if click.reason.strip():
                details["reason"] = click.reason.strip()
            if click.from_home:
                details["from_home"] = True  # the worker re-publishes the approver's Home
            event = rt.audit.append(
                session,
                event=DEFERRED,
                actor=click.user_id,
                request_id=click.request_id,
                flow=request.flow,
                target=request.target,
                subject=request.requester_id,
                details=details,
            )
            kept.append((click, event))
    # Each event has its seq once the transaction has committed (it is chained at commit).
    return [(click, e if isinstance(e, Refusal) else e.seq) for click, e in kept]


class LateNotices:
    """Tells an approver "deciding…" when the worker has not decided their click within
    NOTICE_AFTER seconds (a busy or stopped worker), from one thread of the web process,
    with one query for every click due at that moment."""

    def __init__(self, rt: Runtime, client: WebClient, after: float = NOTICE_AFTER) -> None:
        self._rt, self._client, self._after = rt, client, after
        self._due: list[tuple[float, int, Click, int]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, click: Click, seq: int) -> None:
        with self._wake:
            due = time.monotonic() + self._after
            heapq.heappush(self._due, (due, next(self._order), click, seq))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="late-notices", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                now = time.monotonic()
                ripe: list[tuple[Click, int]] = []
                while self._due and self._due[0][0] <= now:
                    _, _, click, seq = heapq.heappop(self._due)
                    ripe.append((click, seq))
            try:
                decided = _decided(self._rt, ripe)
            except Exception as exc:  # a courtesy; the worker still tells the outcome
                log.warning("could not check which clicks are decided (%s)", exc)
                continue
            for click, seq in ripe:
                if seq in decided:
                    continue
                try:
                    tell(self._client, click.reach, deciding_text(click.decision))
                except Exception as exc:
                    log.warning("could not tell a clicker their decision is pending (%s)", exc)


def _decided(rt: Runtime, clicks: list[tuple[Click, int]]) -> set[int]:
    """Of these clicks, the seqs the worker has decided (a `decision_resumed` names them)."""
    with rt.db.session() as session:
        rows = session.execute(
            select(AuditEvent.details).where(
                AuditEvent.event == RESUMED,  # type: ignore[arg-type]
                AuditEvent.request_id.in_({click.request_id for click, _ in clicks}),  # type: ignore[union-attr]
            )
        ).scalars()
        return {int(d["deferred_seq"]) for d in rows if d.get("deferred_seq") is not None}
