"""App Home: for now, how to ask for access (grants and approvals arrive with issue #4)."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from app.slack.blocks.text import mrkdwn
from app.slack.listeners.errors import guarded


def home_view() -> dict[str, Any]:
    return {
        "type": "home",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Latchkey"}},
            {
                "type": "section",
                "text": mrkdwn(
                    "Type `/access` in any channel to request just-in-time access. "
                    "An approver decides in the flow's channel; access ends on time by itself."
                ),
            },
        ],
    }


def register(app: App) -> None:
    @app.event("app_home_opened")
    @guarded
    def publish_home(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        event = body["event"]
        if event.get("tab") == "home":
            client.views_publish(user_id=event["user"], view=home_view())
