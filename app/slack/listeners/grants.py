"""Living with a grant: Extend, I'm done, Request again (the requester), Revoke (approvers)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from slack_bolt import Ack
from slack_sdk import WebClient

from app.access import end_grant
from app.db import utcnow
from app.eligibility import approver_verdict, current_members, requestable_flows, requester_verdict
from app.extensions import extension_problem, request_extension
from app.flows.policy import Verdict, allow, check_reason, refuse
from app.lifecycle import EndCause
from app.models import AccessRequest
from app.notify import publish_home
from app.queries import grant_of
from app.runtime import Runtime
from app.slack import ids
from app.slack.blocks.cards import summary
from app.slack.blocks.modals import Prefill, extend_modal, request_modal, revoke_modal
from app.slack.listeners.errors import Refusal, from_home, guarded, refused, request_id_from
from app.slack.listeners.requests import field_value
from app.slack.routes import Routes


def may_revoke(rt: Runtime, request: AccessRequest, user_id: str) -> Verdict:
    """Latchkey admins may revoke any grant; a flow's approvers may revoke its grants."""
    settings = rt.settings
    admin_groups = current_members(rt, settings.admin_groups)
    if user_id in settings.admin_users or any(user_id in m for m in admin_groups.values()):
        return allow(f"<@{user_id}> is a Latchkey admin")
    if user_id == request.requester_id:
        return refuse("To give back your own access, use *I'm done* in your DM or App Home.")
    loaded = rt.flows.get(request.flow)
    if loaded is None:
        return refuse(f"The flow {request.flow!r} no longer exists; ask a Latchkey admin.")
    flow = loaded.flow
    verdict = approver_verdict(rt, flow, requester_id=request.requester_id, user_id=user_id)
    if not verdict.allowed:
        return refuse(f"Only approvers of {flow.name} and Latchkey admins can revoke this access.")
    return verdict


def authorise_revoke(rt: Runtime, request: AccessRequest, user_id: str) -> None:
    """Raise a Refusal (audited as revoke_refused) unless this person may revoke the grant."""
    verdict = may_revoke(rt, request, user_id)
    if not verdict.allowed:
        raise refused(rt, request, "revoke_refused", user_id, verdict.reason)


def revoke(rt: Runtime, request_id: uuid.UUID, user_id: str, reason: str) -> None:
    """Take a live grant away now; a refusal is audited and raised to the person."""
    with rt.db.session() as session:
        request = session.get(AccessRequest, request_id)
    if request is None or request.extends_id is not None:
        raise Refusal("That is not a request id of a grant.")
    authorise_revoke(rt, request, user_id)
    refusal = end_grant(rt, request_id, cause=EndCause.REVOKED, actor=user_id, reason=reason)
    if refusal:
        raise refused(rt, request, "revoke_refused", user_id, refusal)


def _refusal_event(body: dict[str, Any]) -> str:
    """'release_refused', 'extend_refused', 'request_again_refused' from the button."""
    return f"{body['actions'][0]['action_id'].rpartition('.')[2]}_refused"


def holder_request(rt: Runtime, body: dict[str, Any]) -> AccessRequest:
    """The grant behind a requester's button, refused (and audited) for anyone else."""
    request_id = request_id_from(body["actions"][0]["value"])
    user_id = body["user"]["id"]
    with rt.db.session() as session:
        request = session.get(AccessRequest, request_id)
    if request is None:
        raise Refusal("That request no longer exists.")
    if request.requester_id != user_id:
        raise refused(
            rt,
            request,
            _refusal_event(body),
            user_id,
            "not the holder",
            "Only the person who holds this access can do that.",
        )
    return request


def _extension_choices(rt: Runtime, request: AccessRequest) -> tuple[list[timedelta], str | None]:
    loaded = rt.flows.get(request.flow)
    if loaded is None:
        return [], f"The flow {request.flow!r} no longer exists."
    flow = loaded.flow
    with rt.db.session() as session:
        stored = session.get(AccessRequest, request.id)
        grant = grant_of(session, request.id)
        now = utcnow()
        fits = [
            d
            for d in flow.durations
            if stored and extension_problem(session, flow, stored, grant, d, now) is None
        ]
        problem = (
            extension_problem(session, flow, stored, grant, flow.durations[0], now)
            if stored and not fits
            else None
        )
    return fits, problem


