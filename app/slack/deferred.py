"""Clicks the approver check could not finish because Slack did not answer: kept as keyed
`decision_deferred` events, finished by the worker when Slack answers, never dropped."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from redis.exceptions import RedisError
from slack_sdk import WebClient
from sqlalchemy import select

from app import lifecycle
from app.flows.policy import refuse
from app.models import AccessRequest, AuditEvent, Decision, RequestStatus
from app.queries import events_of
from app.runtime import Runtime
from app.slack.blocks.text import escape
from app.slack.listeners.errors import (
    Refusal,
    tell,
)

# A click whose approver check could not reach Slack (a 429 burst, an outage) is stored as
# a keyed `decision_deferred` audit event and finished by the worker once Slack answers:
# the same check, the same decide, the approver told the outcome. Never dropped.
DEFERRED = "decision_deferred"
RESUMED = "decision_resumed"
QUIET_FOR = 120  # seconds without an attempt after which the sweep rings again
log = logging.getLogger(__name__)


def deciding_text(decision: Decision) -> str:
    what = "approval" if decision is Decision.APPROVE else "denial"
    return (
        f":hourglass_flowing_sand: Your {what} is recorded; deciding… Slack is not answering "
        "right now, so Latchkey checks who may decide as soon as it does, and tells you."
    )


def defer_decision(
    rt: Runtime,
    client: WebClient,
    body: dict[str, Any],
    request_id: uuid.UUID,
    decision: Decision,
    *,
    duration: timedelta | None = None,
    reason: str = "",
) -> None:
    """Store the click as a keyed audit event, ring the worker, tell the approver."""
    approver_id = body["user"]["id"]
    with rt.db.session() as session:
        request = session.get(AccessRequest, request_id)
        if request is None:
            raise Refusal("That request no longer exists.")
        details: dict[str, Any] = {"decision": decision.value}
        if duration is not None:
            details["duration_seconds"] = int(duration.total_seconds())
        if reason.strip():
            details["reason"] = reason.strip()
        event = rt.audit.append(
            session,
            event=DEFERRED,
            actor=approver_id,
            request_id=request.id,
            flow=request.flow,
            target=request.target,
            subject=request.requester_id,
            details=details,
        )
        seq = event.seq
    claim_deferred(rt, seq, fresh=False)
    rt.tasks.decide_deferred(request_id, seq)
    tell(client, body, deciding_text(decision))


def finish_deferred_decision(rt: Runtime, request_id: uuid.UUID, seq: int) -> str | None:
    """Decide a click stored by `defer_decision`, from its keyed audit event.

    Raises what Slack raised while it still cannot answer (the task retries). Returns what
    the approver was told, or None when there was nothing (left) to do.
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
        if any(
            e.details.get("deferred_seq") == seq for e in events_of(session, request_id, (RESUMED,))
        ):
            return None  # finished by an earlier delivery of the task
        approver_id, details = event.actor, dict(event.details)
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
        if request is None:
            return None
        if any(
            e.details.get("deferred_seq") == seq for e in events_of(session, request_id, (RESUMED,))
        ):
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
    if outcome is not None and refusal is None:
        follow_up(rt, request_id, decision, outcome)
        verb = "approval" if decision is Decision.APPROVE else "denial"
        text = f":white_check_mark: Your {verb} of {what} is decided: {_result(outcome)}."
    else:
        text = f":no_entry: Your decision on {what} was not applied: {refusal}"
    try:
        rt.slack.chat_postMessage(channel=approver_id, text=text)
    except Exception:
        # Decided and audited; only the message is lost (the card shows the outcome).
        log.warning("could not tell %s the outcome of a deferred decision", approver_id)
    return text


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
