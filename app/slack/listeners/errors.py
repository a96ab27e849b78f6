"""One place that turns refusals and failures into words for the person who clicked."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

log = logging.getLogger(__name__)


class Refusal(Exception):
    """Something a person may not do, or cannot do now; the message is shown to them."""


def tell(client: WebClient, body: dict[str, Any], text: str) -> None:
    """Say something only the actor sees: ephemeral in the channel, else a DM."""
    user = (body.get("user") or {}).get("id") or body.get("user_id")
    channel = (body.get("channel") or {}).get("id") or body.get("channel_id")
    if not user:
        return
    if channel:
        client.chat_postEphemeral(channel=channel, user=user, text=text)
    else:
        client.chat_postMessage(channel=user, text=text)


def register(app: App) -> None:
    @app.error
    def handle_error(error: Exception, body: dict[str, Any], client: WebClient) -> None:
        if isinstance(error, Refusal):
            tell(client, body, f":no_entry: {error}")
            return
        reference = uuid.uuid4().hex[:8]
        log.exception("unhandled error (ref %s)", reference, exc_info=error)
        try:
            tell(
                client,
                body,
                f":warning: Something went wrong on our side (ref {reference}). Nothing was changed; try again or tell your admins.",
            )
        except Exception:
            log.exception("could not tell the user about ref %s", reference)
