"""What the demo prints is what a person would see in Slack."""

from __future__ import annotations

import pytest

from app.testing.render import render_blocks, render_mrkdwn, render_view

NAMES = {"U0ALICE": "alice", "U0BOB": "bob", "C0REQUESTS": "access-requests"}

APPROVAL_CARD = [
    {"type": "header", "text": {"type": "plain_text", "text": "Access request"}},
    {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "<@U0ALICE> requests *admin* on `prod-db`"},
        "fields": [
            {"type": "mrkdwn", "text": "*Duration:*\n2 hours"},
            {"type": "mrkdwn", "text": "*Flow:*\n<https://latchkey.example/flows/db|prod-db>"},
        ],
    },
    {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "*Why:* &lt;!channel&gt; restore &amp; verify"},
    },
    {
        "type": "context",
        "elements": [
            {"type": "mrkdwn", "text": "Ends <!date^1700007200^{time}|22:13 UTC>"},
            {"type": "plain_text", "text": "req 7f3a"},
        ],
    },
    {"type": "divider"},
    {
        "type": "actions",
        "block_id": "decision",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "value": "7f3a",
                "style": "primary",
                "text": {"type": "plain_text", "text": "Approve"},
            },
            {
                "type": "button",
                "action_id": "deny",
                "value": "7f3a",
                "style": "danger",
                "text": {"type": "plain_text", "text": "Deny"},
            },
        ],
    },
]


def test_approval_card_reads_like_slack_shows_it() -> None:
    assert render_blocks(APPROVAL_CARD, "fallback", names=NAMES) == "\n".join(
        [
            "Access request",
            "==============",
            "@alice requests *admin* on `prod-db`",
            "*Duration:*",
            "2 hours",
            "*Flow:*",
            "prod-db (https://latchkey.example/flows/db)",
            "*Why:* <!channel> restore & verify",
            "Ends 22:13 UTC  req 7f3a",
            "-" * 40,
            "[ Approve ]  [ Deny ]",
        ]
    )


@pytest.mark.parametrize(
    ("mrkdwn", "shown"),
    [
        ("<@U0BOB>", "@bob"),
        ("<@U0NOBODY>", "@U0NOBODY"),
        ("<@U0NOBODY|carol>", "@carol"),
        ("<#C0REQUESTS>", "#access-requests"),
        ("<!here> look", "@here look"),
        ("<!subteam^S0LEADS|@leads>", "@leads"),
        ("<!date^1700000000^{date_short}|Nov 14, 2023>", "Nov 14, 2023"),
        ("<https://example.com>", "https://example.com"),
        ("<mailto:a@example.com|a@example.com>", "a@example.com (mailto:a@example.com)"),
        # A user who typed "&lt;" literally: Slack shows "&lt;", not "<".
        ("&amp;lt;b&amp;gt;", "&lt;b&gt;"),
        ("1 &lt; 2 &amp;&amp; 3 &gt; 2", "1 < 2 && 3 > 2"),
    ],
)
def test_mrkdwn_tokens(mrkdwn: str, shown: str) -> None:
    assert render_mrkdwn(mrkdwn, NAMES) == shown


def test_plain_text_is_shown_exactly_as_sent() -> None:
    block = {"type": "section", "text": {"type": "plain_text", "text": "<@U0BOB> &amp;"}}
    assert render_blocks([block], names=NAMES) == "<@U0BOB> &amp;"


def test_text_is_shown_when_there_are_no_blocks() -> None:
    assert render_blocks(None, "Approved by <@U0BOB>", names=NAMES) == "Approved by @bob"
    assert render_blocks([], None) == ""


def test_section_accessory_sits_beside_the_text() -> None:
    block = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "Your access to *prod-db* is active"},
        "accessory": {
            "type": "button",
            "action_id": "release",
            "value": "7f3a",
            "text": {"type": "plain_text", "text": "Give back"},
        },
    }
    assert render_blocks([block]) == "Your access to *prod-db* is active   [ Give back ]"


def test_request_modal() -> None:
    view = {
        "type": "modal",
        "callback_id": "request_access",
        "title": {"type": "plain_text", "text": "Request access"},
        "submit": {"type": "plain_text", "text": "Request"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": "flow",
                "label": {"type": "plain_text", "text": "What"},
                "element": {
                    "type": "static_select",
                    "action_id": "choice",
                    "placeholder": {"type": "plain_text", "text": "Choose access"},
                    "options": [
                        {
                            "text": {"type": "plain_text", "text": "prod-db admin"},
                            "value": "prod-db",
                        },
                        {
                            "text": {"type": "plain_text", "text": "billing read"},
                            "value": "billing",
                        },
                    ],
                },
            },
            {
                "type": "input",
                "block_id": "why",
                "label": {"type": "plain_text", "text": "Why"},
                "hint": {"type": "plain_text", "text": "Link the incident"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "text",
                    "multiline": True,
                    "placeholder": {"type": "plain_text", "text": "INC-123: ..."},
                },
            },
            {
                "type": "input",
                "block_id": "ticket",
                "optional": True,
                "label": {"type": "plain_text", "text": "Ticket"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "text",
                    "initial_value": "OPS-9",
                },
            },
        ],
    }
    assert render_view(view) == "\n".join(
        [
            "== Request access ==",
            "What",
            "  [ Choose access v ]",
            "    - prod-db admin",
            "    - billing read",
            "Why",
            "  [ INC-123: ... ] (multi-line)",
            "  Link the incident",
            "Ticket (optional)",
            "  [ OPS-9 ]",
            "-" * 40,
            "[ Cancel ]  [ Request ]",
        ]
    )


def test_radio_buttons_and_unknown_blocks() -> None:
    blocks = [
        {
            "type": "actions",
            "elements": [
                {
                    "type": "radio_buttons",
                    "action_id": "hours",
                    "initial_option": {"text": {"type": "plain_text", "text": "2h"}, "value": "2"},
                    "options": [
                        {"text": {"type": "plain_text", "text": "1h"}, "value": "1"},
                        {"text": {"type": "plain_text", "text": "2h"}, "value": "2"},
                    ],
                }
            ],
        },
        {"type": "video", "title": {"type": "plain_text", "text": "x"}},
    ]
    assert render_blocks(blocks) == "( ) 1h  (o) 2h\n[video block]"
