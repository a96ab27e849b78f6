"""Block Kit builders are pure: what people would see, without Slack."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from app.flows.loader import FlowRegistry
from app.models import AccessRequest, Approval, Decision, Grant, RequestStatus
from app.slack import ids
from app.slack.blocks.cards import CardContext, approval_card, fallback_text
from app.slack.blocks.dms import requester_message
from app.slack.blocks.modals import request_modal
from app.slack.blocks.text import escape, local_time

HOSTILE = "<!channel> <@U123> <https://x|y> & co"


def _request(status: RequestStatus = RequestStatus.PENDING) -> AccessRequest:
    return AccessRequest(
        id=uuid.uuid4(),
        flow="test-admin",
        target="admins",
        requester_id="U0REQ",
        reason=HOSTILE,
        requested_seconds=3600,
        status=status,
    )


def _all_text(blocks: list[dict]) -> str:
    return json.dumps(blocks)


def test_escape() -> None:
    assert escape(HOSTILE) == "&lt;!channel&gt; &lt;@U123&gt; &lt;https://x|y&gt; &amp; co"


def test_card_escapes_user_text_and_offers_decisions_only_while_pending() -> None:
    request = _request()
    pending = approval_card(CardContext(request, [], None))
    text = _all_text(pending)
    assert "<!channel>" not in text and "<@U123>" not in text and "<https://x|y>" not in text
    assert "&lt;!channel&gt;" in text
    actions = [b for b in pending if b["type"] == "actions"]
    assert [e["action_id"] for e in actions[0]["elements"]] == [ids.APPROVE_ACTION, ids.DENY_ACTION]
    assert {e["value"] for e in actions[0]["elements"]} == {str(request.id)}

    approved = _request(RequestStatus.ACTIVE)
    decided = approval_card(
        CardContext(
            approved,
            [
                Approval(
                    request_id=approved.id,
                    approver_id="U0APP",
                    decision=Decision.APPROVE,
                    created_at=datetime.now(UTC),
                )
            ],
            None,
        )
    )
    # Once active, the only action left on the card is Revoke (approvers end it early).
    buttons = [e["action_id"] for b in decided if b["type"] == "actions" for e in b["elements"]]
    assert buttons == [ids.REVOKE_ACTION]
    assert "Approved by <@U0APP>" in _all_text(decided)


def test_fallback_text_is_escaped_too() -> None:
    request = _request()
    request.target = "<!here>"
    assert "<!here>" not in fallback_text(request)


def test_granted_dm_uses_the_requesters_timezone() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    request = _request(RequestStatus.ACTIVE)
    grant = Grant(
        request_id=request.id,
        provider="aws_iam_group",
        target="admins",
        principal="p",
        granted_at=now,
        expires_at=now + timedelta(hours=1),
    )
    text, _ = requester_message(CardContext(request, [], grant), "granted", "America/New_York", now)
    assert "until *08:00 America/New_York*" in text
    assert local_time(now, "Not/AZone", now) == "12:00 UTC"


def test_request_modal_offers_only_the_flows_durations(flows: FlowRegistry) -> None:
    flow = flows.get("test-admin").flow
    view = request_modal([flow])
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    durations = [o["value"] for o in blocks[ids.DURATION_BLOCK]["element"]["options"]]
    assert durations == ["4", "6", "3600"]
    assert blocks[ids.FLOW_BLOCK]["dispatch_action"] is True
    assert blocks[ids.REASON_BLOCK]["optional"] is False
    assert json.loads(view["private_metadata"]) == {"flow": "test-admin"}
