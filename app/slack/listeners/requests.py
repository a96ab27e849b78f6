"""The request modal: re-render on flow change, validate and store on submit."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from slack_bolt import Ack
from slack_sdk import WebClient
from sqlalchemy import delete
from sqlmodel import Session

from app import lifecycle
from app.db import utcnow
from app.eligibility import for_others, on_behalf_problem, request_problem, requestable_flows
from app.flows.policy import RequestInput, check_request
from app.flows.schema import format_duration
from app.identity import NOT_LINKED
from app.identity_links.offer import offer_identity_link
from app.models import RequestDraft
from app.notify import publish_home
from app.passkeys.approval import break_glass_link
from app.runtime import Runtime
from app.slack import ids
from app.slack.blocks.modals import (
    break_glass_confirm,
    break_glass_passkey_view,
    problem_view,
    request_modal,
)
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
from app.slack.routes import Routes

# How long a break-glass confirmation stays valid after the form was submitted.
DRAFT_TTL = timedelta(minutes=15)

_FIELD_BLOCKS = {
    "for": ids.FOR_BLOCK,
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


def for_whom(view: dict[str, Any]) -> str | None:
    """The "For" picker's person, when the form had one and someone was picked."""
    element = view["state"]["values"].get(ids.FOR_BLOCK, {}).get(ids.FOR_ACTION, {})
    return element.get("selected_user") or None


