"""App Home: what I hold, what I asked for and what waits for my decision, from the DB."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from app.identity_links.offer import identity_link_url, link_modal
from app.identity_links.store import unlink
from app.passkeys.approval import setup_link
from app.runtime import Runtime
from app.slack import ids
from app.slack.blocks.home import passkey_modal
from app.slack.home import build_home
from app.slack.listeners.errors import Refusal, guarded


def register(app: App, rt: Runtime) -> None:
    @app.event("app_home_opened")
    @guarded
    def publish_home(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        event = body["event"]
        if event.get("tab") == "home":
            client.views_publish(user_id=event["user"], view=build_home(rt, event["user"]))

    @app.action(ids.PASSKEY_SETUP_ACTION)
    @guarded
    def passkey_setup(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        if not rt.settings.public_url:
            raise Refusal("Passkeys are not available here: LATCHKEY_PUBLIC_URL is not set.")
        url = setup_link(rt, body["user"]["id"])
        minutes = max(1, round(rt.settings.link_seconds / 60))
        client.views_open(trigger_id=body["trigger_id"], view=passkey_modal(url, minutes))

    @app.action(ids.PASSKEY_OPEN_ACTION)
    def passkey_page_opened(ack: Ack) -> None:
        ack()  # the browser opened the URL; nothing to do here

    @app.action(ids.IDENTITY_LINK_ACTION)
    @guarded
    def identity_link(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        if rt.settings.oidc_problem:
            raise Refusal(f"Identity links are not set up here: {rt.settings.oidc_problem}.")
        url = identity_link_url(rt, body["user"]["id"])
        client.views_open(trigger_id=body["trigger_id"], view=link_modal(rt, url))

    @app.action(ids.IDENTITY_OPEN_ACTION)
    def identity_page_opened(ack: Ack) -> None:
        ack()

    @app.action(ids.IDENTITY_UNLINK_ACTION)
    @guarded
    def identity_unlink(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        user_id = body["user"]["id"]
        with rt.db.session() as session:
            unlink(session, rt.audit, user_id, actor=user_id)
        client.views_publish(user_id=user_id, view=build_home(rt, user_id))
