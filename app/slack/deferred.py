"""Approve and Deny, decided by the worker: the web acks each click and keeps it as a
keyed `decision_deferred` audit event (app/slack/clicks.py); the worker checks the approver
(Slack groups, hooks), decides, and tells the clicker in words. A click is never dropped."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import select

from app import granting, lifecycle
from app.clients import possessive
from app.db import utcnow
from app.flows.policy import refuse
from app.models import AccessRequest, AuditEvent, Decision, RequestStatus
from app.notify import publish_home
from app.queries import events_of
from app.runtime import Runtime
from app.slack.blocks.text import escape
from app.slack.listeners.errors import Refusal, reply

# The web acks an approver's click, keeps it as a keyed `decision_deferred` audit event
# (a click that cannot be kept is told so) and rings the worker; the worker
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


def tell_clicker(rt: Runtime, user_id: str, seq: int, text: str) -> None:
    """Words for the person whose click `seq` was: ephemeral through the click's
    response_url while Slack honours it, else a DM."""
    try:
        raw = rt.redis.get(url_key(seq))
    except RedisError:
        raw = None
    url = raw.decode() if isinstance(raw, bytes) else raw
    if url and reply(url, text):
        return
    rt.slack.chat_postMessage(channel=user_id, text=text)


def url_key(seq: int) -> str:
    """Where the web keeps a click's response_url for the worker's words."""
    return f"latchkey:deferred:{seq}:response_url"


def claim_key(seq: int) -> str:
    """Set while a task works on the click (QUIET_FOR seconds)."""
    return f"latchkey:deferred:{seq}"


def _resumed(session: Any, request_id: uuid.UUID, seq: int) -> bool:
    return any(
        e.details.get("deferred_seq") == seq for e in events_of(session, request_id, (RESUMED,))
    )


def _record_resumed(
    rt: Runtime,
    session: Any,
    request: AccessRequest,
    seq: int,
    approver_id: str,
    refusal: str | None,
    **more: str,
) -> None:
    """The click `seq` is finished (decided, refused, or sent on to a passkey page)."""
    details = {"deferred_seq": seq, "approver": approver_id, "refusal": refusal, **more}
    lifecycle.record(session, rt.audit, request, RESUMED, "latchkey", details)


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
    if (
        flow is not None
        and verdict.allowed
        and decision is Decision.APPROVE
        and flow.approval_assurance == "passkey"
    ):
        return _offer_passkey(rt, request_id, seq, approver_id, duration)
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
        _record_resumed(rt, session, request, seq, approver_id, refusal)
        what = f"{possessive(request.requester_id)} request for *{escape(request.target)}*"
    text: str | None
    if outcome is not None and refusal is None:
        follow_up(rt, request_id, decision, outcome)
        if details.get("from_home"):
            publish_home(rt, approver_id)
        verb = "approval" if decision is Decision.APPROVE else "denial"
        # A quick decision shows on the card; one the approver was told "deciding…" about
        # (see NOTICE_AFTER) is told in words too.
        late = (utcnow() - clicked_at).total_seconds() >= NOTICE_AFTER
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


def _offer_passkey(
    rt: Runtime, request_id: uuid.UUID, seq: int, approver_id: str, duration: timedelta | None
) -> str | None:
    """An allowed approver of a passkey flow gets a link to confirm on the web's page
    (app.passkeys) instead of a decision; the click is finished, nothing is approved."""
    from app.passkeys.approval import offer_confirmation

    with rt.db.session() as session:
        request = session.get(AccessRequest, request_id)
        if request is None or _resumed(session, request_id, seq):
            return None
    if request.status == RequestStatus.PENDING:
        text = offer_confirmation(rt, request, approver_id, duration)
    else:
        text = f":information_source: This request is already {request.status.value}."
    with rt.db.session() as session:
        request = lifecycle.lock_request(session, request_id)
        if request is None or _resumed(session, request_id, seq):
            return None
        _record_resumed(rt, session, request, seq, approver_id, None, passkey="asked")
    tell_clicker(rt, approver_id, seq, text)
    return text


def claim_deferred(rt: Runtime, seq: int, *, fresh: bool) -> bool:
    """Mark a deferred click as being worked on, for QUIET_FOR seconds; with fresh=True only
    when nobody worked on it lately (so the sweep rings again only for a lost task)."""
    try:
        return bool(rt.redis.set(claim_key(seq), "1", nx=fresh, ex=QUIET_FOR))
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
        rt.tasks.notify(request_id, "approved")
        return grant_here(rt, request_id)
    rt.tasks.notify(request_id, "approval_recorded")
    return True


def grant_here(rt: Runtime, request_id: uuid.UUID) -> bool:
    """Grant in the task that decided, at once. A grant task of its own queued behind the
    other clicks of a burst: at 50 approvals at once, approved → granting took 1.7 to 2.3 s of
    the 3 s (bench.approve_to_access, its stages). When the provider asks to try again, or
    anything else goes wrong, the grant task takes over with its retries and backoff, under
    the same claim (its id is the claim's owner), so it does not wait out the lease.
    False when neither could be done now (the sweep finds the approved request)."""
    owner = uuid.uuid4().hex
    try:
        granting.grant_access(rt, request_id, owner=owner)
    except Exception as exc:
        log.warning(
            "grant of request=%s handed to the grant task (%s: %s)",
            request_id,
            type(exc).__name__,
            str(exc)[:200],
        )
        return rt.tasks.grant(request_id, task_id=owner)
    return True