def register(routes: Routes, rt: Runtime) -> None:
    _register_cancel(routes, rt)
    _register_break_glass(routes, rt)

    @routes.action(ids.FLOW_ACTION)
    @guarded
    def switch_flow(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        view = body["view"]
        flows = requestable_flows(rt, body["user"]["id"])
        wanted = str(body["actions"][0]["selected_option"]["value"])
        chosen = next((f for f in flows if f.name == wanted), None)
        notice = None
        if chosen is None:
            # Whatever the payload names, the form shows only flows this person may request:
            # keep the flow it showed, and say why nothing else appeared.
            shown = json.loads(view.get("private_metadata") or "{}").get("flow")
            chosen = next((f for f in flows if f.name == shown), None)
            notice = "You may not request that flow; pick one from the list."
        client.views_update(
            view_id=view["id"],
            hash=view.get("hash"),
            view=request_modal(
                flows, chosen, notice=notice, for_others=for_others(rt, body["user"]["id"], flows)
            ),
        )

    @routes.view(ids.REQUEST_VIEW)
    @guarded
    def submit_request(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        view = body["view"]
        ask = read_request(view)
        filer = body["user"]["id"]
        # The person the access is for: someone else only through a flow's "For" picker.
        beneficiary = for_whom(view) or filer
        loaded = rt.flows.get(ask.flow)
        problems = check_request(loaded.flow if loaded else None, ask)
        if loaded is not None and not problems and beneficiary != filer:
            problem = on_behalf_problem(rt, loaded.flow, filer, beneficiary)
            if problem is None and _break_glass_checked(view):
                problem = "Break-glass is for your own access; leave For empty."
            if problem:
                problems = {"for": problem}
        if loaded is not None and not problems:
            problem = request_problem(rt, loaded, ask.target, beneficiary)
            if problem and beneficiary != filer:
                problems = {"for": f"<@{beneficiary}> cannot request this: {problem}"}
            elif problem:
                problems = {"target": problem}
        if problems:
            ack(
                response_action="errors",
                errors={_FIELD_BLOCKS[f]: msg for f, msg in problems.items()},
            )
            if problems.get("target") == NOT_LINKED:
                offer_identity_link(rt, client, filer)
            return
        assert loaded is not None
        if _break_glass_checked(view):
            _ask_break_glass_confirmation(ack, rt, body["user"]["id"], loaded.flow.break_glass, ask)
            return
        # Stored before the ack: once the modal closes, the request exists.
        with rt.db.session() as session:
            request = lifecycle.submit(
                session=session,
                audit=rt.audit,
                flow=loaded.flow,
                requester_id=beneficiary,
                ask=ask,
                requested_by=filer if beneficiary != filer else None,
            )
        ack()
        if not rt.tasks.process_submission(request.id):
            tell(client, body, recorded_for_later(loaded.flow.channel_for(ask.target)))
        elif beneficiary != filer:
            tell(
                client,
                body,
                f"Requested *{escape(ask.target)}* for <@{beneficiary}>; they are told and "
                "can cancel it. Neither of you can approve it.",
            )


def _ask_break_glass_confirmation(
    ack: Ack, rt: Runtime, user_id: str, allowed: bool, ask: RequestInput
) -> None:
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
        with rt.db.session() as session:
            draft = save_draft(session=session, user_id=user_id, ask=ask, now=utcnow())
        ack(response_action="push", view=break_glass_confirm(str(draft.id), summary))


def _break_glass_checked(view: dict[str, Any]) -> bool:
    element = view["state"]["values"].get(ids.BREAK_GLASS_BLOCK, {}).get(ids.BREAK_GLASS_ACTION, {})
    return any(o.get("value") == "break_glass" for o in element.get("selected_options") or [])


def _register_break_glass(routes: Routes, rt: Runtime) -> None:
    @routes.view(ids.BREAK_GLASS_VIEW)
    @guarded
    def confirm_break_glass(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        requester_id = body["user"]["id"]
        meta = json.loads(body["view"].get("private_metadata") or "{}")
        with rt.db.session() as session:
            ask = take_draft(
                session=session,
                draft_id=str(meta.get("draft_id", "")),
                user_id=requester_id,
                now=utcnow(),
            )
        if isinstance(ask, str):
            ack(response_action="update", view=problem_view("Break glass refused", ask))
            return
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
            if loaded.flow.requester_assurance != "passkey":
                lifecycle.break_glass(
                    session=session, audit=rt.audit, request_id=request.id, actor=requester_id
                )
        if loaded.flow.requester_assurance == "passkey":
            # Nothing is granted until the requester's passkey confirms it on the web's page;
            # meanwhile the request waits like any other (its card goes to the approvers).
            url, has_passkey = break_glass_link(rt, request.id, requester_id)
            ack(response_action="update", view=break_glass_passkey_view(url, has_passkey))
            rt.tasks.process_submission(request.id)
            return
        ack(response_action="clear")
        rang = rt.tasks.grant(request.id)
        rt.tasks.notify(request.id, "break_glass")
        if not rang:
            tell(client, body, BREAK_GLASS_LATER)


def save_draft(*, session: Session, user_id: str, ask: RequestInput, now: datetime) -> RequestDraft:
    """Keep a request that waits for its break-glass confirmation on the server; the view
    carries only the draft's id. Drafts nobody confirmed in time are cleared on the way."""
    session.execute(delete(RequestDraft).where(RequestDraft.created_at < now - DRAFT_TTL))  # type: ignore[arg-type,operator]
    draft = RequestDraft(
        user_id=user_id,
        flow=ask.flow,
        target=ask.target,
        seconds=int(ask.duration.total_seconds()),
        reason=ask.reason,
        created_at=now,
    )
    session.add(draft)
    session.flush()
    return draft


def take_draft(
    *, session: Session, draft_id: str, user_id: str, now: datetime
) -> RequestInput | str:
    """The draft this person confirms, used up (single use); or why there is none: not a
    draft id, not theirs, already used, or older than DRAFT_TTL."""
    try:
        key = uuid.UUID(draft_id)
    except ValueError:
        return "That confirmation does not point at a request; start again with /access."
    draft = session.get(RequestDraft, key)
    if draft is None or draft.user_id != user_id:
        return "That confirmation was already used or is not yours; start again with /access."
    taken = session.execute(
        delete(RequestDraft)
        .where(RequestDraft.id == key, RequestDraft.user_id == user_id)  # type: ignore[arg-type]
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        return "That confirmation was already used; start again with /access."
    if draft.created_at < now - DRAFT_TTL:
        return "That confirmation is too old; start again with /access."
    return RequestInput(
        flow=draft.flow,
        target=draft.target,
        duration=timedelta(seconds=draft.seconds),
        reason=draft.reason,
    )


def _register_cancel(routes: Routes, rt: Runtime) -> None:
    @routes.action(ids.CANCEL_ACTION)
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
