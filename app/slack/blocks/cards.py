"""Messages: the approval card in the flow's channel and the requester's DMs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.clients import client_name, is_client, mention, possessive
from app.flows.schema import format_duration
from app.models import AccessRequest, Approval, AuditEvent, Decision, Grant, RequestStatus
from app.slack import ids
from app.slack.blocks.text import button, decision_reason, escape, mrkdwn, plain, slack_date

S = RequestStatus

_STATUS_LINE = {
    S.PENDING: ":hourglass_flowing_sand: Waiting for an approver",
    S.APPROVED: ":arrows_counterclockwise: Approved, granting…",
    S.GRANTING: ":arrows_counterclockwise: Approved, granting…",
    S.ACTIVE: ":white_check_mark: Access granted",
    S.REVOKING: ":arrows_counterclockwise: Ending access…",
    S.EXPIRED: ":lock: Access expired",
    S.REVOKED: ":lock: Access revoked",
    S.REVOKE_FAILED: ":rotating_light: Revoking failed; retrying",
    S.DENIED: ":no_entry: Denied",
    S.CANCELLED: ":heavy_multiplication_x: Cancelled by the requester",
    S.TIMED_OUT: ":alarm_clock: Timed out without a decision",
    S.FAILED: ":x: Granting failed",
    S.EXTENDED: ":white_check_mark: Extension applied",
}
# An extension request reads differently once decided: nothing is granted by itself.
_EXTENSION_STATUS_LINE = {
    **_STATUS_LINE,
    S.PENDING: ":hourglass_flowing_sand: Extension waiting for an approver",
    S.APPROVED: ":arrows_counterclockwise: Approved, extending…",
    S.FAILED: ":x: Extension not applied",
    S.CANCELLED: ":heavy_multiplication_x: Closed without a decision",
}


def status_line(request: AccessRequest) -> str:
    lines = _EXTENSION_STATUS_LINE if request.extends_id else _STATUS_LINE
    return lines[request.status]


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
    # For an extension: the grant it would lengthen.
    extends_grant: Grant | None = None
    # For a grant: each applied extension as (who asked, seconds added, new end).
    extended: tuple[tuple[str, int, datetime], ...] = ()
    # Whether the flow allows extensions at all (the DM offers Extend only then).
    extensions_allowed: bool = True
    # Who gets the access at the provider (an IAM user, a Google member…), or why nobody.
    principal: str | None = None
    # Escalation steps taken while it waited (their keyed audit events), and how the card
    # says them (app.escalation): read once per notification, used by the card, the
    # copies (who gets one by DM) and the thread's announcement.
    steps: tuple[AuditEvent, ...] = ()
    escalations: tuple[str, ...] = ()
    # The principal comes from the requester's verified identity link (Identity(verified=True)).
    principal_verified: bool = False
    # Approvers whose approval a passkey confirmed (keyed approval events), for the card.
    passkey_approvers: frozenset[str] = frozenset()
    # An approved request for a shared account that is out to someone else: who has it and
    # until when (mrkdwn, app.checkouts.Place.words), while it waits its turn.
    queued: str | None = None
    # The grant comes with a login the holder is shown (Show credentials on the DM).
    credentials: bool = False

    @property
    def progress(self) -> str:
        approvers = [a.approver_id for a in self.approvals if a.decision == Decision.APPROVE]
        who = ", ".join(f"<@{a}>" for a in approvers)
        return f"{len(approvers)} of {self.approvals_required} approvals" + (
            f": {who}" if who else ""
        )


def _filed_by(request: AccessRequest) -> str:
    """' (asked by @lead)' for a request made on someone's behalf (flow's on_behalf)."""
    return f" (asked by <@{request.requested_by}>)" if request.requested_by else ""


def _requester(request: AccessRequest) -> str:
    """The card's Requester field: a person's mention, or a service client said plainly,
    so approvers know a machine asks (its approval is theirs alone, never automatic)."""
    if is_client(request.requester_id):
        return f":robot_face: Service client *{client_name(request.requester_id)}* (API)"
    return mention(request.requester_id)


def summary(request: AccessRequest) -> str:
    return (
        f"{mention(request.requester_id)} asks for *{escape(request.target)}* "
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
    status = status_line(request).split(" ", 1)[1]
    if request.extends_id:
        return f"Extension request from {mention(request.requester_id)}: {escape(request.target)} — {status}"
    if break_glass:
        return f"<!here> :rotating_light: BREAK-GLASS by {mention(request.requester_id)}: {escape(request.target)} — {status}"
    return (
        f"Access request from {mention(request.requester_id)}: {escape(request.target)} — {status}"
    )


def approval_card(ctx: CardContext) -> list[dict[str, Any]]:
    request = ctx.request
    fields = [
        mrkdwn(f"*Requester*\n{_requester(request)}{_filed_by(request)}"),
        mrkdwn(f"*Flow*\n{escape(request.flow)}"),
        mrkdwn(f"*Access to*\n{escape(request.target)}"),
        mrkdwn(f"*{'Extend by' if request.extends_id else 'Duration'}*\n{_duration(request)}"),
    ]
    if ctx.principal:
        verified = " (verified company identity)" if ctx.principal_verified else ""
        fields.append(
            mrkdwn(f"*Granted to (at the provider)*\n`{escape(ctx.principal)}`{verified}")
        )
    if ctx.extends_grant is not None:
        end = ctx.extends_grant.expires_at
        fields.append(mrkdwn(f"*Access now ends*\n{slack_date(end, _utc(end))}"))
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": plain(
                ":rotating_light: BREAK-GLASS access"
                if ctx.break_glass
                else "Extension request"
                if request.extends_id
                else "Access request",
                emoji=True,
            ),
        },
        {"type": "section", "fields": fields},
        {
            "type": "section",
            "text": mrkdwn(f"*Reason*\n{escape(request.reason) or '_none given_'}"),
        },
        {"type": "context", "elements": [mrkdwn(_reference(request))]},
    ]
    if request.status == S.PENDING and ctx.approvers_line:
        blocks.append({"type": "context", "elements": [mrkdwn(ctx.approvers_line)]})
    status = f"*{status_line(request)}*"
    if request.status == S.PENDING and ctx.approvals_required > 1:
        status += f" — {ctx.progress}"
    if request.status == S.APPROVED and ctx.queued:
        status = f"*:busts_in_silhouette: Approved, waiting its turn*: {ctx.queued}."
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
                    button(ids.REVIEW_ACK_ACTION, "Acknowledge", str(request.id)),
                    button(ids.REVIEW_FLAG_ACTION, "Flag", str(request.id), "danger"),
                ],
            }
        )
    if request.status == S.ACTIVE:
        blocks.append(
            {
                "type": "actions",
                "block_id": ids.GRANT_BLOCK,
                "elements": [button(ids.REVOKE_ACTION, "Revoke", str(request.id), "danger")],
            }
        )
    if request.status == S.PENDING:
        blocks.append(
            {
                "type": "actions",
                "block_id": ids.DECISION_BLOCK,
                "elements": [
                    button(ids.APPROVE_ACTION, "Approve", str(request.id), "primary"),
                    *_approve_for_less(ctx),
                    button(ids.DENY_ACTION, "Deny", str(request.id), "danger"),
                ],
            }
        )
    return blocks


def _reference(request: AccessRequest) -> str:
    if request.extends_id:
        return f"Extension `{request.id}` of request `{request.extends_id}`"
    return f"Request `{request.id}`"


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
            f"Activated by {mention(ctx.request.requester_id)} without approval (break-glass); review required"
        )
    if ctx.review is not None:
        event, reviewer = ctx.review
        verb = (
            ":triangular_flag_on_post: Flagged"
            if event.endswith("flagged")
            else "Reviewed and acknowledged"
        )
        lines.append(f"{verb} by <@{reviewer}>")
    lines.extend(ctx.escalations)
    shortened = clamp_line(ctx)
    if shortened:
        lines.append(shortened)
    if ctx.auto_reason:
        verb = "Denied" if ctx.request.status == S.DENIED else "Approved"
        lines.append(f"{verb} automatically — {decision_reason(ctx.auto_reason)}")
    for approval in ctx.approvals:
        verb = "Approved" if approval.decision == Decision.APPROVE else "Denied"
        if approval.approver_id in ctx.passkey_approvers:
            verb = ":key: Approved with passkey"
        line = f"{verb} by <@{approval.approver_id}> {slack_date(approval.created_at, _utc(approval.created_at))}"
        if approval.reason:
            line += f": {escape(approval.reason)}"
        lines.append(line)
    grant = ctx.grant
    if grant is not None:
        lines.append(
            f"Granted to `{escape(grant.principal)}` {slack_date(grant.granted_at, _utc(grant.granted_at))}"
        )
        for asker, seconds, until in ctx.extended:
            lines.append(
                f"Extended by {format_duration(timedelta(seconds=seconds))} for <@{asker}>, "
                f"until {slack_date(until, _utc(until))}"
            )
        if grant.end_cause is not None:
            lines.append(_end_line(grant))
    if ctx.request.status in (S.FAILED, S.REVOKE_FAILED) and ctx.request.failure:
        lines.append(f"Error: {escape(ctx.request.failure)}")
    return lines


def clamp_line(ctx: CardContext) -> str | None:
    """'Shortened to 20m: …' once what was asked is more than the flow allows now."""
    request, asked = ctx.request, timedelta(seconds=ctx.request.requested_seconds)
    if not ctx.durations or asked in ctx.durations or request.duration >= asked:
        return None
    return (
        f":scissors: Shortened to {format_duration(request.duration)}: the {escape(request.flow)} "
        f"flow no longer allows {format_duration(asked)}"
    )


def _end_line(grant: Grant) -> str:
    """'Released by @sam (the requester) …', 'Revoked by @ann …: reason', 'Expired …'."""
    by = f"<@{grant.ended_by}>" if grant.ended_by and grant.ended_by[:1] in "UW" else "Latchkey"
    verb = {
        "released": f"Released by {by} (the requester)",
        "revoked": f"Revoked by {by}",
    }.get(grant.end_cause or "", "Expired")
    when = grant.ended_at
    line = verb + (f" {slack_date(when, _utc(when))}" if when else " — ending…")
    if grant.end_reason:
        line += f": {escape(grant.end_reason)}"
    return line


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def reminder_text(request: AccessRequest, approvers: str, deadline: str) -> str:
    return (
        f":bell: {approvers} — {possessive(request.requester_id)} request for *{escape(request.target)}* "
        f"is still waiting for a decision; it times out {deadline}."
    )


def approvers_line(
    users: tuple[str, ...],
    usergroups: tuple[str, ...],
    required: int,
    hook: bool = False,
    oncall: tuple[str, ...] = (),
    passkey: bool = False,
) -> str:
    """'Approvers (from the flow): @ann, @security — 2 approvals needed, the requester never counts'."""
    who = (
        ", ".join(
            [f"<@{u}>" for u in users]
            + [f"<!subteam^{g}>" for g in usergroups]
            + [f"whoever is {source}" for source in oncall]
        )
        or "nobody"
    )
    needed = (
        "1 approval needed"
        if required == 1
        else f"{required} approvals from different people needed"
    )
    named = " and anyone the flow's get_approvers hook names for this request" if hook else ""
    # Shown before anyone acts: an approver learns they will need their passkey.
    how = ", each confirmed with the approver's passkey :key:" if passkey else ""
    return f"Approvers (listed in the flow): {who}{named} — {needed}{how}"
