"""App Home and `/access list`: what I hold, what I asked for, what waits for me.

Pure functions of data read from the DB by app.slack.home, so a test can compare the
view with the rows it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app.clients import mention
from app.flows.schema import format_duration
from app.models import AccessRequest, Grant
from app.slack import ids
from app.slack.blocks.text import EXTEND_LABEL, button, escape, local_time, mrkdwn, plain

# Slack allows 100 blocks in a Home and 50 in a message; each section stays well under.
MAX_ITEMS = 10


@dataclass(frozen=True)
class HeldGrant:
    request: AccessRequest
    grant: Grant
    can_extend: bool
    extension_pending: bool = False
    # A login the holder is shown (Show credentials).
    credentials: bool = False


@dataclass(frozen=True)
class HomeData:
    user_id: str
    tz: str
    held: list[HeldGrant] = field(default_factory=list)
    asked: list[AccessRequest] = field(default_factory=list)
    waiting: list[AccessRequest] = field(default_factory=list)
    # How many passkeys this person has set up; None where passkeys are not offered
    # (no LATCHKEY_PUBLIC_URL).
    passkeys: int | None = None
    # Identity links: offered (the OIDC settings are complete), and the linked email.
    identity_offered: bool = False
    identity_email: str | None = None
    # Approved requests waiting their turn for a shared account (Leave the queue).
    queued: list[AccessRequest] = field(default_factory=list)


def _left(until: datetime, now: datetime) -> str:
    left = max(until - now, timedelta(0))
    return format_duration(timedelta(seconds=max(60, int(left.total_seconds()) // 60 * 60)))


def _more(count: int) -> list[dict[str, Any]]:
    if count <= MAX_ITEMS:
        return []
    return [{"type": "context", "elements": [mrkdwn(f"…and {count - MAX_ITEMS} more")]}]


def access_blocks(data: HomeData, now: datetime) -> list[dict[str, Any]]:
    """The three lists, each with the buttons that act on it."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain("Your access")},
    ]
    if not data.held:
        blocks.append({"type": "section", "text": mrkdwn("You hold no access right now.")})
    for held in data.held[:MAX_ITEMS]:
        request, grant = held.request, held.grant
        value = str(request.id)
        text = (
            f"*{escape(request.target)}* ({escape(request.flow)}) — "
            f"{_left(grant.expires_at, now)} left, until {local_time(grant.expires_at, data.tz, now)}"
        )
        if held.extension_pending:
            text += "\n_An extension is waiting for approval._"
        buttons = []
        if held.credentials:
            buttons.append(button(ids.SHOW_CREDENTIALS_ACTION, "Show credentials", value))
        if held.can_extend and not held.extension_pending:
            buttons.append(button(ids.EXTEND_ACTION, EXTEND_LABEL, value, "primary"))
        buttons.append(button(ids.RELEASE_ACTION, "I'm done", value))
        blocks += [
            {"type": "section", "text": mrkdwn(text)},
            {"type": "actions", "elements": buttons},
        ]
    blocks += _more(len(data.held))

    blocks.append({"type": "header", "text": plain("Your pending requests")})
    if not data.asked and not data.queued:
        blocks.append({"type": "section", "text": mrkdwn("Nothing is waiting for approval.")})
    for request in data.queued[:MAX_ITEMS]:
        blocks.append(
            {
                "type": "section",
                "text": mrkdwn(
                    f"*{escape(request.target)}* ({escape(request.flow)}) for "
                    f"{format_duration(request.duration)}: approved, waiting its turn "
                    "(someone else has it checked out)"
                ),
                "accessory": button(ids.CANCEL_ACTION, "Leave the queue", str(request.id)),
            }
        )
    for request in data.asked[:MAX_ITEMS]:
        kind = "Extension of" if request.extends_id else "Request for"
        blocks.append(
            {
                "type": "section",
                "text": mrkdwn(
                    f"{kind} *{escape(request.target)}* ({escape(request.flow)}) for "
                    f"{format_duration(request.duration)}, asked {local_time(request.created_at, data.tz, now)}"
                ),
                "accessory": button(ids.CANCEL_ACTION, "Cancel", str(request.id)),
            }
        )
    blocks += _more(len(data.asked))

    if data.waiting:
        blocks.append({"type": "header", "text": plain("Waiting for your decision")})
    for request in data.waiting[:MAX_ITEMS]:
        kind = "extend" if request.extends_id else "have"
        value = str(request.id)
        blocks += [
            {
                "type": "section",
                "text": mrkdwn(
                    f"{mention(request.requester_id)} asks to {kind} *{escape(request.target)}* "
                    f"({escape(request.flow)}) for {format_duration(request.duration)}\n"
                    f">{escape(request.reason) or '_no reason given_'}"
                ),
            },
            {
                "type": "actions",
                "elements": [
                    button(ids.APPROVE_ACTION, "Approve", value, "primary"),
                    button(ids.DENY_ACTION, "Deny", value, "danger"),
                ],
            },
        ]
    blocks += _more(len(data.waiting))
    return blocks


def home_view(data: HomeData, now: datetime) -> dict[str, Any]:
    intro = {
        "type": "section",
        "text": mrkdwn(
            "Type `/access` anywhere to request just-in-time access; `/access help` lists "
            "the commands. Access ends on time by itself."
        ),
    }
    blocks = [intro, *access_blocks(data, now), *_passkey(data), *_identity(data)]
    return {"type": "home", "blocks": blocks}


def _identity(data: HomeData) -> list[dict[str, Any]]:
    if not data.identity_offered:
        return []
    if data.identity_email:
        said = (
            f":white_check_mark: Your Slack user is linked to *{escape(data.identity_email)}* "
            "at your company's sign-in. Flows that require a verified identity grant to it."
        )
        action = button(ids.IDENTITY_UNLINK_ACTION, "Unlink", "unlink", "danger")
    else:
        said = (
            "Your company identity is not linked. Flows that require a verified identity "
            "grant only once it is."
        )
        action = button(ids.IDENTITY_LINK_ACTION, "Link your identity", "link", "primary")
    return [
        {"type": "header", "text": plain("Verified identity")},
        {"type": "section", "text": mrkdwn(said), "accessory": action},
    ]


def _passkey(data: HomeData) -> list[dict[str, Any]]:
    if data.passkeys is None:
        return []
    have = (
        f"You have {data.passkeys} passkey{'s' if data.passkeys > 1 else ''} set up."
        if data.passkeys
        else "You have no passkey set up yet."
    )
    return [
        {"type": "header", "text": plain("Passkey")},
        {
            "type": "section",
            "text": mrkdwn(
                f":key: {have} Some flows count an approval only once it is confirmed with "
                "a passkey, so that a stolen Slack session cannot approve."
            ),
            "accessory": button(ids.PASSKEY_SETUP_ACTION, "Set up a passkey", "setup"),
        },
    ]


def passkey_modal(url: str, minutes: int) -> dict[str, Any]:
    """The modal App Home's button opens: a fresh single-use link, for this person only."""
    return {
        "type": "modal",
        "title": plain("Set up a passkey"),
        "close": plain("Close"),
        "blocks": [
            {
                "type": "section",
                "text": mrkdwn(
                    "Open this page in your browser and follow it: your device (Touch ID, "
                    "Windows Hello, a security key…) makes a passkey for Latchkey. The link "
                    f"works once, only for you, for {minutes} min."
                ),
            },
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": ids.PASSKEY_OPEN_ACTION,
                        "text": plain("Open the passkey page"),
                        "url": url,
                        "style": "primary",
                    }
                ],
            },
        ],
    }
