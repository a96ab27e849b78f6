"""Approve and Deny, decided by the worker: the web keeps each click as a keyed
`decision_deferred` audit event and acks; the worker checks the approver (Slack groups,
hooks), decides, and tells the clicker in words. A click is never dropped."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from slack_sdk import WebClient
from sqlalchemy import select

from app import lifecycle
from app.db import utcnow
from app.flows.policy import refuse
from app.models import AccessRequest, AuditEvent, Decision, RequestStatus
from app.notify import publish_home
from app.queries import events_of
from app.runtime import Runtime
from app.slack.blocks.text import escape
from app.slack.listeners.errors import (
    Refusal,
    actor_of,
    from_home,
    reply,
    response_url_of,
    tell,
)

# The web stores an approver's click as a keyed `decision_deferred` audit event before its
# ack (so the ack promises nothing the DB does not hold) and rings the worker; the worker
# makes the same approver check and the same decide a click always made, records
# `decision_resumed`, and tells the approver. The sweep rings again for a lost task.
DEFERRED = "decision_deferred"
RESUMED = "decision_resumed"
QUIET_FOR = 120  # seconds without an attempt after which the sweep rings again
# A click not decided this long after it was made is told "deciding…" by the web, and its
# outcome is then told by the worker, whatever it is; a quicker one shows on the card.
NOTICE_AFTER = 3.0
# Slack honours a response_url for 30 minutes; the worker's words go there, else a DM.
RESPONSE_URL_TTL = 30 * 60
log = logging.getLogger(__name__)


def deciding_text(decision: Decision) -> str:
    what = "approval" if decision is Decision.APPROVE else "denial"
    return (
        f":hourglass_flowing_sand: Your {what} is recorded; deciding… Latchkey checks who "
        "may decide and tells you the outcome here."
    )


def later_text(decision: Decision) -> str:
    what = "approval" if decision is Decision.APPROVE else "denial"
    return (
        f":hourglass_flowing_sand: Your {what} is recorded and will be decided shortly: "
        "Latchkey is catching up after a hiccup. It tells you the outcome here."
    )


def store_decision(
    rt: Runtime,
    body: dict[str, Any],
    request_id: uuid.UUID,
    decision: Decision,
    *,
    duration: timedelta | None = None,
    reason: str = "",
) -> int:
    """Keep a click as a keyed audit event (before its ack); returns the event's seq."""
    with rt.db.session() as session:
        request = session.get(AccessRequest, request_id)
        if request is None:
            raise Refusal("That request no longer exists.")
        details: dict[str, Any] = {"decision": decision.value}
        if duration is not None:
            details["duration_seconds"] = int(duration.total_seconds())
        if reason.strip():
            details["reason"] = reason.strip()
        if from_home(body):
            details["from_home"] = True  # the worker re-publishes the approver's App Home
        event = rt.audit.append(
            session,
            event=DEFERRED,
            actor=body["user"]["id"],
            request_id=request.id,
            flow=request.flow,
            target=request.target,
            subject=request.requester_id,
            details=details,
        )
        return event.seq


def hand_to_worker(
    rt: Runtime,
    client: WebClient,
    body: dict[str, Any],
    request_id: uuid.UUID,
    seq: int,
    decision: Decision,
    notices: LateNotices | None = None,
) -> None:
    """After the ack: keep the click's response_url for the worker's words and ring the
    worker. With the broker away the approver hears so now; the sweep rings later."""
    url = response_url_of(body)
    try:
        if url:
            rt.redis.set(_url_key(seq), url, ex=RESPONSE_URL_TTL)
    except RedisError:
        pass  # the worker's words go by DM instead
    claim_deferred(rt, seq, fresh=False)
    if not rt.tasks.decide_deferred(request_id, seq):
        tell(client, body, later_text(decision))
    elif notices is not None:
        notices.watch(body, request_id, seq, decision)


def tell_clicker(rt: Runtime, user_id: str, seq: int, text: str) -> None:
    """Words for the person whose click `seq` was: ephemeral through the click's
    response_url while Slack honours it, else a DM."""
    try:
        raw = rt.redis.get(_url_key(seq))
    except RedisError:
        raw = None
    url = raw.decode() if isinstance(raw, bytes) else raw
    if url and reply(url, text):
        return
    rt.slack.chat_postMessage(channel=user_id, text=text)


def _url_key(seq: int) -> str:
    return f"latchkey:deferred:{seq}:response_url"


def _resumed(session: Any, request_id: uuid.UUID, seq: int) -> bool:
    return any(
        e.details.get("deferred_seq") == seq for e in events_of(session, request_id, (RESUMED,))
    )


