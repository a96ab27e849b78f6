"""Approve and Deny on the approval card; the approver is checked on the server, now."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from typing import Any

from redis.exceptions import RedisError
from slack_bolt import Ack, App
from slack_sdk import WebClient
from sqlalchemy import select

from app import lifecycle
from app.access import run_request_hook
from app.eligibility import approver_verdict, requester_verdict
from app.flows.loader import LoadedFlow
from app.flows.policy import Verdict, refuse
from app.flows.schema import Flow
from app.models import AccessRequest, AuditEvent, Decision, RequestStatus
from app.notify import publish_home
from app.queries import events_of
from app.runtime import Runtime
from app.slack import ids
from app.slack.blocks.cards import summary
from app.slack.blocks.modals import deny_modal
from app.slack.blocks.text import escape
from app.slack.directory import slack_unreachable
from app.slack.listeners.errors import (
    APPROVAL_LATER,
    Refusal,
    from_home,
    guarded,
    request_id_from,
    tell,
)


def verdict_for(rt: Runtime, request_id: uuid.UUID, decider_id: str) -> tuple[Flow | None, Verdict]:
    """Who may decide is read from the flow and Slack at this moment, never from the message.

    The requester's eligibility is checked again too: someone removed from the flow's
    requesters since asking is not approved.
    """
    with rt.db.session() as session:
        request = session.get(AccessRequest, request_id)
        if request is None:
            raise Refusal("That request no longer exists.")
        flow_name, requester_id = request.flow, request.requester_id
    loaded = rt.flows.get(flow_name)
    if loaded is None:
        return None, refuse(f"The flow {flow_name!r} no longer exists.")
    flow = loaded.flow
    verdict = approver_verdict(
        rt,
        flow,
        requester_id=requester_id,
        user_id=decider_id,
        extra_approvers=_hook_approvers(rt, loaded, request),
    )
    if verdict.allowed:
        eligible = requester_verdict(rt, loaded, requester_id)
        if not eligible.allowed:
            return flow, refuse(
                f"<@{requester_id}> may no longer request {flow.name}: {eligible.reason}"
            )
    return flow, verdict


def _hook_approvers(rt: Runtime, loaded: LoadedFlow, request: AccessRequest) -> frozenset[str]:
    """Approvers the flow's get_approvers hook names for this request; none if it fails."""
    if "get_approvers" not in loaded.hooks:
        return frozenset()
    email = rt.directory.user(request.requester_id).email
    return run_request_hook(rt, loaded, "get_approvers", request, email).names()


def _approve(
    rt: Runtime,
    body: dict[str, Any],
    client: WebClient,
    request_id: uuid.UUID,
    duration: timedelta | None,
) -> None:
    approver_id = body["user"]["id"]
    try:
        flow, verdict = verdict_for(rt, request_id, approver_id)
    except Exception as exc:
        if not slack_unreachable(exc):
            raise
        # Slack cannot say now who may approve: the click is kept, keyed, for the worker.
        defer_decision(rt, client, body, request_id, Decision.APPROVE, duration=duration)
        return
    if flow is None:
        raise Refusal(verdict.reason)
    with rt.db.session() as session:
        outcome = lifecycle.decide(
            session=session,
            audit=rt.audit,
            flow=flow,
            request_id=request_id,
            decider_id=approver_id,
            verdict=verdict,
            decision=Decision.APPROVE,
            duration=duration,
        )
    if outcome.refusal:
        raise Refusal(outcome.refusal)
    rang = _follow_up(rt, request_id, Decision.APPROVE, outcome)
    if not rang:
        tell(client, body, APPROVAL_LATER)
    if from_home(body):
        publish_home(rt, approver_id)


