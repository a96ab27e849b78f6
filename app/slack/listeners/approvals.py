"""Approve and Deny on the approval card: kept at the click, decided by the worker, where
the approver is checked on the server, from the flow and Slack as they are then."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from slack_bolt import Ack
from slack_sdk import WebClient

from app import lifecycle
from app.access import run_request_hook
from app.clients import mention
from app.eligibility import approver_verdict, requester_email, requester_verdict
from app.escalation import escalated_approvers
from app.flows.loader import LoadedFlow
from app.flows.policy import Verdict, refuse
from app.flows.schema import Flow
from app.models import AccessRequest, Decision
from app.oncall.people import audited, on_call_people
from app.runtime import Runtime
from app.slack import ids
from app.slack.blocks.cards import summary
from app.slack.blocks.modals import deny_modal
from app.slack.clicks import Click, ClickKeeper
from app.slack.directory import slack_unreachable
from app.slack.listeners.errors import Refusal, guarded, refused, request_id_from
from app.slack.routes import Routes


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
    extra = hook_approvers(rt, loaded, request)
    if flow.escalation:  # people a step made approvers of this request, from keyed events
        extra |= escalated_approvers(rt, request)
    if flow.approvers.oncall and decider_id not in flow.approvers.users:
        on_call = audited(
            rt,
            request_id,
            "approvers.oncall",
            lambda: on_call_people(rt, flow.approvers.oncall),
        )
        extra |= frozenset(on_call or ())
    verdict = approver_verdict(
        rt, flow, requester_id=requester_id, user_id=decider_id, extra_approvers=extra
    )
    if verdict.allowed:
        eligible = requester_verdict(rt, loaded, requester_id)
        if not eligible.allowed:
            return flow, refuse(
                f"{mention(requester_id)} may no longer request {flow.name}: {eligible.reason}"
            )
    return flow, verdict


def hook_approvers(rt: Runtime, loaded: LoadedFlow, request: AccessRequest) -> frozenset[str]:
    """Approvers the flow's get_approvers hook names for this request; none if it fails."""
    if "get_approvers" not in loaded.hooks:
        return frozenset()
    email = requester_email(rt, request.requester_id)
    return run_request_hook(rt, loaded, "get_approvers", request, email).names()


def register(routes: Routes, rt: Runtime, keeper: ClickKeeper) -> None:
    def hand_over(
        ack: Ack,
        body: dict[str, Any],
        client: WebClient,
        request_id: uuid.UUID,
        decision: Decision,
        **choice: Any,
    ) -> None:
        # Acked first: on SQLite every transaction takes the one write lock, so a write
        # before the ack would queue it behind the worker's writes (acks took over 3 s at
        # 50 clicks). Then the keeper's thread keeps the click, keyed, in the DB with the
        # others of the moment (a click it cannot keep is told so); who may decide (Slack
        # groups, hooks) is checked by the worker, which tells the clicker.
        ack()
        keeper.keep(Click.of(body, request_id, decision, **choice))

    @routes.action(ids.APPROVE_ACTION)
    @guarded
    def approve(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        request_id = request_id_from(body["actions"][0]["value"])
        hand_over(ack, body, client, request_id, Decision.APPROVE)

    @routes.action(ids.APPROVE_FOR_ACTION)
    @guarded
    def approve_for_less(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        raw_id, _, seconds = body["actions"][0]["selected_option"]["value"].partition("|")
        request_id = request_id_from(raw_id)
        if not seconds.isdigit():
            with rt.db.session() as session:
                request = session.get(AccessRequest, request_id)
            if request is None:
                raise Refusal("That request no longer exists.")
            # A forged choice is a refused decision like any other: on the record.
            raise refused(
                rt,
                request,
                "approve_refused",
                body["user"]["id"],
                "not a duration of the flow",
                "That choice does not name a duration.",
            )
        # Any number reaches decide, which accepts only the flow's durations above zero and
        # below what was asked, and audits the refusal of anything else (a forged "0").
        duration = timedelta(seconds=int(seconds))
        hand_over(ack, body, client, request_id, Decision.APPROVE, duration=duration)

    @routes.action(ids.DENY_ACTION)
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

    @routes.view(ids.DENY_VIEW)
    @guarded
    def deny(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        view = body["view"]
        meta = json.loads(view.get("private_metadata") or "{}")
        request_id = request_id_from(str(meta.get("request_id", "")))
        reason = (
            view["state"]["values"]
            .get(ids.DENY_REASON_BLOCK, {})
            .get(ids.DENY_REASON_ACTION, {})
            .get("value")
            or ""
        )
        # Checked again by the worker: membership may have changed since the click. The
        # modal closes at once; a refusal reaches the approver in words (a DM).
        hand_over(ack, body, client, request_id, Decision.DENY, reason=reason)


def register_reviews(routes: Routes, rt: Runtime) -> None:
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

    @routes.action(ids.REVIEW_ACK_ACTION)
    @guarded
    def acknowledge(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        review(body, flagged=False)

    @routes.action(ids.REVIEW_FLAG_ACTION)
    @guarded
    def flag(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        review(body, flagged=True)
