"""Safe text for Slack: user text is never markup."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# One label for the button wherever it appears (DMs, App Home, help).
EXTEND_LABEL = "Extend"

# Mentions Latchkey itself writes into a decision's reason ("<@U…> is listed",
# "<@U…> is in <!subteam^S…>"): ids only, so they can notify nobody unexpected.
_OWN_MENTION = re.compile(r"&lt;(@[UW][A-Z0-9]{2,}|!subteam\^S[A-Z0-9]{2,})&gt;")


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters.

    With these escaped, `<!channel>`, `<@U123>` and `<https://x|y>` typed by a user show
    as text and notify nobody. See Slack's "Escaping text" in the formatting docs.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_keeping_mentions(text: str) -> str:
    """Escape like `escape`, then let plain user and user-group mentions show as the
    person or group (a `<!channel>`, `<!here>` or link stays inert text)."""
    return _OWN_MENTION.sub(r"<\1>", escape(text))


def decision_reason(reason: str) -> str:
    """Why a rule decided, as mrkdwn. A flow's own rules name people by id and are shown
    as mentions; an on_request hook's words may carry user text, so stay fully escaped."""
    return escape(reason) if reason.startswith("on_request:") else escape_keeping_mentions(reason)


def button(action: str, text: str, value: str, style: str | None = None) -> dict[str, Any]:
    """A Block Kit button carrying a request id (or other value) back to a listener."""
    element: dict[str, Any] = {
        "type": "button",
        "action_id": action,
        "text": plain(text),
        "value": value,
    }
    if style:
        element["style"] = style
    return element


def plain(text: str, emoji: bool = False) -> dict[str, object]:
    return {"type": "plain_text", "text": text[:3000] or " ", "emoji": emoji}


def mrkdwn(text: str) -> dict[str, object]:
    return {"type": "mrkdwn", "text": text[:3000]}


def local_time(moment: datetime, tz_name: str, now: datetime | None = None) -> str:
    """'14:05 Europe/Paris', with the date when it is not today there."""
    try:
        zone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        zone, tz_name = ZoneInfo("UTC"), "UTC"
    local = moment.astimezone(zone)
    today = (now or datetime.now(zone)).astimezone(zone).date()
    stamp = local.strftime("%H:%M") if local.date() == today else local.strftime("%a %d %b %H:%M")
    return f"{stamp} {tz_name}"


def slack_date(moment: datetime, fallback: str) -> str:
    """A time every reader sees in their own timezone (Slack's date formatting)."""
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{escape(fallback)}>"
