"""The /access command: opens the request modal (other subcommands arrive with App Home)."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from app.eligibility import requestable_flows
from app.runtime import Runtime
from app.slack import ids
from app.slack.blocks.modals import request_modal
from app.slack.listeners.errors import guarded

HELP = (
    "*/access* — request just-in-time access: pick a flow, what you need, for how long and why.\n"
    "*/access help* — this message."
)


def register(app: App, rt: Runtime) -> None:
    @app.command(ids.COMMAND)
    @guarded
    def open_request_modal(ack: Ack, command: dict[str, Any], client: WebClient) -> None:
        # For a slash command, the request body is the command payload.
        text = (command.get("text") or "").strip().lower()
        if text == "help":
            ack(text=HELP)
            return
        if text:
            ack(text=f"I don't know `/access {_inert(text)}`.\n{HELP}")
            return
        ack()
        # views.open must run here, in the web process, inside the trigger_id's 3 seconds.
        flows = requestable_flows(rt, command["user_id"])
        client.views_open(trigger_id=command["trigger_id"], view=request_modal(flows))


def _inert(text: str) -> str:
    return text.replace("`", "'")[:50]
