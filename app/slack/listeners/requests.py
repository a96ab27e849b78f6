"""The request modal: re-render on flow change, validate and store on submit."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from app import lifecycle
from app.eligibility import request_problem, requestable_flows
from app.flows.policy import RequestInput, check_request
from app.flows.schema import format_duration
from app.notify import publish_home
from app.runtime import Runtime
from app.slack import ids
from app.slack.blocks.modals import break_glass_confirm, problem_view, request_modal
from app.slack.blocks.text import escape
from app.slack.listeners.errors import (
    BREAK_GLASS_LATER,
    Refusal,
    from_home,
    guarded,
    recorded_for_later,
    request_id_from,
    tell,
)

_FIELD_BLOCKS = {
    "target": ids.TARGET_BLOCK,
    "duration": ids.DURATION_BLOCK,
    "reason": ids.REASON_BLOCK,
}


def field_value(view: dict[str, Any], block: str, action: str) -> str:
    """One input's value as submitted (a select's chosen value or the typed text)."""
    return _selected(view["state"]["values"], block, action)


def _selected(values: dict[str, Any], block: str, action: str) -> str:
    element = values.get(block, {}).get(action, {})
    option = element.get("selected_option") or {}
    return str(option.get("value") or element.get("value") or "")


def read_request(view: dict[str, Any]) -> RequestInput:
    """What the person entered, as typed; check_request decides whether it is acceptable."""
    values = view["state"]["values"]
    flow = _selected(values, ids.FLOW_BLOCK, ids.FLOW_ACTION)
    if not flow:
        flow = json.loads(view.get("private_metadata") or "{}").get("flow", "")
    seconds = _selected(values, ids.DURATION_BLOCK, ids.DURATION_ACTION)
    duration = timedelta(seconds=int(seconds)) if seconds.isdigit() else timedelta(0)
    return RequestInput(
        flow=flow,
        target=_selected(values, ids.TARGET_BLOCK, ids.TARGET_ACTION),
        duration=duration,
        reason=_selected(values, ids.REASON_BLOCK, ids.REASON_ACTION),
    )


def register(app: App, rt: Runtime) -> None:
    _register_cancel(app, rt)
    _register_break_glass(app, rt)

    @app.action(ids.FLOW_ACTION)
    @guarded
    def switch_flow(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        chosen = rt.flows.get(body["actions"][0]["selected_option"]["value"])
        if chosen is None:
            return
        view = body["view"]
        client.views_update(
            view_id=view["id"],
            hash=view.get("hash"),
            view=request_modal(requestable_flows(rt, body["user"]["id"]), chosen.flow),
        )

    @app.view(ids.REQUEST_VIEW)
    @guarded
    def submit_request(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        view = body["view"]
        ask = read_request(view)
        loaded = rt.flows.get(ask.flow)
        problems = check_request(loaded.flow if loaded else None, ask)
        if loaded is not None and not problems:
            problem = request_problem(rt, loaded, ask.target, body["user"]["id"])
            if problem:
                problems = {"target": problem}
        if problems:
            ack(
                response_action="errors",
                errors={_FIELD_BLOCKS[f]: msg for f, msg in problems.items()},
            )
            return
        assert loaded is not None
        if _break_glass_checked(view):
            _ask_break_glass_confirmation(ack, loaded.flow.break_glass, ask)
            return
        # Stored before the ack: once the modal closes, the request exists.
        with rt.db.session() as session:
            request = lifecycle.submit(
                session=session,
                audit=rt.audit,
                flow=loaded.flow,
                requester_id=body["user"]["id"],
                ask=ask,
            )
        ack()
        if not rt.tasks.process_submission(request.id):
            tell(client, body, recorded_for_later(loaded.flow.approval_channel))


def _ask_break_glass_confirmation(ack: Ack, allowed: bool, ask: RequestInput) -> None:
    if not allowed:
        ack(
            response_action="errors",
            errors={ids.BREAK_GLASS_BLOCK: "This flow has no break-glass."},
        )
    elif not ask.reason.strip():
        ack(
            response_action="errors",
            errors={ids.REASON_BLOCK: "Break-glass always needs a reason."},
        )
    else:
        summary = (
            f"You are about to take *{escape(ask.target)}* ({escape(ask.flow)}) "
            f"for {format_duration(ask.duration)}."
        )
        seconds = int(ask.duration.total_seconds())
        ack(
            response_action="push",
            view=break_glass_confirm(ask.flow, ask.target, seconds, ask.reason, summary),
        )


def _break_glass_checked(view: dict[str, Any]) -> bool:
    element = view["state"]["values"].get(ids.BREAK_GLASS_BLOCK, {}).get(ids.BREAK_GLASS_ACTION, {})
    return any(o.get("value") == "break_glass" for o in element.get("selected_options") or [])


def _register_break_glass(app: App, rt: Runtime) -> None:
    @app.view(ids.BREAK_GLASS_VIEW)
    @guarded
    def confirm_break_glass(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        meta = json.loads(body["view"].get("private_metadata") or "{}")
        ask = RequestInput(
            flow=str(meta.get("flow", "")),
            target=str(meta.get("target", "")),
            duration=timedelta(seconds=int(meta.get("seconds", 0))),
            reason=str(meta.get("reason", "")),
        )
        requester_id = body["user"]["id"]
        # Everything is checked again: the confirm step must not be a way around the rules.
        loaded = rt.flows.get(ask.flow)
        problems = list(check_request(loaded.flow if loaded else None, ask).values())
        if loaded is not None and not problems:
            if not loaded.flow.break_glass or not ask.reason.strip():
                problems.append("This flow has no break-glass, or no reason was given.")
            problem = request_problem(rt, loaded, ask.target, requester_id)
            if problem:
                problems.append(problem)
        if problems:
            ack(
                response_action="update",
                view=problem_view("Break glass refused", " ".join(problems)),
            )
            return
        assert loaded is not None
        with rt.db.session() as session:
            request = lifecycle.submit(
                session=session,
                audit=rt.audit,
                flow=loaded.flow,
                requester_id=requester_id,
                ask=ask,
            )
            lifecycle.break_glass(
                session=session, audit=rt.audit, request_id=request.id, actor=requester_id
            )
        ack(response_action="clear")
        rang = rt.tasks.grant(request.id)
        rt.tasks.notify(request.id, "break_glass")
        if not rang:
            tell(client, body, BREAK_GLASS_LATER)


def _register_cancel(app: App, rt: Runtime) -> None:
    @app.action(ids.CANCEL_ACTION)
    @guarded
    def cancel_request(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        request_id = request_id_from(body["actions"][0]["value"])
        with rt.db.session() as session:
            outcome = lifecycle.cancel(
                session=session, audit=rt.audit, request_id=request_id, actor=body["user"]["id"]
            )
        if outcome.refusal:
            raise Refusal(outcome.refusal)
        rt.tasks.notify(request_id, "cancelled")
        if from_home(body):
            publish_home(rt, body["user"]["id"])