def register(routes: Routes, rt: Runtime) -> None:
    @routes.action(ids.EXTEND_ACTION)
    @guarded
    def ask_extension(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        request = holder_request(rt, body)
        choices, problem = _extension_choices(rt, request)
        if not choices:
            why = problem or "This grant cannot be extended."
            raise refused(rt, request, _refusal_event(body), request.requester_id, why)
        loaded = rt.flows.get(request.flow)
        assert loaded is not None
        text = f"{summary(request)}.\n" + (
            "An approver decides on the extension; your access continues meanwhile."
            if loaded.flow.extension_needs_approval
            else "Within the flow's limits the extension applies at once."
        )
        client.views_open(
            trigger_id=body["trigger_id"],
            view=extend_modal(
                str(request.id), text, choices, reason_optional=not loaded.flow.reason_required
            ),
        )

    @routes.view(ids.EXTEND_VIEW)
    @guarded
    def submit_extension(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        view = body["view"]
        meta = json.loads(view.get("private_metadata") or "{}")
        request_id = request_id_from(str(meta.get("request_id", "")))
        user_id = body["user"]["id"]
        seconds = field_value(view, ids.EXTEND_DURATION_BLOCK, ids.EXTEND_DURATION_ACTION)
        reason = field_value(view, ids.EXTEND_REASON_BLOCK, ids.EXTEND_REASON_ACTION)
        with rt.db.session() as session:
            parent = session.get(AccessRequest, request_id)
        loaded = rt.flows.get(parent.flow) if parent else None
        if parent is None or loaded is None:
            ack(response_action="errors", errors={ids.EXTEND_DURATION_BLOCK: "That grant is gone."})
            return
        if not seconds.isdigit():
            ack(
                response_action="errors",
                errors={ids.EXTEND_DURATION_BLOCK: "Choose how much longer."},
            )
            return
        reason_problem = check_reason(loaded.flow, reason)
        if reason_problem:
            ack(response_action="errors", errors={ids.EXTEND_REASON_BLOCK: reason_problem})
            return
        # What the form says is checked above, inside the ack; who may extend and whether
        # the grant still allows it (Slack, the DB) only after it, so the ack never waits on
        # them (issue 14). A refusal then reaches the person by DM, and is audited.
        ack()
        eligible = requester_verdict(rt, loaded, user_id)
        if not eligible.allowed:
            raise refused(rt, parent, "extend_refused", user_id, eligible.reason)
        with rt.db.session() as session:
            outcome = request_extension(
                session=session,
                audit=rt.audit,
                flow=loaded.flow,
                parent_id=request_id,
                requester_id=user_id,
                extra=timedelta(seconds=int(seconds)),
                reason=reason,
                now=utcnow(),
            )
        if isinstance(outcome, str):
            raise refused(rt, parent, "extend_refused", user_id, outcome)
        rt.tasks.process_submission(outcome.id)

    @routes.action(ids.RELEASE_ACTION)
    @guarded
    def release(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        request = holder_request(rt, body)
        refusal = end_grant(
            rt, request.id, cause=EndCause.RELEASED, actor=body["user"]["id"], reason=""
        )
        if refusal:
            raise refused(rt, request, _refusal_event(body), request.requester_id, refusal)
        if from_home(body):
            publish_home(rt, body["user"]["id"])

    @routes.action(ids.REQUEST_AGAIN_ACTION)
    @guarded
    def request_again(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        request = holder_request(rt, body)
        flows = requestable_flows(rt, request.requester_id)
        chosen = next((f for f in flows if f.name == request.flow), None)
        if chosen is None:
            why = f"You may no longer request {request.flow}."
            raise refused(rt, request, _refusal_event(body), request.requester_id, why)
        again = Prefill(request.target, request.duration, request.reason)
        client.views_open(trigger_id=body["trigger_id"], view=request_modal(flows, chosen, again))

    @routes.action(ids.REVOKE_ACTION)
    @guarded
    def ask_revoke_reason(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        request_id = request_id_from(body["actions"][0]["value"])
        with rt.db.session() as session:
            request = session.get(AccessRequest, request_id)
        if request is None:
            raise Refusal("That request no longer exists.")
        authorise_revoke(rt, request, body["user"]["id"])
        text = f"{summary(request)}. Access ends at once; the holder is told your reason."
        client.views_open(trigger_id=body["trigger_id"], view=revoke_modal(str(request_id), text))

    @routes.view(ids.REVOKE_VIEW)
    @guarded
    def submit_revoke(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        view = body["view"]
        meta = json.loads(view.get("private_metadata") or "{}")
        request_id = request_id_from(str(meta.get("request_id", "")))
        reason = field_value(view, ids.REVOKE_REASON_BLOCK, ids.REVOKE_REASON_ACTION).strip()
        if not reason:
            ack(response_action="errors", errors={ids.REVOKE_REASON_BLOCK: "Say why."})
            return
        # Acked before the checks (Slack's groups, the DB), so the ack never waits on them;
        # a refusal reaches the approver by DM, and is audited.
        ack()
        # Checked again at submission: membership may have changed since the click.
        revoke(rt, request_id, body["user"]["id"], reason)
