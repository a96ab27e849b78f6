"""Safe text for Slack: user text is never markup."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters.

    With these escaped, `<!channel>`, `<@U123>` and `<https://x|y>` typed by a user show
    as text and notify nobody. See Slack's "Escaping text" in the formatting docs.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
