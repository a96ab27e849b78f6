"""Where a person meets identity links in Slack: a fresh single-use link to sign in with
(App Home's button opens it in a modal; a refused request form sends it by DM), and
App Home's line saying whom they are linked to."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient

from app import weblinks
from app.runtime import Runtime
from app.slack import ids
from app.slack.blocks.text import mrkdwn, plain

log = logging.getLogger(__name__)


def identity_link_url(rt: Runtime, user_id: str) -> str:
    return weblinks.new_link_url(
        rt, purpose=weblinks.IDENTITY, path="identity/link", user_id=user_id
    )


def link_button(url: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": ids.IDENTITY_OPEN_ACTION,
        "text": plain("Link your identity"),
        "url": url,
        "style": "primary",
    }


def _minutes(rt: Runtime) -> int:
    return max(1, round(rt.settings.link_seconds / 60))


def link_blocks(rt: Runtime, url: str, why: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "section",
            "text": mrkdwn(
                f"{why} Sign in with your company account to link it to your Slack user: "
                f"the link works once, only for you, for {_minutes(rt)} min."
            ),
        },
        {"type": "actions", "elements": [link_button(url)]},
    ]


def offer_identity_link(rt: Runtime, client: WebClient, user_id: str) -> None:
    """A DM with the button, for someone a verified-identity flow just refused."""
    if rt.settings.oidc_problem:
        return  # flows check refuses such flows; nothing to offer
    try:
        text = "This flow grants only to a verified identity, and yours is not linked yet."
        url = identity_link_url(rt, user_id)
        client.chat_postMessage(
            channel=user_id,
            text=f"{text} Link your identity: {url}",
            blocks=link_blocks(rt, url, text),
        )
    except Exception:  # the form already said what to do; the DM is a shortcut
        log.warning("could not send %s the identity link button", user_id)


def link_modal(rt: Runtime, url: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "title": plain("Link your identity"),
        "close": plain("Close"),
        "blocks": link_blocks(
            rt,
            url,
            "Some flows grant access only to your verified company identity, never to the "
            "email on your Slack profile.",
        ),
    }