def register(app: App, rt: Runtime) -> None:
    @app.action(ids.APPROVE_ACTION)
    @guarded
    def approve(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        _approve(rt, body, client, request_id_from(body["actions"][0]["value"]), None)

    @app.action(ids.APPROVE_FOR_ACTION)
    @guarded
    def approve_for_less(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        raw_id, _, seconds = body["actions"][0]["selected_option"]["value"].partition("|")
        if not seconds.isdigit():
            raise Refusal("That choice does not name a duration.")
        # Any number reaches decide, which accepts only the flow's durations above zero and
        # below what was asked, and audits the refusal of anything else (a forged "0").
        _approve(rt, body, client, request_id_from(raw_id), timedelta(seconds=int(seconds)))

    @app.action(ids.DENY_ACTION)
    @guarded
    def ask_deny_reason(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        request_id = request_id_from(body["actions"][0]["value"])
        try:
            flow, verdict = verdict_for(rt, request_id, body["user"]["id"])
        except Exception as exc:
            if not slack_unreachable(exc):
                raise
            # Slack cannot say now: the form opens, and its submission is decided (or
            # deferred to the worker) then.
            flow, verdict = None, None
        if verdict is not None and (flow is None or not verdict.allowed):
            # Refused before the form opens; audited by the same path as a refused decision.
            if flow is None:
                raise Refusal(verdict.reason)
            with rt.db.session() as session:
                lifecycle.decide(
                    session=session,
                    flow=flow,
                    audit=rt.audit,
                    request_id=request_id,
                    decider_id=body["user"]["id"],
                    verdict=verdict,
                    decision=Decision.DENY,
                )
            raise Refusal(verdict.reason)
        with rt.db.session() as session:
            request = session.get(AccessRequest, request_id)
            text = summary(request) if request else "This request"
        channel = (body.get("channel") or {}).get("id")
        message_ts = (body.get("message") or {}).get("ts")
        client.views_open(
            trigger_id=body["trigger_id"],
            view=deny_modal(str(request_id), text, channel, message_ts),
        )

    @app.view(ids.DENY_VIEW)
    @guarded
    def deny(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        view = body["view"]
        meta = json.loads(view.get("private_metadata") or "{}")
        request_id = request_id_from(str(meta.get("request_id", "")))
        approver_id = body["user"]["id"]
        reason = (
            view["state"]["values"]
            .get(ids.DENY_REASON_BLOCK, {})
            .get(ids.DENY_REASON_ACTION, {})
            .get("value")
            or ""
        )
        # Checked again at submission: membership may have changed since the click.
        try:
            flow, verdict = verdict_for(rt, request_id, approver_id)
        except Exception as exc:
            if not slack_unreachable(exc):
                raise
            ack()
            defer_decision(rt, client, body, request_id, Decision.DENY, reason=reason)
            return
        if flow is None:
            ack(response_action="errors", errors={ids.DENY_REASON_BLOCK: verdict.reason})
            return
        with rt.db.session() as session:
            outcome = lifecycle.decide(
                session=session,
                audit=rt.audit,
                flow=flow,
                request_id=request_id,
                decider_id=approver_id,
                verdict=verdict,
                decision=Decision.DENY,
                reason=reason,
            )
        if outcome.refusal:
            ack(response_action="errors", errors={ids.DENY_REASON_BLOCK: outcome.refusal})
            return
        ack()
        if outcome.won:
            rt.tasks.notify(request_id, "denied")


def register_reviews(app: App, rt: Runtime) -> None:
    def review(body: dict[str, Any], flagged: bool) -> None:
        reviewer_id = body["user"]["id"]
        request_id = request_id_from(body["actions"][0]["value"])
        flow, verdict = verdict_for(rt, request_id, reviewer_id)
        if flow is None:
            raise Refusal(verdict.reason)
        with rt.db.session() as session:
            request = session.get(AccessRequest, request_id)
            if request is not None and request.requester_id == reviewer_id:
                # Reviewing your own emergency access would defeat the review.
                verdict = refuse("You can't review your own break-glass use.")
            outcome = lifecycle.review_break_glass(
                session=session,
                audit=rt.audit,
                request_id=request_id,
                reviewer_id=reviewer_id,
                verdict=verdict,
                flagged=flagged,
            )
        if outcome.refusal:
            raise Refusal(outcome.refusal)
        rt.tasks.notify(request_id, "reviewed")

    @app.action(ids.REVIEW_ACK_ACTION)
    @guarded
    def acknowledge(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        review(body, flagged=False)

    @app.action(ids.REVIEW_FLAG_ACTION)
    @guarded
    def flag(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        review(body, flagged=True)


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
        _follow_up(rt, request_id, decision, outcome)
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


def _follow_up(
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
