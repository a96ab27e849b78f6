"""Copies of a request's card beyond its channel: in each approver's DM (`approver_dms`),
with buttons that work, and for the flow's watchers (`notify`), without buttons.

Every copy is re-rendered from the DB at every transition, with the channel's card, so a
decision in one place shows in all; a click on an older copy is decided by the server
like any other click, and refused once the request has moved on.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from app.eligibility import current_members
from app.escalation import people_of
from app.flows.loader import LoadedFlow
from app.flows.schema import MAX_APPROVER_DMS
from app.models import AccessRequest, Approval, CardCopy, RequestStatus
from app.runtime import Runtime
from app.slack.blocks.cards import CardContext, approval_card, fallback_text

log = logging.getLogger(__name__)

APPROVER = "approver"
WATCHER = "watcher"


def view_only(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The card without its buttons: what a watcher sees."""
    return [b for b in blocks if b.get("type") != "actions"]


def approver_recipients(rt: Runtime, loaded: LoadedFlow, request: AccessRequest) -> list[str]:
    """Who gets the card by DM: the flow's listed approvers, its groups' members and anyone
    its get_approvers hook names, never the requester (unless the flow lets them approve
    their own request), at most MAX_APPROVER_DMS of them."""
    from app.slack.listeners.approvals import hook_approvers

    flow = loaded.flow
    people = list(flow.approvers.users)
    for members in current_members(rt, flow.approvers.usergroups).values():
        people.extend(sorted(members))
    people.extend(sorted(hook_approvers(rt, loaded, request)))
    if flow.approvers.oncall:
        from app.oncall.people import audited, on_call_people

        on_call = audited(
            rt, request.id, "approvers.oncall", lambda: on_call_people(rt, flow.approvers.oncall)
        )
        people.extend(sorted(on_call or ()))
    chosen = [
        p for p in dict.fromkeys(people) if p != request.requester_id or flow.allow_self_approval
    ]
    if len(chosen) > MAX_APPROVER_DMS:
        log.warning(
            "flow %s: %d approvers, DMs go to the first %d",
            flow.name,
            len(chosen),
            MAX_APPROVER_DMS,
        )
    return chosen[:MAX_APPROVER_DMS]


def sync_copies(rt: Runtime, ctx: CardContext, loaded: LoadedFlow) -> None:
    """Re-render every copy the request has, then post the ones it should have and lacks
    (approvers' DMs while it is pending; watchers' at any time).

    A copy that Slack refuses for good (a deactivated approver) is logged and skipped; a
    rate limit raises, so the message task retries, and copies already posted are kept.
    """
    request = ctx.request
    flow = loaded.flow
    blocks = approval_card(ctx)
    text = fallback_text(request, ctx.break_glass)
    with rt.db.session() as session:
        have = list(
            session.execute(select(CardCopy).where(CardCopy.request_id == request.id)).scalars()  # type: ignore[arg-type]
        )
    for copy in have:
        shown = blocks if copy.role == APPROVER else view_only(blocks)
        _send(rt.slack.chat_update, channel=copy.channel, ts=copy.ts, text=text, blocks=shown)
    posted_to = {c.user_id or c.channel for c in have}
    wanted: list[tuple[str, str]] = []
    if request.status == RequestStatus.PENDING:
        # Approvers first: one who also watches gets the copy with buttons. Escalation
        # steps reach their people by DM whatever approver_dms says: that is the point.
        for step in ctx.steps:
            role = APPROVER if step.details.get("may_approve") else WATCHER
            wanted += [(p, role) for p in people_of(rt, step) if p != request.requester_id]
        if flow.approver_dms:
            wanted += [(a, APPROVER) for a in approver_recipients(rt, loaded, request)]
        wanted.sort(key=lambda w: w[1] != APPROVER)
    wanted += [(w, WATCHER) for w in (*flow.notify.channels, *flow.notify.users)]
    first: dict[str, str] = {}
    for where, role in wanted:
        first.setdefault(where, role)
    for where, role in first.items():
        if where in posted_to:
            continue
        shown = blocks if role == APPROVER else view_only(blocks)
        response = _send(rt.slack.chat_postMessage, channel=where, text=text, blocks=shown)
        if response is not None:
            _record(rt, request, where, role, response)


def undecided_approver_copies(rt: Runtime, request: AccessRequest) -> list[CardCopy]:
    """The approvers' DM copies of a pending request whose approver has not decided yet:
    where a reminder goes."""
    with rt.db.session() as session:
        decided = set(
            session.execute(
                select(Approval.approver_id).where(Approval.request_id == request.id)  # type: ignore[arg-type]
            ).scalars()
        )
        return [
            c
            for c in session.execute(
                select(CardCopy).where(
                    CardCopy.request_id == request.id,  # type: ignore[arg-type]
                    CardCopy.role == APPROVER,  # type: ignore[arg-type]
                )
            ).scalars()
            if c.user_id not in decided
        ]


def _send(call: Any, **args: Any) -> Any:
    try:
        return call(**args)
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else None
        if error == "ratelimited" or exc.response is None or exc.response.status_code >= 500:
            raise
        log.warning("a card copy was refused by Slack: %s", error)
        return None


def _record(rt: Runtime, request: AccessRequest, where: str, role: str, response: Any) -> None:
    # A person's copy is their DM (Slack answers with its D… id); a channel's is the channel.
    user_id = where if where[0] in "UW" else None
    with rt.db.session() as session:
        session.add(
            CardCopy(
                request_id=request.id,
                channel=response["channel"],
                ts=response["ts"],
                role=role,
                user_id=user_id,
            )
        )
