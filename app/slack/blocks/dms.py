"""The requester's DMs: one per moment worth a notification, buttons that fit the state.

The latest DM about a request is kept true: when the request moves on, it is re-rendered
for the new state (`what="status"`), so no DM ever offers a button that no longer works.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from app.flows.schema import format_duration
from app.models import Decision, RequestStatus
from app.slack import ids
from app.slack.blocks.cards import CardContext, clamp_line
from app.slack.blocks.text import (
    EXTEND_LABEL,
    button,
    decision_reason,
    escape,
    local_time,
    mrkdwn,
)

S = RequestStatus

# Moments the requester hears about with a new DM; the others only update the latest one.
DM_MOMENTS = frozenset(
    {
        "submitted",
        "granted",
        "denied",
        "ended",
        "failed",
        "revoke_failed",
        "timed_out",
        "cancelled",
        "expiring",
        "extended",
        "queued",
    }
)


# The states in which each moment is still the news. A notification whose turn comes after
# its moment has passed (its messages waited behind a lock) must not post a new DM saying
# the later state: the later moment's own notification does, once. Without this, a grant
# that ended while its messages waited gave its holder three identical "expired" DMs.
_MOMENT_STATES = {
    "submitted": {S.PENDING},
    "granted": {S.ACTIVE},
    "expiring": {S.ACTIVE},
    "extended": {S.ACTIVE},
    "denied": {S.DENIED},
    "ended": {S.EXPIRED, S.REVOKED},
    "failed": {S.FAILED},
    "revoke_failed": {S.REVOKE_FAILED},
    "timed_out": {S.TIMED_OUT},
    "cancelled": {S.CANCELLED},
    "queued": {S.APPROVED},
}


def moment_passed(ctx: CardContext, what: str) -> bool:
    """Whether the request has moved past moment `what` (an extension's DMs excepted)."""
    states = _MOMENT_STATES.get(what)
    return (
        ctx.request.extends_id is None and states is not None and ctx.request.status not in states
    )


def requester_message(
    ctx: CardContext, what: str, tz: str, now: datetime | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """The DM for one moment of the request's life, with times in the requester's timezone."""
    text = _text(ctx, what, tz, now)
    blocks: list[dict[str, Any]] = [{"type": "section", "text": mrkdwn(text)}]
    buttons = _buttons(ctx)
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return text, blocks


# New DMs that follow the one sent when the request was submitted.
_AFTER_SUBMISSION = frozenset(
    {"submitted", "granted", "denied", "timed_out", "cancelled", "failed", "queued"}
)


def superseded(
    ctx: CardContext, tz: str, what: str = "status", now: datetime | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """An older DM once a newer one (for moment `what`) took over: no buttons, and words
    of its own moment. It never takes the new state's words: the new DM says those, and
    saying them twice reads as a duplicate."""
    request, grant = ctx.request, ctx.grant
    target = f"*{escape(request.target)}* ({escape(request.flow)})"
    if request.extends_id is not None:
        text = f"You asked to extend {target} by {format_duration(request.duration)}."
    elif grant is None or what in _AFTER_SUBMISSION:
        asked = format_duration(timedelta(seconds=request.requested_seconds))
        text = f"You asked for {target} for {asked}."
    else:
        text = f"Access to {target} was granted at {local_time(grant.granted_at, tz, now)}."
    return text, [{"type": "section", "text": mrkdwn(text)}]


def time_left(left: timedelta) -> str:
    """'in 4 seconds', 'in about 3m': a notice never rounds seconds up to a minute."""
    seconds = max(0, round(left.total_seconds()))
    if seconds < 60:
        return "in 1 second" if seconds == 1 else f"in {seconds} seconds"
    return f"in about {format_duration(timedelta(seconds=round(seconds / 60) * 60))}"


def _text(ctx: CardContext, what: str, tz: str, now: datetime | None) -> str:
    request, grant = ctx.request, ctx.grant
    target = f"*{escape(request.target)}* ({escape(request.flow)})"
    if request.extends_id is not None:
        return _extension_text(ctx, target, tz, now)
    if what == "submitted" and request.status == S.PENDING and request.requested_by:
        return (
            f"<@{request.requested_by}> asked for {target} for you, for "
            f"{format_duration(request.duration)}; it was sent for approval. "
            "Cancel it if you do not need it."
        )
    if what == "submitted" and request.status == S.PENDING:
        return f"Your request for {target} for {format_duration(request.duration)} was sent for approval."
    if what == "expiring" and grant is not None and request.status == S.ACTIVE:
        left = max(grant.expires_at - (now or datetime.now(grant.expires_at.tzinfo)), timedelta(0))
        return (
            f":hourglass: Your access to {target} ends at *{local_time(grant.expires_at, tz, now)}* "
            f"({time_left(left)})."
            " Extend it if you still need it, or give it back if you are done."
        )
    if what == "extended" and grant is not None and request.status == S.ACTIVE:
        return f":white_check_mark: Extended: you now have {target} until *{local_time(grant.expires_at, tz, now)}*."
    return _status_text(ctx, target, tz, now)


# An identity-provider group the requester was in before (app.held_before).
ALREADY_MEMBER = (
    "You were already a member there: nothing new was granted, and that membership is left "
    "as it is when this access ends."
)


def _status_text(ctx: CardContext, target: str, tz: str, now: datetime | None) -> str:
    request, grant = ctx.request, ctx.grant
    status = request.status
    if status == S.PENDING:
        return f"Your request for {target} for {format_duration(request.duration)} is waiting for approval."
    if status == S.APPROVED and ctx.queued:
        return (
            f":busts_in_silhouette: Your request for {target} was approved, and waits its "
            f"turn: {ctx.queued}. It is yours as soon as it is back; leave the queue if you "
            "no longer need it."
        )
    if status in (S.APPROVED, S.GRANTING):
        return f"Your request for {target} was approved; granting…"
    if status == S.ACTIVE and grant is not None:
        text = f":white_check_mark: You now have {target} until *{local_time(grant.expires_at, tz, now)}*."
        if grant.details.get("already_member") is True:
            text += f"\n{ALREADY_MEMBER}"
        shortened = clamp_line(ctx)
        return f"{text}\n{shortened}" if shortened else text
    if status == S.REVOKING:
        return f"Your access to {target} is being removed…"
    if status in (S.EXPIRED, S.REVOKED) and grant is not None:
        how = {"released": "was released by you", "revoked": "was revoked"}.get(
            grant.end_cause or "", "expired"
        )
        text = f":lock: Your access to {target} {how}"
        if grant.end_cause == "revoked" and grant.ended_by and grant.ended_by[:1] in "UW":
            text += f" by <@{grant.ended_by}>"
        if grant.ended_at is not None:
            text += f" at {local_time(grant.ended_at, tz, now)}"
        if grant.end_reason:
            text += f": {escape(grant.end_reason)}"
        return text + "."
    if status == S.DENIED:
        denial = next((a for a in ctx.approvals if a.decision == Decision.DENY), None)
        text = f":no_entry: Your request for {target} was denied"
        if ctx.auto_reason:
            text += f" automatically — {decision_reason(ctx.auto_reason)}"
        elif denial is not None:
            text += f" by <@{denial.approver_id}>"
            if denial.reason:
                text += f": {escape(denial.reason)}"
        return text + "."
    if status == S.FAILED:
        return f":x: Granting {target} failed: {escape(request.failure or 'unknown error')}. Nothing was granted."
    if status == S.TIMED_OUT:
        return (
            f":alarm_clock: Your request for {target} timed out without a decision. "
            "Nothing was granted; ask again if you still need it."
        )
    if status == S.CANCELLED:
        return f"You cancelled your request for {target}."
    if status == S.REVOKE_FAILED:
        return f":rotating_light: Removing your access to {target} failed; Latchkey keeps retrying."
    return f"Your request for {target} is now {status.value}."


def _extension_text(ctx: CardContext, target: str, tz: str, now: datetime | None) -> str:
    request = ctx.request
    more = format_duration(request.duration)
    status = request.status
    if status == S.PENDING:
        return f"Your request to extend {target} by {more} was sent for approval."
    if status in (S.APPROVED, S.GRANTING):
        return f"Your extension of {target} by {more} was approved; extending…"
    if status == S.EXTENDED:
        until = ctx.extends_grant.expires_at if ctx.extends_grant else None
        return f"Your extension of {target} by {more} was applied" + (
            f"; access now ends at *{local_time(until, tz, now)}*." if until else "."
        )
    if status == S.DENIED:
        denial = next((a for a in ctx.approvals if a.decision == Decision.DENY), None)
        text = f":no_entry: Your extension of {target} was denied"
        if ctx.auto_reason:
            text += f" — {decision_reason(ctx.auto_reason)}"
        elif denial is not None:
            text += f" by <@{denial.approver_id}>" + (
                f": {escape(denial.reason)}" if denial.reason else ""
            )
        return text + ". Your access still ends at the time it had."
    if status == S.FAILED:
        return f":x: Your extension of {target} was not applied: {escape(request.failure or 'unknown error')}"
    if status == S.TIMED_OUT:
        return f":alarm_clock: Your extension of {target} timed out without a decision."
    if status == S.CANCELLED:
        return f"Your extension of {target} was closed without a decision."
    return f"Your extension of {target} is now {status.value}."


def _buttons(ctx: CardContext) -> list[dict[str, Any]]:
    """What the requester can do now, and only that."""
    request, value = ctx.request, str(ctx.request.id)
    if request.status == S.PENDING:
        label = "Cancel extension" if request.extends_id else "Cancel request"
        return [button(ids.CANCEL_ACTION, label, value)]
    if request.extends_id is not None:
        return []
    if request.status == S.APPROVED and ctx.queued:
        return [button(ids.CANCEL_ACTION, "Leave the queue", value)]
    if request.status == S.ACTIVE:
        # Extend only while an extension can still fit (count and total-length caps).
        buttons = [button(ids.EXTEND_ACTION, EXTEND_LABEL, value, "primary")]
        # A login made for the grant: its password is shown in a modal, never in the DM.
        shown = (
            [button(ids.SHOW_CREDENTIALS_ACTION, "Show credentials", value)]
            if ctx.grant is not None and ctx.credentials
            else []
        )
        return (
            shown
            + ([] if not ctx.extensions_allowed else buttons)
            + [button(ids.RELEASE_ACTION, "I'm done", value)]
        )
    if request.status in (S.EXPIRED, S.REVOKED, S.TIMED_OUT, S.DENIED, S.CANCELLED, S.FAILED):
        return [button(ids.REQUEST_AGAIN_ACTION, "Request again", value)]
    return []
