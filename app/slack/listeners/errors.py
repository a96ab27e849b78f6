"""One place that turns refusals and failures into words for the person who clicked.

Listeners are wrapped by `guarded` rather than left to raise into Bolt: with
process_before_response=False, Bolt resets the acknowledged response when a listener
raises after ack(), so Slack would see a 404 for a click that was in fact handled.

Words reach the person whether or not they are in the channel: through the click's
`response_url` (an ephemeral reply Slack shows to whoever clicked, member or not), else
a DM. `chat.postEphemeral` is not used: Slack refuses it (`user_not_in_channel`) for
anyone outside the channel, such as an outsider clicking a card in a public channel.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from app import lifecycle
from app.models import AccessRequest
from app.runtime import Runtime

log = logging.getLogger(__name__)
# slack_sdk logs the URL it posts to at DEBUG; a response_url is a credential (it lets
# anyone post as the app to that person for 30 minutes), so it never reaches the logs.
_webhook_log = logging.getLogger(f"{__name__}.response_url")
_webhook_log.setLevel(logging.WARNING)
RESPONSE_URL_TIMEOUT = 5  # seconds; a slow response_url falls back to a DM

Listener = Callable[[Ack, dict[str, Any], WebClient], None]


class Refusal(Exception):
    """Something a person may not do, or cannot do now; the message is shown to them."""


# What a person hears when their action was stored but the broker could not take the
# follow-up work: the beat's sweep finds it in the DB as soon as the broker is back.
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


def refused(
    rt: Runtime, request: AccessRequest, event: str, actor: str, reason: str, message: str = ""
) -> Refusal:
    """Audit a refused action and return the Refusal to raise.

    The event is written in a transaction of its own, committed before the refusal is
    raised, so it is never rolled back with whatever the refusal interrupts.
    """
    with rt.db.session() as session:
        lifecycle.record(session, rt.audit, request, event, actor, {"reason": reason})
    return Refusal(message or reason)


def actor_of(body: dict[str, Any]) -> str | None:
    """Who clicked, typed or submitted: interactions carry `user.id`, commands `user_id`."""
    return (body.get("user") or {}).get("id") or body.get("user_id")


def response_url_of(body: dict[str, Any]) -> str | None:
    """Where Slack takes a reply to this interaction: clicks on messages and slash commands
    carry one; a modal carries one only when a block asked for it; App Home clicks none."""
    urls = body.get("response_urls") or [{}]
    return body.get("response_url") or urls[0].get("response_url")


def tell(client: WebClient, body: dict[str, Any], text: str) -> None:
    """Say something only the actor sees: an ephemeral reply through the interaction's
    response_url (shown whether or not they are in the channel), else a DM."""
    user = actor_of(body)
    if not user:
        return
    url = response_url_of(body)
    if url and reply(url, text):
        return
    client.chat_postMessage(channel=user, text=text)


def reply(url: str, text: str) -> bool:
    """Post an ephemeral reply to a response_url; False when Slack did not take it (the
    URL is older than 30 minutes or was used 5 times) or could not be reached."""
    try:
        answer = WebhookClient(url, timeout=RESPONSE_URL_TIMEOUT, logger=_webhook_log).send(
            text=text, response_type="ephemeral", replace_original=False
        )
    except Exception as error:  # a DM follows; the URL itself is never logged
        log.warning("response_url unreachable (%s); sending a DM", type(error).__name__)
        return False
    if answer.status_code != 200:
        log.warning("response_url answered %s; sending a DM", answer.status_code)
        return False
    return True


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")[:300]


def report(error: Exception, body: dict[str, Any], client: WebClient) -> None:
    """Tell the actor about a refusal or a failure; a refusal is not an error."""
    user = actor_of(body)
    if isinstance(error, Refusal):
        log.info("refused: %s (user %s)", _one_line(str(error)), user)
        text = f":no_entry: {error}"
    else:
        reference = uuid.uuid4().hex[:8]
        log.error("unhandled error (ref %s, user %s)", reference, user, exc_info=error)
        text = (
            f":warning: Something went wrong on our side (ref {reference}). "
            "Try again, or give your admins this reference."
        )
    try:
        tell(client, body, text)
    except Exception:
        log.exception("could not tell %s: %s", user, _one_line(text))


def guarded(listener: Listener) -> Listener:
    """Run a listener; whatever it raises is reported to the actor, never to Bolt."""

    def run(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        acked = False

        def ack_once(*args: Any, **kwargs: Any) -> Any:
            nonlocal acked
            acked = True
            return ack(*args, **kwargs)

        try:
            listener(ack_once, body, client)  # type: ignore[arg-type]
        except Exception as error:
            if not acked:
                # Raised before its ack (a modal's bad metadata, say): ack now, or Slack
                # shows the person a connection error instead of the words below.
                ack()
            report(error, body, client)

    run.__name__ = listener.__name__  # Bolt names listeners in its logs
    run.__qualname__ = listener.__qualname__
    return run


def register(app: App) -> None:
    @app.error
    def handle_error(error: Exception, body: dict[str, Any], client: WebClient) -> None:
        # Errors raised outside a guarded listener (middleware, Bolt itself).
        report(error, body, client)
