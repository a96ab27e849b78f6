"""App Home: what I hold, what I asked for and what waits for my decision, from the DB."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from app.runtime import Runtime
from app.slack.home import build_home
from app.slack.listeners.errors import guarded


def register(app: App, rt: Runtime) -> None:
    @app.event("app_home_opened")
    @guarded
    def publish_home(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        event = body["event"]
        if event.get("tab") == "home":
            client.views_publish(user_id=event["user"], view=build_home(rt, event["user"]))
