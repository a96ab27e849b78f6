"""Messages: the approval card in the flow's channel and the requester's DMs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.flows.schema import format_duration
from app.models import AccessRequest, Approval, Decision, Grant, RequestStatus
from app.slack import ids
from app.slack.blocks.text import escape, local_time, mrkdwn, plain, slack_date

S = RequestStatus

_STATUS_LINE = {
    S.PENDING: ":hourglass_flowing_sand: Waiting for an approver",
    S.APPROVED: ":arrows_counterclockwise: Approved, granting…",
    S.ACTIVE: ":white_check_mark: Access granted",
    S.REVOKING: ":arrows_counterclockwise: Ending access…",
    S.EXPIRED: ":lock: Access expired",
    S.REVOKED: ":lock: Access revoked",
    S.REVOKE_FAILED: ":rotating_light: Revoking failed; retrying",
    S.DENIED: ":no_entry: Denied",
    S.CANCELLED: ":heavy_multiplication_x: Cancelled by the requester",
    S.TIMED_OUT: ":alarm_clock: Timed out without a decision",
    S.FAILED: ":x: Granting failed",
}


@dataclass(frozen=True)
class CardContext:
    """Everything a card shows, read from the DB by the caller."""

    request: AccessRequest
    approvals: list[Approval]
    grant: Grant | None
    approvals_required: int = 1
    # The flow's durations, for "Approve for less": only those shorter than asked are offered.
    durations: tuple[timedelta, ...] = ()
    # Why a rule or hook decided (auto_approved / auto_denied), from the audit trail.
    auto_reason: str | None = None
    # Who may decide, and why they were chosen (shown while the request waits).
    approvers_line: str = ""
    break_glass: bool = False
    # (event, reviewer) once an approver reviewed a break-glass use.
    review: tuple[str, str] | None = None

    @property
    def progress(self) -> str:
        approvers = [a.approver_id for a in self.approvals if a.decision == Decision.APPROVE]
        who = ", ".join(f"<@{a}>" for a in approvers)
        return f"{len(approvers)} of {self.approvals_required} approvals" + (
            f": {who}" if who else ""
        )


def summary(request: AccessRequest) -> str:
    return (
        f"<@{request.requester_id}> asks for *{escape(request.target)}* "
        f"({escape(request.flow)}) for *{format_duration(request.duration)}*"
    )


def _duration(request: AccessRequest) -> str:
    if request.approved_seconds and request.approved_seconds < request.requested_seconds:
        asked = format_duration(timedelta(seconds=request.requested_seconds))
        return f"{format_duration(request.duration)} (asked {asked})"
    return format_duration(request.duration)


def fallback_text(request: AccessRequest, break_glass: bool = False) -> str:
    """The notification text; mrkdwn too, so it escapes user text like the blocks do.

    Break-glass is meant to be loud: it notifies everyone active in the channel.
    """
    status = _STATUS_LINE[request.status].split(" ", 1)[1]
    if break_glass:
        return f"<!here> :rotating_light: BREAK-GLASS by <@{request.requester_id}>: {escape(request.target)} — {status}"
    return f"Access request from <@{request.requester_id}>: {escape(request.target)} — {status}"


def approval_card(ctx: CardContext) -> list[dict[str, Any]]:
    request = ctx.request
    fields = [
        mrkdwn(f"*Requester*\n<@{request.requester_id}>"),
        mrkdwn(f"*Flow*\n{escape(request.flow)}"),
        mrkdwn(f"*Access to*\n{escape(request.target)}"),
        mrkdwn(f"*Duration*\n{_duration(request)}"),
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": plain(
                ":rotating_light: BREAK-GLASS access" if ctx.break_glass else "Access request",
                emoji=True,
            ),
        },
        {"type": "section", "fields": fields},
        {
            "type": "section",
            "text": mrkdwn(f"*Reason*\n{escape(request.reason) or '_none given_'}"),
        },
        {"type": "context", "elements": [mrkdwn(f"Request `{request.id}`")]},
    ]
    if request.status == S.PENDING and ctx.approvers_line:
        blocks.append({"type": "context", "elements": [mrkdwn(ctx.approvers_line)]})
    status = f"*{_STATUS_LINE[request.status]}*"
    if request.status == S.PENDING and ctx.approvals_required > 1:
        status += f" — {ctx.progress}"
    blocks.append({"type": "section", "text": mrkdwn(status)})
    history = _history(ctx)
    if history:
        blocks.append({"type": "context", "elements": [mrkdwn(line) for line in history[:10]]})
    if ctx.break_glass and ctx.review is None:
        blocks.append(
            {
                "type": "actions",
                "block_id": ids.DECISION_BLOCK,
                "elements": [
                    {
                        "type": "button",
                        "action_id": ids.REVIEW_ACK_ACTION,
                        "text": plain("Acknowledge"),
                        "value": str(request.id),
                    },
                    {
                        "type": "button",
                        "action_id": ids.REVIEW_FLAG_ACTION,
                        "text": plain("Flag"),
                        "style": "danger",
                        "value": str(request.id),
                    },
                ],
            }
        )
    if request.status == S.PENDING:
        blocks.append(
            {
                "type": "actions",
                "block_id": ids.DECISION_BLOCK,
                "elements": [
                    {
                        "type": "button",
                        "action_id": ids.APPROVE_ACTION,
                        "text": plain("Approve"),
                        "style": "primary",
                        "value": str(request.id),
                    },
                    *_approve_for_less(ctx),
                    {
                        "type": "button",
                        "action_id": ids.DENY_ACTION,
                        "text": plain("Deny"),
                        "style": "danger",
                        "value": str(request.id),
                    },
                ],
            }
        )
    return blocks


def _approve_for_less(ctx: CardContext) -> list[dict[str, Any]]:
    asked = timedelta(seconds=ctx.request.requested_seconds)
    shorter = [d for d in ctx.durations if d < asked]
    if not shorter:
        return []
    return [
        {
            "type": "static_select",
            "action_id": ids.APPROVE_FOR_ACTION,
            "placeholder": plain("Approve for less…"),
            "options": [
                {
                    "text": plain(f"Approve for {format_duration(d)}"),
                    "value": f"{ctx.request.id}|{int(d.total_seconds())}",
                }
                for d in shorter
            ],
        }
    ]


def _history(ctx: CardContext) -> list[str]:
    lines = []
    if ctx.break_glass:
        lines.append(
            f"Activated by <@{ctx.request.requester_id}> without approval (break-glass); review required"
        )
    if ctx.review is not None:
        event, reviewer = ctx.review
        verb = (
            ":triangular_flag_on_post: Flagged"
            if event.endswith("flagged")
            else "Reviewed and acknowledged"
        )
        lines.append(f"{verb} by <@{reviewer}>")
    if ctx.auto_reason:
        verb = "Denied" if ctx.request.status == S.DENIED else "Approved"
        lines.append(f"{verb} automatically — {escape(ctx.auto_reason)}")
    for approval in ctx.approvals:
        verb = "Approved" if approval.decision == Decision.APPROVE else "Denied"
        line = f"{verb} by <@{approval.approver_id}> {slack_date(approval.created_at, _utc(approval.created_at))}"
        if approval.reason:
            line += f": {escape(approval.reason)}"
        lines.append(line)
    grant = ctx.grant
    if grant is not None:
        lines.append(
            f"Granted to `{escape(grant.principal)}` until {slack_date(grant.expires_at, _utc(grant.expires_at))}"
        )
        if grant.ended_at is not None:
            by = (
                ""
                if grant.end_cause == "expired"
                else f" by <@{grant.ended_by}>"
                if grant.ended_by and grant.ended_by.startswith(("U", "W"))
                else ""
            )
            lines.append(
                f"Ended ({grant.end_cause}){by} {slack_date(grant.ended_at, _utc(grant.ended_at))}"
            )
    if ctx.request.status in (S.FAILED, S.REVOKE_FAILED) and ctx.request.failure:
        lines.append(f"Error: {escape(ctx.request.failure)}")
    return lines


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def requester_message(
    ctx: CardContext, what: str, tz: str, now: datetime | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """The DM for one moment of the request's life, with times in the requester's timezone."""
    request, grant = ctx.request, ctx.grant
    target = f"*{escape(request.target)}* ({escape(request.flow)})"
    if what == "submitted":
        text = f"Your request for {target} for {format_duration(request.duration)} was sent for approval."
    elif what == "granted" and grant is not None:
        text = f":white_check_mark: You now have {target} until *{local_time(grant.expires_at, tz, now)}*."
    elif what == "denied":
        denial = next((a for a in ctx.approvals if a.decision == Decision.DENY), None)
        text = f":no_entry: Your request for {target} was denied"
        if ctx.auto_reason:
            text += f" automatically — {escape(ctx.auto_reason)}"
        elif denial is not None:
            text += f" by <@{denial.approver_id}>"
            if denial.reason:
                text += f": {escape(denial.reason)}"
        text += "."
    elif what == "ended" and grant is not None:
        how = {"expired": "expired", "released": "was released", "revoked": "was revoked"}.get(
            grant.end_cause or "", "ended"
        )
        text = f":lock: Your access to {target} {how}"
        if grant.ended_at is not None:
            text += f" at {local_time(grant.ended_at, tz, now)}"
        if grant.end_reason:
            text += f": {escape(grant.end_reason)}"
        text += "."
    elif what == "failed":
        text = f":x: Granting {target} failed: {escape(request.failure or 'unknown error')}. Nothing was granted."
    elif what == "timed_out":
        text = f":alarm_clock: Your request for {target} timed out without a decision. Nothing was granted; ask again with `/access` if you still need it."
    elif what == "cancelled":
        text = f"You cancelled your request for {target}."
    elif what == "revoke_failed":
        text = f":rotating_light: Removing your access to {target} failed; Latchkey keeps retrying."
    else:
        text = f"Your request for {target} is now {request.status.value}."
    blocks: list[dict[str, Any]] = [{"type": "section", "text": mrkdwn(text)}]
    if what == "submitted":
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": ids.CANCEL_ACTION,
                        "text": plain("Cancel request"),
                        "value": str(request.id),
                    },
                ],
            }
        )
    return text, blocks


def reminder_text(request: AccessRequest, approvers: str, deadline: str) -> str:
    return (
        f":bell: {approvers} — <@{request.requester_id}>'s request for *{escape(request.target)}* "
        f"is still waiting for a decision; it times out {deadline}."
    )


def approvers_line(
    users: tuple[str, ...], usergroups: tuple[str, ...], required: int, hook: bool = False
) -> str:
    """'Approvers (from the flow): @ann, @security — 2 approvals needed, the requester never counts'."""
    who = (
        ", ".join([f"<@{u}>" for u in users] + [f"<!subteam^{g}>" for g in usergroups]) or "nobody"
    )
    needed = (
        "1 approval needed"
        if required == 1
        else f"{required} approvals from different people needed"
    )
    named = " and anyone the flow's get_approvers hook names for this request" if hook else ""
    return f"Approvers (listed in the flow): {who}{named} — {needed}"
