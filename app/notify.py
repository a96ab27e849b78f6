"""Keep Slack true to the DB: post or update the approval card and DM the requester.

Runs on the worker, after the transition committed, so a Slack outage delays messages
but never a grant or a revoke.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from redis.exceptions import RedisError
from slack_sdk.errors import SlackApiError
from sqlalchemy import select
from sqlmodel import Session

from app.checkouts import account_of, exclusive, place
from app.clients import is_client, mention, possessive
from app.clients.eligibility import client_principal
from app.copies import sync_copies, undecided_approver_copies
from app.db import utcnow
from app.escalation import escalation_line, steps_taken
from app.extensions import extension_problem
from app.flows.loader import LoadedFlow
from app.flows.schema import Flow
from app.identity import principal_for
from app.identity_links.resolve import email_for
from app.lifecycle import BREAK_GLASS_REVIEWS
from app.models import AccessRequest, AuditEvent, Grant, RequestStatus
from app.queries import approvals_of, events_of, grant_of
from app.runtime import Runtime
from app.slack.blocks.cards import (
    CardContext,
    approval_card,
    approvers_line,
    fallback_text,
    reminder_text,
)
from app.slack.blocks.dms import DM_MOMENTS, moment_passed, requester_message, superseded
from app.slack.blocks.text import escape, slack_date
from app.turns import turn

log = logging.getLogger(__name__)

# Moments the flow's channel hears about with a message of its own (beyond the card).
_CHANNEL_ALERTS = {
    "revoke_failed": ":rotating_light: Removing {whose} access to *{target}* failed: {error}. "
    "Latchkey retries with backoff and will not mark it ended until the provider confirms.",
    "drift_missing": ":warning: Drift: {whose} access to *{target}* was missing at the "
    "provider while it should be active. Latchkey re-applied it.",
    "drift_lingering": ":warning: Drift: {whose} access to *{target}* was still present "
    "after it ended. Latchkey revoked it.",
}


def card_context(rt: Runtime, session: Session, request_id: uuid.UUID) -> CardContext | None:
    """Everything a card shows, from the DB at this moment (never from the old message)."""
    request = session.get(AccessRequest, request_id)
    if request is None:
        return None
    loaded = rt.flows.get(request.flow)
    reviews = events_of(session, request_id, BREAK_GLASS_REVIEWS)
    steps = tuple(steps_taken(rt, session, request))
    extended = tuple(
        (e.actor, int(e.details["added_seconds"]), datetime.fromisoformat(e.details["expires_at"]))
        for e in events_of(session, request_id, ("extended",))
    )
    grant = grant_of(session, request_id)  # read once: the card, the DM and the Home use it
    return CardContext(
        extends_grant=grant_of(session, request.extends_id) if request.extends_id else None,
        extended=extended,
        extensions_allowed=bool(loaded) and extension_offered(session, loaded.flow, request, grant),
        break_glass=bool(events_of(session, request_id, ("break_glass",))),
        review=(reviews[0].event, reviews[0].actor) if reviews else None,
        request=request,
        approvals=approvals_of(session, request_id),
        grant=grant,
        approvals_required=loaded.flow.approvals_required if loaded else 1,
        durations=loaded.flow.durations if loaded else (),
        auto_reason=_auto_reason(session, request_id),
        principal=_principal(rt, session, loaded, request, grant),
        principal_verified=bool(loaded) and loaded.flow.identity.verified,
        steps=steps,
        passkey_approvers=_passkey_approvers(rt, session, request_id)
        if loaded and loaded.flow.approval_assurance == "passkey"
        else frozenset(),
        escalations=tuple(escalation_line(e) for e in steps),
        queued=_queued(session, loaded, request),
        credentials=grant is not None and rt.providers.shows_credentials(grant.provider),
        approvers_line=approvers_line(
            loaded.flow.approvers.users,
            loaded.flow.approvers.usergroups,
            loaded.flow.approvals_required,
            oncall=tuple(s.describe() for s in loaded.flow.approvers.oncall),
            passkey=loaded.flow.approval_assurance == "passkey",
        )
        if loaded
        else "",
    )


def _queued(session: Session, loaded: LoadedFlow | None, request: AccessRequest) -> str | None:
    """Who has the shared account this approved request waits for, and until when."""
    target = loaded.flow.target(request.target) if loaded else None
    if request.status != RequestStatus.APPROVED or target is None or not exclusive(target):
        return None
    spot = place(session, request, target.resource)
    if spot is None:
        return None
    return spot.words(
        f"*{escape(account_of(target))}*",
        mention(spot.holder or ""),
        lambda at: slack_date(at, f"{at:%H:%M} UTC"),
    )


def _passkey_approvers(rt: Runtime, session: Session, request_id: uuid.UUID) -> frozenset[str]:
    """Who approved with a passkey, from the keyed approval events (read only for flows
    that ask for passkeys: every other card skips the query)."""
    return frozenset(
        e.actor
        for e in events_of(session, request_id, ("approval_recorded", "approved"))
        if e.details.get("passkey") and rt.audit.authentic(e)
    )


def _principal(
    rt: Runtime,
    session: Session,
    loaded: LoadedFlow | None,
    request: AccessRequest,
    grant: Grant | None,
) -> str | None:
    """Who the access goes to at the provider: the grant's principal once granted, else
    worked out now as the grant will (so approvers see it before they click)."""
    if grant is not None:
        return grant.principal
    if loaded is None or request.extends_id is not None:
        return None
    if is_client(request.requester_id):
        found = client_principal(rt, loaded, request.target, request.requester_id, session)
        return found.value or f"none ({found.problem})"
    slack_email = rt.directory.user(request.requester_id).email
    email = email_for(rt, loaded.flow, request.requester_id, slack_email, session)
    found = principal_for(
        rt.providers, loaded, request.target, user_id=request.requester_id, email=email
    )
    return found.value or f"none ({found.problem})"


def extension_offered(
    session: Session, flow: Flow, request: AccessRequest, grant: Grant | None
) -> bool:
    """Whether Extend may be offered now: some duration of the flow still fits the grant's
    caps (max_extensions, max_total_duration), so the click is not refused."""
    if request.extends_id is not None or grant is None or not flow.max_extensions:
        return False
    now = utcnow()
    return any(
        extension_problem(session, flow, request, grant, d, now) is None for d in flow.durations
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
    with turn(rt.redis, f"latchkey:card:{request_id}"):
        with rt.db.session() as session:
            ctx = card_context(rt, session, request_id)
        if ctx is None:
            return
        loaded = rt.flows.get(ctx.request.flow)
        unposted = False
        if ctx.request.approval_message_ts is None and loaded is not None:
            channel = loaded.flow.channel_for(ctx.request.target)
            try:
                _post_card(rt, ctx, channel)
            except SlackApiError as exc:
                error = exc.response.get("error")
                if error not in UNPOSTABLE:
                    raise  # rate limits and outages: the task retries
                # The bot is not in the channel (or it is gone): retrying now cannot help;
                # the requester hears why, and the sweep posts the card once it can.
                _tell_card_unposted(rt, ctx, channel, UNPOSTABLE[error])
                unposted = True
        elif ctx.request.approval_message_ts is not None:
            rt.slack.chat_update(
                channel=ctx.request.approval_channel,
                ts=ctx.request.approval_message_ts,
                text=fallback_text(ctx.request, ctx.break_glass),
                blocks=approval_card(ctx),
            )
        if loaded is not None:
            sync_copies(rt, ctx, loaded)
        if what == "remind" and loaded is not None and ctx.request.approval_message_ts:
            _remind(rt, ctx, loaded.flow)
        if what in _CHANNEL_ALERTS and ctx.request.approval_message_ts:
            _alert_channel(rt, ctx, what)
        if what == "escalated" and ctx.request.approval_message_ts:
            _announce_escalation(rt, ctx)
        if not unposted and not is_client(ctx.request.requester_id):
            # "sent for approval" would not be true while unposted; a service client has no
            # DM or App Home (it polls the API).
            _tell_requester(rt, ctx, what)
    if not is_client(ctx.request.requester_id):
        refresh_home(rt, ctx.request.requester_id)


# Slack's answers to a card that cannot be posted until someone fixes the channel.
UNPOSTABLE = {
    "not_in_channel": "the bot is not a member of it",
    "channel_not_found": "Slack has no such channel the bot can see",
    "is_archived": "it is archived",
}


def _tell_card_unposted(rt: Runtime, ctx: CardContext, channel: str, why: str) -> None:
    """Once per request: the requester learns their card is not in front of approvers."""
    request = ctx.request
    log.error("request=%s: its card cannot be posted to %s: %s", request.id, channel, why)
    try:
        first = rt.redis.set(f"latchkey:unposted:{request.id}", 1, nx=True, ex=7 * 86400)
    except RedisError:
        first = True  # telling twice beats not telling
    if first and not is_client(request.requester_id):
        rt.slack.chat_postMessage(
            channel=request.requester_id,
            text=(
                f":warning: Your request for *{escape(request.target)}* ({escape(request.flow)}) "
                f"is stored, but its card could not be posted to <#{channel}>: {why}, so no "
                "approver has seen it yet. A Latchkey admin must invite the bot there "
                "(`latchkey flows check --online` names every such channel); the card is "
                "posted within a minute of that."
            ),
        )


def publish_home(rt: Runtime, user_id: str) -> None:
    """Keep the person's App Home true too; a failure here never fails the message task."""
    try:
        publish_latest_home(rt, user_id)
    except Exception:
        log.warning("could not refresh the App Home of %s", user_id, exc_info=True)


