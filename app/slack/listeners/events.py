"""What Slack tells us changed: people (user_change) and user groups (subteam_*).

Every such event bumps a counter in Redis that every process's cache keys carry, so the
next decision anywhere asks Slack afresh (app.slack.directory). An account that may no
longer take part (deactivated, turned guest, …) loses its live grants at once and its
pending requests are denied, each audited.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from app.accounts import Account
from app.runtime import Runtime
from app.slack.directory import SlackChanges, group_key, user_key
from app.slack.listeners.errors import guarded
from app.withdrawal import withdraw_access

log = logging.getLogger(__name__)


def user_changed(rt: Runtime, user: dict[str, Any]) -> None:
    account = Account.from_slack(user)
    if not account.id:
        return
    SlackChanges(rt.redis).bump([user_key(account.id)])
    done = withdraw_access(rt, account)
    if done["revoked"] or done["denied"]:
        log.info(
            "account change of %s: %d grants revoked, %d requests denied",
            account.id,
            len(done["revoked"]),
            len(done["denied"]),
        )


def register(app: App, rt: Runtime) -> None:
    @app.event("user_change")
    @guarded
    def on_user_change(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        user = body["event"].get("user")
        if isinstance(user, dict):
            user_changed(rt, user)

    @app.event("subteam_members_changed")
    @guarded
    def on_members_changed(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        group = body["event"].get("subteam_id")
        if group:
            SlackChanges(rt.redis).bump([group_key(str(group))])

    @app.event("subteam_updated")
    @guarded
    def on_group_updated(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        group = (body["event"].get("subteam") or {}).get("id")
        if group:
            SlackChanges(rt.redis).bump([group_key(str(group))])