def finish_deferred_decision(rt: Runtime, request_id: uuid.UUID, seq: int) -> str | None:
    """Decide a click stored by `store_decision`, from its keyed audit event.

    Raises what Slack raised while it still cannot answer (the task retries). Returns what
    the approver was told, or None when there was nothing (left) to do or to say.
    """
    claim_deferred(rt, seq, fresh=False)
    with rt.db.session() as session:
        event = session.get(AuditEvent, seq)
        if (
            event is None
            or event.event != DEFERRED
            or event.request_id != request_id
            or not rt.audit.authentic(event)
        ):
            log.error("deferred decision %s of request=%s: no keyed event", seq, request_id)
            return None
        if _resumed(session, request_id, seq):
            return None  # finished by an earlier delivery of the task
        approver_id, details, clicked_at = event.actor, dict(event.details), event.at
    decision = Decision(details["decision"])
    seconds = details.get("duration_seconds")
    duration = timedelta(seconds=int(seconds)) if seconds is not None else None
    try:
        from app.slack.listeners.approvals import verdict_for  # the same check as a click

        flow, verdict = verdict_for(rt, request_id, approver_id)
    except Refusal as refusal:
        flow, verdict = None, refuse(str(refusal))
    outcome = None
    with rt.db.session() as session:
        request = lifecycle.lock_request(session, request_id)
        if request is None or _resumed(session, request_id, seq):
            return None
        if flow is not None:
            outcome = lifecycle.decide(
                session=session,
                audit=rt.audit,
                flow=flow,
                request_id=request_id,
                decider_id=approver_id,
                verdict=verdict,
                decision=decision,
                reason=str(details.get("reason", "")),
                duration=duration,
            )
        refusal = verdict.reason if outcome is None else outcome.refusal
        lifecycle.record(
            session,
            rt.audit,
            request,
            RESUMED,
            "latchkey",
            {"deferred_seq": seq, "approver": approver_id, "refusal": refusal},
        )
        what = f"<@{request.requester_id}>'s request for *{escape(request.target)}*"
    text: str | None
    if outcome is not None and refusal is None:
        follow_up(rt, request_id, decision, outcome)
        if details.get("from_home"):
            publish_home(rt, approver_id)
        verb = "approval" if decision is Decision.APPROVE else "denial"
        # A quick decision shows on the card; one the approver was told "deciding…" about
        # (see NOTICE_AFTER) is told in words too.
        late = (utcnow() - _aware(clicked_at)).total_seconds() >= NOTICE_AFTER
        text = (
            f":white_check_mark: Your {verb} of {what} is decided: {_result(outcome)}."
            if late
            else None
        )
    else:
        text = f":no_entry: {refusal}"  # every refusal, in the words a click always had
        log.info(
            "refused: %s (user %s)",
            str(refusal).replace("\r", " ").replace("\n", " ")[:300],
            approver_id,
        )
    if text is not None:
        try:
            tell_clicker(rt, approver_id, seq, text)
        except Exception:
            # Decided and audited; only the message is lost (the card shows the outcome).
            log.warning("could not tell %s the outcome of a decision", approver_id)
    return text


def _aware(at: datetime) -> datetime:
    """SQLite hands timestamps back naive; they were stored in UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class LateNotices:
    """Tells an approver "deciding…" when the worker has not decided their click within
    NOTICE_AFTER seconds (a busy or stopped worker), from one thread of the web process,
    so no listener thread waits for it."""

    def __init__(self, rt: Runtime, client: WebClient, after: float = NOTICE_AFTER) -> None:
        self._rt, self._client, self._after = rt, client, after
        self._due: list[tuple[float, int, dict[str, Any], uuid.UUID, int, Decision]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(
        self, body: dict[str, Any], request_id: uuid.UUID, seq: int, decision: Decision
    ) -> None:
        # Only who clicked and where to answer them are kept, not the whole payload.
        reach = {"user": {"id": actor_of(body)}, "response_url": response_url_of(body)}
        with self._wake:
            due = time.monotonic() + self._after
            heapq.heappush(self._due, (due, next(self._order), reach, request_id, seq, decision))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="late-notices", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, reach, request_id, seq, decision = heapq.heappop(self._due)
            try:
                with self._rt.db.session() as session:
                    decided = _resumed(session, request_id, seq)
                if not decided:
                    tell(self._client, reach, deciding_text(decision))
            except Exception as exc:  # a courtesy; the worker still tells the outcome
                log.warning("could not tell a clicker their decision is pending (%s)", exc)


def claim_deferred(rt: Runtime, seq: int, *, fresh: bool) -> bool:
    """Mark a deferred click as being worked on, for QUIET_FOR seconds; with fresh=True only
    when nobody worked on it lately (so the sweep rings again only for a lost task)."""
    try:
        return bool(rt.redis.set(f"latchkey:deferred:{seq}", "1", nx=fresh, ex=QUIET_FOR))
    except RedisError:
        return False  # the broker is away too: the next sweep tries again


def resume_deferred_decisions(rt: Runtime) -> int:
    """Ring the worker again for deferred clicks on pending requests that no task has worked
    on lately (the broker lost it): the DB, not the broker, keeps every click."""
    with rt.db.session() as session:
        rows = session.execute(
            select(AuditEvent.seq, AuditEvent.request_id)
            .join(AccessRequest, AccessRequest.id == AuditEvent.request_id)  # type: ignore[arg-type]
            .where(AuditEvent.event == DEFERRED, AccessRequest.status == RequestStatus.PENDING)  # type: ignore[arg-type]
        ).all()
        done = {
            e.details.get("deferred_seq")
            for request_id in {r for _, r in rows}
            for e in events_of(session, request_id, (RESUMED,))
        }
    rung = 0
    for seq, request_id in rows:
        if seq not in done and claim_deferred(rt, seq, fresh=True):
            rung += rt.tasks.decide_deferred(request_id, seq)
    return rung


def _result(outcome: lifecycle.DecisionOutcome) -> str:
    if outcome.request is None:
        return "recorded"
    if outcome.won:
        return f"the request is {outcome.request.status.value}"
    return f"recorded ({outcome.quorum.progress})" if outcome.quorum else "recorded"


def follow_up(
    rt: Runtime, request_id: uuid.UUID, decision: Decision, outcome: lifecycle.DecisionOutcome
) -> bool:
    """Ring the worker after a decision; False when the broker could not take the grant."""
    if decision is Decision.DENY:
        if outcome.won:
            rt.tasks.notify(request_id, "denied")
        return True
    if outcome.won:
        rang = rt.tasks.grant(request_id)
        rt.tasks.notify(request_id, "approved")
        return rang
    rt.tasks.notify(request_id, "approval_recorded")
    return True