# A request's life makes several notifications within seconds (submitted, approved,
# granted…), each of which used to rebuild and publish the requester's whole App Home.
# Now the first in a window publishes at once and the rest leave one publish for the
# window's end, which renders whatever the DB says then: the last state always shows.
HOME_QUIET_SECONDS = 3.0


def _home_keys(user_id: str) -> tuple[str, str]:
    return f"latchkey:home:recent:{user_id}", f"latchkey:home:due:{user_id}"


def refresh_home(rt: Runtime, user_id: str) -> None:
    """Re-publish the person's App Home at most once per HOME_QUIET_SECONDS, never
    leaving it older than the last notification. Never raises: the message task that
    calls it has posted its DM already, and a retry would post it twice."""
    recent, due = _home_keys(user_id)
    quiet_ms = int(HOME_QUIET_SECONDS * 1000)
    try:
        if rt.redis.set(recent, 1, nx=True, px=quiet_ms):
            _publish_in_turn(rt, user_id)
            return
        # Published moments ago. One later publish per window is enough; the key outlives
        # the window so a lost doorbell is rung again by a later notification.
        if not rt.redis.set(due, 1, nx=True, px=10 * quiet_ms):
            return
        wait = max(int(rt.redis.pttl(recent)), 100) / 1000
        if rt.tasks.publish_home(user_id, after=wait):
            return
        rt.redis.delete(due)
    except RedisError:
        pass  # without Redis (or its broker), as before: publish on every notification
    publish_home(rt, user_id)


