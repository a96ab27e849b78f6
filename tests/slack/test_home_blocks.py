"""App Home and /access list blocks: what they offer for what the person holds and waits on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from app.models import AccessRequest, Grant, RequestStatus
from app.slack import ids
from app.slack.blocks.home import MAX_ITEMS, HeldGrant, HomeData, access_blocks, home_view

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _request(status: RequestStatus, requester: str = "U0SAM", **kw: object) -> AccessRequest:
    return AccessRequest(
        id=uuid.uuid4(),
        flow="prod",
        target="admins <!channel>",
        requester_id=requester,
        reason="fix <@U123>",
        requested_seconds=3600,
        status=status,
        created_at=NOW,
        **kw,
    )


def _held(can_extend: bool = True, pending: bool = False) -> HeldGrant:
    request = _request(RequestStatus.ACTIVE)
    grant = Grant(
        request_id=request.id,
        provider="aws_iam_group",
        target="admins",
        principal="sam@example.com",
        granted_at=NOW,
        expires_at=NOW + timedelta(minutes=42),
    )
    return HeldGrant(request, grant, can_extend, pending)


def _actions(blocks: list[dict]) -> list[tuple[str, str]]:
    found = []
    for block in blocks:
        if block["type"] == "actions":
            found += [(e["action_id"], e["value"]) for e in block["elements"]]
        if "accessory" in block:
            found.append((block["accessory"]["action_id"], block["accessory"]["value"]))
    return found


def test_each_list_offers_the_actions_that_apply_to_it() -> None:
    held, blocked, no_ext = _held(), _held(pending=True), _held(can_extend=False)
    asked = _request(RequestStatus.PENDING)
    waiting = _request(RequestStatus.PENDING, requester="U0BO")
    data = HomeData("U0SAM", "Europe/Berlin", [held, blocked, no_ext], [asked], [waiting])
    blocks = access_blocks(data, NOW)
    actions = _actions(blocks)
    assert (ids.EXTEND_ACTION, str(held.request.id)) in actions
    assert (ids.RELEASE_ACTION, str(held.request.id)) in actions
    # An extension already waiting, or a flow without extensions: no second Extend.
    assert (ids.EXTEND_ACTION, str(blocked.request.id)) not in actions
    assert (ids.EXTEND_ACTION, str(no_ext.request.id)) not in actions
    assert (ids.CANCEL_ACTION, str(asked.id)) in actions
    assert {(ids.APPROVE_ACTION, str(waiting.id)), (ids.DENY_ACTION, str(waiting.id))} <= set(
        actions
    )
    text = str(blocks)
    assert "42m left" in text and "13:42 Europe/Berlin" in text
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text and "<@U123>" not in text


def test_empty_home_says_so_and_long_lists_are_cut() -> None:
    empty = str(home_view(HomeData("U0SAM", "UTC"), NOW))
    assert "You hold no access right now." in empty and "Nothing is waiting" in empty
    many = HomeData("U0SAM", "UTC", [_held() for _ in range(MAX_ITEMS + 3)])
    view = home_view(many, NOW)
    assert len(view["blocks"]) <= 100
    assert "…and 3 more" in str(view)
