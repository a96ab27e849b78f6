"""Keep Slack true to the DB: post or update the approval card and DM the requester.

Runs on the worker, after the transition committed, so a Slack outage delays messages
but never a grant or a revoke.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import select
from sqlmodel import Session

from app.flows.schema import Flow
from app.lifecycle import BREAK_GLASS_REVIEWS
from app.models import AccessRequest, AuditEvent
from app.queries import approvals_of, events_of, grant_of
from app.runtime import Runtime
from app.slack.blocks.cards import (
    CardContext,
    approval_card,
    approvers_line,
    fallback_text,
    reminder_text,
    requester_message,
)
from app.slack.blocks.text import slack_date

log = logging.getLogger(__name__)

# Moments the requester hears about; the others only update the card.
_DM_MOMENTS = {
    "submitted",
    "granted",
    "denied",
    "ended",
    "failed",
    "revoke_failed",
    "timed_out",
    "cancelled",
}


def card_context(rt: Runtime, session: Session, request_id: uuid.UUID) -> CardContext | None:
    """Everything a card shows, from the DB at this moment (never from the old message)."""
    request = session.get(AccessRequest, request_id)
    if request is None:
        return None
    loaded = rt.flows.get(request.flow)
    reviews = events_of(session, request_id, BREAK_GLASS_REVIEWS)
    return CardContext(
        break_glass=bool(events_of(session, request_id, ("break_glass",))),
        review=(reviews[0].event, reviews[0].actor) if reviews else None,
        request=request,
        approvals=approvals_of(session, request_id),
        grant=grant_of(session, request_id),
        approvals_required=loaded.flow.approvals_required if loaded else 1,
        durations=loaded.flow.durations if loaded else (),
        auto_reason=_auto_reason(session, request_id),
        approvers_line=approvers_line(
            loaded.flow.approvers.users,
            loaded.flow.approvers.usergroups,
            loaded.flow.approvals_required,
        )
        if loaded
        else "",
    )


def _auto_reason(session: Session, request_id: uuid.UUID) -> str | None:
    reason = session.execute(
        select(AuditEvent.details)
        .where(
            AuditEvent.request_id == request_id,
            AuditEvent.event.in_(("auto_approved", "auto_denied")),
        )  # type: ignore[arg-type,attr-defined]
        .limit(1)
    ).scalar_one_or_none()
    return reason.get("reason") if reason else None


def notify(rt: Runtime, request_id: uuid.UUID, what: str) -> None:
    # Messages for one request are rendered one at a time, each from the DB as it is when
    # its turn comes: two tasks racing would otherwise post the card twice, or a slow
    # one would overwrite a newer card with an older state. A Redis lock, not a DB lock,
    # so a slow Slack never holds up a grant or a revoke.
    with rt.redis.lock(f"latchkey:card:{request_id}", timeout=60, blocking_timeout=60):
        with rt.db.session() as session:
            ctx = card_context(rt, session, request_id)
        if ctx is None:
            return
        loaded = rt.flows.get(ctx.request.flow)
        if ctx.request.approval_message_ts is None and loaded is not None:
            _post_card(rt, ctx, loaded.flow.approval_channel)
        elif ctx.request.approval_message_ts is not None:
            rt.slack.chat_update(
                channel=ctx.request.approval_channel,
                ts=ctx.request.approval_message_ts,
                text=fallback_text(ctx.request, ctx.break_glass),
                blocks=approval_card(ctx),
            )
    if what == "remind" and loaded is not None and ctx.request.approval_message_ts:
        _remind(rt, ctx, loaded.flow)
    if what in _DM_MOMENTS:
        tz = rt.directory.user(ctx.request.requester_id).tz
        text, blocks = requester_message(ctx, what, tz)
        rt.slack.chat_postMessage(channel=ctx.request.requester_id, text=text, blocks=blocks)


def _post_card(rt: Runtime, ctx: CardContext, channel: str) -> None:
    response = rt.slack.chat_postMessage(
        channel=channel, text=fallback_text(ctx.request, ctx.break_glass), blocks=approval_card(ctx)
    )
    with rt.db.session() as session:
        request = session.get(AccessRequest, ctx.request.id)
        if request is not None and request.approval_message_ts is None:
            request.approval_channel = response["channel"]
            request.approval_message_ts = response["ts"]
            session.add(request)
    ctx.request.approval_channel, ctx.request.approval_message_ts = (
        response["channel"],
        response["ts"],
    )


def _remind(rt: Runtime, ctx: CardContext, flow: Flow) -> None:
    """One nudge in the card's thread, naming the approvers (people and groups)."""
    mentions = " ".join(
        [f"<@{u}>" for u in flow.approvers.users]
        + [f"<!subteam^{g}>" for g in flow.approvers.usergroups]
    )
    deadline = "soon"
    if flow.pending_timeout is not None:
        moment = ctx.request.created_at + flow.pending_timeout
        deadline = slack_date(moment, moment.strftime("%Y-%m-%d %H:%M UTC"))
    rt.slack.chat_postMessage(
        channel=ctx.request.approval_channel,
        thread_ts=ctx.request.approval_message_ts,
        text=reminder_text(ctx.request, mentions or "Approvers", deadline),
    )