def publish_home_when_due(rt: Runtime, user_id: str) -> None:
    """The publish left for a window's end: opens a new window, renders the DB as it is now.

    Raises when Slack fails, so the task retries: this publish carries the latest state.
    """
    recent, due = _home_keys(user_id)
    # Cleared before rendering: a change after this point leaves a publish of its own.
    rt.redis.delete(due)
    rt.redis.set(recent, 1, px=int(HOME_QUIET_SECONDS * 1000))
    _publish_in_turn(rt, user_id, raise_errors=True)


def _publish_in_turn(rt: Runtime, user_id: str, *, raise_errors: bool = False) -> None:
    # One render-and-publish per person at a time: an older render published after a newer
    # one would show a state that is gone.
    with turn(rt.redis, f"latchkey:home:lock:{user_id}"):
        if raise_errors:
            publish_latest_home(rt, user_id)
        else:
            publish_home(rt, user_id)


def publish_latest_home(rt: Runtime, user_id: str) -> None:
    from app.slack.home import build_home

    rt.slack.views_publish(user_id=user_id, view=build_home(rt, user_id))


def _tell_requester(rt: Runtime, ctx: CardContext, what: str) -> None:
    """A new DM for moments worth a notification; otherwise the latest DM is re-rendered.

    Either way the older DM loses its buttons, so nothing offers an action that no
    longer applies (Cancel on a decided request, Extend on an ended grant).
    """
    request = ctx.request
    if what not in DM_MOMENTS and request.dm_ts is None:
        return
    tz = rt.directory.user(request.requester_id).tz
    if what not in DM_MOMENTS or moment_passed(ctx, what):
        if request.dm_ts is not None:
            text, blocks = requester_message(ctx, "status", tz)
            rt.slack.chat_update(
                channel=request.dm_channel, ts=request.dm_ts, text=text, blocks=blocks
            )
        return
    if request.dm_ts is not None:
        text, blocks = superseded(ctx, tz, what)
        rt.slack.chat_update(channel=request.dm_channel, ts=request.dm_ts, text=text, blocks=blocks)
    text, blocks = requester_message(ctx, what, tz)
    posted = rt.slack.chat_postMessage(channel=request.requester_id, text=text, blocks=blocks)
    with rt.db.session() as session:
        stored = session.get(AccessRequest, request.id)
        if stored is not None:
            stored.dm_channel, stored.dm_ts = posted["channel"], posted["ts"]
            session.add(stored)


