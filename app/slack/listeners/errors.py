"""One place that turns refusals and failures into words for the person who clicked.

Listeners are wrapped by `guarded` rather than left to raise into Bolt: with
process_before_response=False, Bolt resets the acknowledged response when a listener
raises after ack(), so Slack would see a 404 for a click that was in fact handled.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

log = logging.getLogger(__name__)

Listener = Callable[[Ack, dict[str, Any], WebClient], None]


class Refusal(Exception):
    """Something a person may not do, or cannot do now; the message is shown to them."""


# What a person hears when their action was stored but the broker could not take the
# follow-up work: the beat's sweep finds it in the DB as soon as the broker is back.
APPROVAL_LATER = (
    ":hourglass_flowing_sand: Your approval is recorded. Access will be granted shortly: "
    "Latchkey is catching up after a hiccup."
)
BREAK_GLASS_LATER = (
    ":hourglass_flowing_sand: Your break-glass activation is recorded. Access will be granted "
    "shortly: Latchkey is catching up after a hiccup."
)


def recorded_for_later(channel: str) -> str:
    return (
        f":hourglass_flowing_sand: Your request is recorded. Its approval card will appear in "
        f"<#{channel}> shortly: Latchkey is catching up after a hiccup."
    )


def request_id_from(raw: str) -> uuid.UUID:
    """The request id a button or menu carries; anything else is refused, not crashed on."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Refusal("That button does not point at a request.") from None


def from_home(body: dict[str, Any]) -> bool:
    """Whether a click came from the App Home (which then needs re-publishing)."""
    return (body.get("view") or {}).get("type") == "home"


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


def report(error: Exception, body: dict[str, Any], client: WebClient) -> None:
    if isinstance(error, Refusal):
        tell(client, body, f":no_entry: {error}")
        return
    reference = uuid.uuid4().hex[:8]
    log.error("unhandled error (ref %s)", reference, exc_info=error)
    try:
        tell(
            client,
            body,
            f":warning: Something went wrong on our side (ref {reference}). "
            "Try again, or give your admins this reference.",
        )
    except Exception:
        log.exception("could not tell the user about ref %s", reference)


def guarded(listener: Listener) -> Listener:
    """Run a listener; whatever it raises is reported to the actor, never to Bolt."""

    def run(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        try:
            listener(ack, body, client)
        except Exception as error:
            report(error, body, client)

    run.__name__ = listener.__name__  # Bolt names listeners in its logs
    run.__qualname__ = listener.__qualname__
    return run


def register(app: App) -> None:
    @app.error
    def handle_error(error: Exception, body: dict[str, Any], client: WebClient) -> None:
        # Errors raised outside a guarded listener (middleware, Bolt itself).
        report(error, body, client)
