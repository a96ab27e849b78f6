"""Buttons and modals, routed by their id: one Bolt listener for every block action and one
for every view submission, each looking its handler up in a dict.

Bolt tries the listeners of an app in the order they were registered, and each listener's
matcher first builds Bolt's whole set of listener arguments (a Say, a Respond and a dozen
views of the payload) before it compares an id. With a listener per button an Approve
click paid for five of those before its own, and a Revoke for sixteen: at 50 concurrent
clicks that was the largest part of the web's CPU per click after Bolt's own parse
(issue 14; bench/click_ack.py). Here every click pays for one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

Handler = Callable[[Ack, dict[str, Any], WebClient], None]


class Routes:
    """What each action_id and each view's callback_id runs; `register` hands it to Bolt."""

    def __init__(self) -> None:
        self.actions: dict[str, Handler] = {}
        self.views: dict[str, Handler] = {}

    def action(self, action_id: str) -> Callable[[Handler], Handler]:
        return self._add(self.actions, action_id)

    def view(self, callback_id: str) -> Callable[[Handler], Handler]:
        return self._add(self.views, callback_id)

    @staticmethod
    def _add(table: dict[str, Handler], key: str) -> Callable[[Handler], Handler]:
        def add(handler: Handler) -> Handler:
            if key in table:
                raise ValueError(f"{key!r} is routed twice")
            table[key] = handler
            return handler

        return add

    def register(self, app: App) -> None:
        """Two Bolt listeners. Their patterns name exactly the routed ids, so anything else
        (a button of an older release, a forged id) stays unhandled as before: Bolt answers
        404 and logs it."""
        actions, views = dict(self.actions), dict(self.views)

        @app.action(_exactly(actions))
        def route_action(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
            actions[body["actions"][0]["action_id"]](ack, body, client)

        @app.view(_exactly(views))
        def route_view(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
            views[body["view"]["callback_id"]](ack, body, client)


def _exactly(table: dict[str, Handler]) -> re.Pattern[str]:
    return re.compile("^(?:" + "|".join(re.escape(key) for key in table) + ")$")