def _alert_channel(rt: Runtime, ctx: CardContext, what: str) -> None:
    request = ctx.request
    text = _CHANNEL_ALERTS[what].format(
        whose=possessive(request.requester_id),
        target=escape(request.target),
        error=escape(request.failure or "unknown error"),
    )
    rt.slack.chat_postMessage(
        channel=request.approval_channel,
        thread_ts=request.approval_message_ts,
        reply_broadcast=True,  # shown in the channel too: this needs someone's attention
        text=f"{text} (request `{request.id}`)",
    )


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


def _announce_escalation(rt: Runtime, ctx: CardContext) -> None:
    """The latest step, in the card's thread and the channel, mentioning its people (each
    also gets the card by DM: app.copies)."""
    taken = ctx.steps
    if taken:
        rt.slack.chat_postMessage(
            channel=ctx.request.approval_channel,
            thread_ts=ctx.request.approval_message_ts,
            reply_broadcast=True,
            text=f"{escalation_line(taken[-1])} (request `{ctx.request.id}`)",
        )


def _remind(rt: Runtime, ctx: CardContext, flow: Flow) -> None:
    """One nudge in the card's thread, naming the approvers (people and groups); with
    approver DMs, also one in the thread of each DM whose approver has not decided."""
    mentions = " ".join(
        [f"<@{u}>" for u in flow.approvers.users]
        + [f"<!subteam^{g}>" for g in flow.approvers.usergroups]
    )
    deadline = "soon"
    if flow.pending_timeout is not None:
        moment = ctx.request.created_at + flow.pending_timeout
        deadline = slack_date(moment, moment.strftime("%Y-%m-%d %H:%M UTC"))
    for copy in undecided_approver_copies(rt, ctx.request) if flow.approver_dms else ():
        rt.slack.chat_postMessage(
            channel=copy.channel,
            thread_ts=copy.ts,
            text=reminder_text(ctx.request, f"<@{copy.user_id}>", deadline),
        )
    rt.slack.chat_postMessage(
        channel=ctx.request.approval_channel,
        thread_ts=ctx.request.approval_message_ts,
        text=reminder_text(ctx.request, mentions or "Approvers", deadline),
    )
