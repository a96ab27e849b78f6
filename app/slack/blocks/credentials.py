"""The modal that shows a holder the login made for their grant (issue 18.2).

A modal is private to the person who opened it and is not kept in any conversation's
history, which is why the password is shown here and never in a message.
"""

from __future__ import annotations

from typing import Any

from app.slack.blocks.text import escape, mrkdwn, plain


def credentials_modal(target: str, until: str, creds: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "modal",
        "title": plain("Credentials"),
        "close": plain("Close"),
        "blocks": [
            {
                "type": "section",
                "text": mrkdwn(
                    f"Your login for *{escape(target)}*, until *{escape(until)}*. Only you "
                    "see this; it is not kept in Slack. Latchkey drops the login at the end "
                    "and ends its sessions."
                ),
            },
            {
                "type": "section",
                "fields": [
                    mrkdwn(f"*Login*\n`{creds['login']}`"),
                    mrkdwn(f"*Password*\n`{creds['password']}`"),
                ],
            },
            {
                "type": "section",
                "text": mrkdwn(f"*Connection string*\n```{creds['connection']}```"),
            },
        ],
    }
