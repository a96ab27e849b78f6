"""The /access command: the request modal, `list`, `revoke <id> <reason>` and `help`."""

from __future__ import annotations

import re
import uuid
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from sqlalchemy import String, cast, select

from app.db import utcnow
from app.eligibility import for_others, requestable_flows
from app.models import AccessRequest
from app.runtime import Runtime
from app.slack import ids
from app.slack.blocks.home import access_blocks
from app.slack.blocks.modals import request_modal
from app.slack.blocks.text import EXTEND_LABEL
from app.slack.home import home_data
from app.slack.listeners.errors import Refusal, guarded
from app.slack.listeners.grants import revoke

HELP = (
    "*/access* — request just-in-time access: pick a flow, what you need, for how long and why.\n"
    "*/access list* — what you hold (with Extend and I'm done), your pending requests, and "
    "requests waiting for your decision. The same is in Latchkey's App Home.\n"
    "*/access revoke <request id> <reason>* — for a flow's approvers and Latchkey admins: "
    "end someone's access now. The id is on the request's card (the first 8 characters do).\n"
    "*/access help* — this message.\n"
    f"Before your access ends you get a DM with *{EXTEND_LABEL}* and *I'm done*."
)

_ID_PREFIX = re.compile(r"^[0-9a-f]{8}(-[0-9a-f-]{0,28})?$")


def find_request(rt: Runtime, raw: str) -> uuid.UUID:
    """A full request id, or its first 8+ characters when that names exactly one request."""
    raw = raw.strip().strip("`").lower()
    try:
        return uuid.UUID(raw)
    except ValueError:
        pass
    if not _ID_PREFIX.match(raw):
        raise Refusal(f"`{_inert(raw)}` is not a request id; copy it from the request's card.")
    with rt.db.session() as session:
        found = list(
            session.execute(
                select(AccessRequest.id)
                .where(
                    cast(AccessRequest.id, String).like(f"{raw}%"),  # type: ignore[arg-type]
                    AccessRequest.extends_id.is_(None),  # type: ignore[union-attr]
                )
                .limit(2)
            ).scalars()
        )
    if len(found) != 1:
        raise Refusal(
            f"No request starts with `{raw}`."
            if not found
            else f"More than one request starts with `{raw}`; give more of the id."
        )
    return found[0]


def register(app: App, rt: Runtime) -> None:
    @app.command(ids.COMMAND)
    @guarded
    def access_command(ack: Ack, command: dict[str, Any], client: WebClient) -> None:
        # For a slash command, the request body is the command payload.
        text = (command.get("text") or "").strip()
        word, _, rest = text.partition(" ")
        word = word.lower()
        user_id = command["user_id"]
        if word == "help":
            ack(text=HELP)
        elif word == "list":
            now = utcnow()
            ack(text="Your access", blocks=access_blocks(home_data(rt, user_id, now), now))
        elif word == "revoke":
            raw_id, _, reason = rest.strip().partition(" ")
            if not raw_id or not reason.strip():
                ack(text="Usage: `/access revoke <request id> <reason>` — the reason is required.")
                return
            try:
                revoke(rt, find_request(rt, raw_id), user_id, reason.strip())
            except Refusal as refusal:
                ack(text=f":no_entry: {refusal}")
                return
            ack(text="Revoking now; the card in the flow's channel and the holder are updated.")
        elif word:
            ack(text=f"I don't know `/access {_inert(text)}`.\n{HELP}")
        else:
            ack()
            # views.open must run here, in the web process, inside the trigger_id's 3 seconds.
            flows = requestable_flows(rt, user_id)
            view = request_modal(flows, for_others=for_others(rt, user_id, flows))
            client.views_open(trigger_id=command["trigger_id"], view=view)


def _inert(text: str) -> str:
    return text.replace("`", "'")[:50]
