"""Approvals confirmed with a passkey: the link an Approve click gets instead of a
decision, and the decision a verified assertion makes.

The click is checked as every click is (app.slack.deferred): only an approver allowed now
gets a link. The page's assertion is checked here; then who may decide is checked again
(membership may have changed in the minutes since), and lifecycle.decide records the
approval with the credential id, in a keyed event the worker's proof requires."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from app import lifecycle
from app import weblinks as links
from app.clients import possessive
from app.db import utcnow
from app.models import AccessRequest, Decision, RequestStatus
from app.passkeys import ceremony
from app.passkeys.credentials import passkeys_of
from app.runtime import Runtime
from app.slack.blocks.text import escape

log = logging.getLogger(__name__)


def _link_url(rt: Runtime, purpose: str, user_id: str, **about: Any) -> str:
    path = {links.SETUP: "setup", links.APPROVAL: "approve", links.BREAK_GLASS: "break-glass"}
    return links.new_link_url(
        rt, purpose=purpose, path=f"passkey/{path[purpose]}", user_id=user_id, **about
    )


def _has_passkey(rt: Runtime, user_id: str) -> bool:
    with rt.db.session() as session:
        return bool(passkeys_of(session, rt.audit, user_id))


def setup_link(rt: Runtime, user_id: str) -> str:
    """A fresh single-use link to set up a passkey (App Home's button, or a first approval)."""
    return _link_url(rt, links.SETUP, user_id)


def offer_confirmation(
    rt: Runtime, request: AccessRequest, approver_id: str, duration: timedelta | None
) -> str:
    """What an allowed approver is told instead of a decision: their link, or how to set up
    a passkey first. Nothing is approved until the page's assertion verifies."""
    minutes = max(1, round(rt.settings.link_seconds / 60))
    what = f"{possessive(request.requester_id)} request for *{escape(request.target)}*"
    if not _has_passkey(rt, approver_id):
        return (
            f":key: Approving {what} needs a passkey, and you have none set up yet. "
            f"<{setup_link(rt, approver_id)}|Set up a passkey> (link for you only, "
            f"{minutes} min), then click Approve again."
        )
    url = _link_url(
        rt,
        links.APPROVAL,
        approver_id,
        request_id=request.id,
        duration_seconds=int(duration.total_seconds()) if duration else None,
    )
    return (
        f":key: Approving {what} needs your passkey. <{url}|Confirm the approval> — the link "
        f"works once, only for you, for {minutes} min. Nothing is approved until you confirm."
    )


def break_glass_link(rt: Runtime, request_id: uuid.UUID, requester_id: str) -> tuple[str, bool]:
    """Where the requester confirms a break-glass activation with their passkey, and
    whether they have one (else the URL sets one up first)."""
    if not _has_passkey(rt, requester_id):
        return setup_link(rt, requester_id), False
    return _link_url(rt, links.BREAK_GLASS, requester_id, request_id=request_id), True


@dataclass(frozen=True)
class Confirmed:
    """What the page says after a confirmation: approved (or recorded), or refused, why."""

    ok: bool
    message: str


def confirm(rt: Runtime, token: str, body: bytes, purpose: str = links.APPROVAL) -> Confirmed:
    """Check the page's assertion, spend the link, and decide (an approval, or the
    requester's break-glass activation). A failed check spends the link too (no second
    guess) and is audited on the request as refused (who tried, why); nothing is
    approved. LinkRefused: a link that is not live."""
    rp = ceremony.RelyingParty.of(rt.settings)
    refused_event = "approve_refused" if purpose == links.APPROVAL else "break_glass_refused"
    with rt.db.session() as session:
        link = links.open_link(session, token, purpose)
        request_id, user_id = link.request_id, link.user_id
        assert request_id is not None
        passkeys = passkeys_of(session, rt.audit, user_id)
        try:
            used = ceremony.verify_approval(rp, link, passkeys, body)
        except ceremony.CeremonyFailed as failed:
            links.use_link(session, link)
            request = session.get(AccessRequest, request_id)
            if request is not None:
                lifecycle.record(
                    session, rt.audit, request, refused_event, user_id, {"reason": str(failed)}
                )
            log.info("passkey confirmation refused for request=%s: %s", request_id, failed)
            return Confirmed(False, str(failed))
        links.use_link(session, link)
        used.last_used_at = utcnow()
        session.add(used)
        credential_id, seconds = used.credential_id, link.duration_seconds
    if purpose == links.BREAK_GLASS:
        return _break_glass(rt, request_id, user_id, credential_id)
    return _decide(rt, request_id, user_id, credential_id, seconds)


def _break_glass(
    rt: Runtime, request_id: uuid.UUID, requester_id: str, credential_id: str
) -> Confirmed:
    """The requester's emergency activation, confirmed: checked again as at the modal (the
    flow still allows it, they may still request it), then approved and granted."""
    from app.eligibility import request_problem

    with rt.db.session() as session:
        request = session.get(AccessRequest, request_id)
        if request is None or request.requester_id != requester_id:
            return Confirmed(False, "That request no longer exists.")
        flow_name, target = request.flow, request.target
    loaded = rt.flows.get(flow_name)
    if loaded is None or not loaded.flow.break_glass:
        return Confirmed(False, f"The flow {flow_name!r} no longer allows break-glass.")
    problem = request_problem(rt, loaded, target, requester_id)
    if problem:
        return Confirmed(False, problem)
    with rt.db.session() as session:
        moved = lifecycle.break_glass(
            session=session,
            audit=rt.audit,
            request_id=request_id,
            actor=requester_id,
            passkey=credential_id,
        )
        status = session.get(AccessRequest, request_id).status  # type: ignore[union-attr]
    if moved is None:
        return Confirmed(False, f"This request is already {status.value}.")
    rt.tasks.grant(request_id)
    rt.tasks.notify(request_id, "break_glass")
    return Confirmed(True, "Break-glass activated with your passkey. The access is being granted.")


def _decide(
    rt: Runtime, request_id: uuid.UUID, approver_id: str, credential_id: str, seconds: int | None
) -> Confirmed:
    from app.slack.listeners.approvals import verdict_for  # the same check as a click
    from app.slack.listeners.errors import Refusal

    try:
        flow, verdict = verdict_for(rt, request_id, approver_id)
    except Refusal as refusal:
        return Confirmed(False, str(refusal))
    if flow is None:
        return Confirmed(False, verdict.reason)
    with rt.db.session() as session:
        outcome = lifecycle.decide(
            session=session,
            audit=rt.audit,
            flow=flow,
            request_id=request_id,
            decider_id=approver_id,
            verdict=verdict,
            decision=Decision.APPROVE,
            duration=timedelta(seconds=seconds) if seconds else None,
            passkey=credential_id,
        )
    if outcome.refusal is not None or outcome.request is None:
        return Confirmed(False, outcome.refusal or "That request no longer exists.")
    if outcome.won and outcome.request.status == RequestStatus.APPROVED:
        rt.tasks.notify(request_id, "approved")
        rt.tasks.grant(request_id)  # the worker grants, after its proof
        return Confirmed(True, "Approved with your passkey. The access is being granted.")
    rt.tasks.notify(request_id, "approval_recorded")
    progress = f" ({outcome.quorum.progress})" if outcome.quorum else ""
    return Confirmed(True, f"Your approval is recorded with your passkey{progress}.")
