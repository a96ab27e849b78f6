"""Play a person in Slack: build the requests Slack sends to `/slack/events`, signed.

Bodies follow what Slack really sends: slash commands as a form, interactions as a form
with one `payload` field holding JSON. Only the standard library is used, so the demo can
run without test dependencies.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

Payload = dict[str, Any]
FORM = "application/x-www-form-urlencoded"
# Issues a response_url for an interaction of (user id, channel id or None), e.g.
# SlackStandIn.response_url: the app's replies then land where a test can read them.
ResponseUrls = Callable[[str, str | None], str]


def sign(body: str, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack adds to a request: timestamp and v0 HMAC-SHA256 signature."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": FORM,
    }


def plain_text_value(text: str) -> Payload:
    """State value of a plain_text_input, as in view_submission `state.values`."""
    return {"type": "plain_text_input", "value": text}


def static_select_value(value: str, text: str | None = None) -> Payload:
    """State value of a static_select with one option chosen."""
    option = {"text": {"type": "plain_text", "text": text or value, "emoji": True}, "value": value}
    return {"type": "static_select", "selected_option": option}


@dataclass(frozen=True)
class Response:
    """What the app answered: Bolt's ack body (often empty) and the HTTP status."""

    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class SlackDriver:
    """Sends signed Slack requests to a Bolt app's events URL, as `user_id` would cause."""

    def __init__(
        self,
        events_url: str,
        signing_secret: str,
        *,
        team_id: str = "T0LATCHKEY",
        team_domain: str = "latchkey-test",
        api_app_id: str = "A0LATCHKEY",
        user_names: Mapping[str, str] | None = None,
        timeout: float = 10,
        clock: Callable[[], float] = time.time,
        response_urls: ResponseUrls | None = None,
    ) -> None:
        if urlsplit(events_url).scheme not in ("http", "https"):
            raise ValueError(f"events_url must be an http(s) URL, got {events_url!r}")
        self.events_url, self.signing_secret = events_url, signing_secret
        self.team_id, self.team_domain, self.api_app_id = team_id, team_domain, api_app_id
        self.user_names = dict(user_names or {})
        self.timeout, self._clock = timeout, clock
        # Without an issuer, payloads carry inert hooks.slack.com-shaped URLs.
        self.response_urls = response_urls
        self._counter = itertools.count(1)
        self._counter_lock = threading.Lock()
        self.last_trigger_id: str | None = None

    # ---- transport -------------------------------------------------------------------
    def send_raw(self, body: str, headers: Mapping[str, str]) -> Response:
        """POST exactly this body and these headers; never raises on an HTTP error status."""
        # The scheme was checked in __init__, so urllib cannot be steered to file: URLs.
        request = urllib.request.Request(
            self.events_url, data=body.encode("utf-8"), headers=dict(headers), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return Response(answer.status, answer.read().decode("utf-8"), dict(answer.headers))
        except urllib.error.HTTPError as error:
            return Response(error.code, error.read().decode("utf-8"), dict(error.headers))

    def post(
        self,
        body: str,
        *,
        timestamp: int | None = None,
        secret: str | None = None,
        headers_override: Mapping[str, str | None] | None = None,
    ) -> Response:
        """Sign and send `body`; overrides let tests send what an attacker would.

        `timestamp` signs with another time (stale requests), `secret` with another key,
        and `headers_override` replaces headers, a value of None removing that header.
        """
        ts = int(self._clock()) if timestamp is None else timestamp
        headers: dict[str, str] = sign(body, secret or self.signing_secret, ts)
        for name, value in (headers_override or {}).items():
            headers.pop(name, None)
            if value is not None:
                headers[name] = value
        return self.send_raw(body, headers)

    # ---- what a person does ------------------------------------------------------------
    def slash_command(
        self,
        user_id: str,
        text: str = "",
        command: str = "/access",
        channel_id: str = "C0REQUESTS",
        *,
        channel_name: str = "access-requests",
        trigger_id: str | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> Response:
        """Type `command text` in a channel."""
        fields = {
            "token": "legacy-verification-token",  # deprecated by Slack; Bolt ignores it
            "team_id": self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": self._name(user_id),
            "command": command,
            "text": text,
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": self._response_url("commands", user_id, channel_id),
            "trigger_id": trigger_id or self._trigger_id(),
        }
        return self.post(urlencode(fields), timestamp=timestamp, secret=secret)

    def block_action(
        self,
        user_id: str,
        action_id: str,
        value: str,
        *,
        block_id: str = "b",
        channel_id: str | None = None,
        message_ts: str | None = None,
        message: Payload | None = None,
        container: Payload | None = None,
        view: Payload | None = None,
        action_type: str = "button",
        action_text: str | None = None,
        trigger_id: str | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> Response:
        """Click a button (or choose in a select) on a message or in a view.

        `message` may carry the message as the bot posted it (blocks, text): Slack sends
        the whole message back with the click, and handlers may read it.
        """
        action: Payload = {
            "action_id": action_id,
            "block_id": block_id,
            "type": action_type,
            "action_ts": self._action_ts(),
        }
        if action_type == "static_select":
            action["selected_option"] = static_select_value(value, action_text)["selected_option"]
        else:
            action["text"] = {"type": "plain_text", "text": action_text or value, "emoji": True}
            action["value"] = value
        payload = self._envelope("block_actions", user_id, trigger_id)
        if container is None and view is not None:
            container = {"type": "view", "view_id": view.get("id", "")}
        elif container is None and message_ts is not None:
            container = {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel_id,
                "is_ephemeral": False,
            }
        payload["container"] = container or {}
        if channel_id is not None:
            payload["channel"] = {"id": channel_id, "name": ""}
        if message_ts is not None or message is not None:
            ts = message_ts or (message or {}).get("ts")
            payload["message"] = {"type": "message", "ts": ts, "text": "", **(message or {})}
            payload["response_url"] = self._response_url("actions", user_id, channel_id)
        if view is not None:
            payload["view"] = self._view(view, (view.get("state") or {}).get("values", {}))
        payload["state"] = {"values": {}}
        payload["actions"] = [action]
        return self._send_payload(payload, timestamp, secret)

    def view_submission(
        self,
        user_id: str,
        view: Payload,
        values: Payload,
        *,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> Response:
        """Press Submit on `view` (as opened or as views.open answered) with `values`.

        `values` is `{block_id: {action_id: state_value}}`, e.g. built with
        `plain_text_value` and `static_select_value`.
        """
        payload = self._envelope("view_submission", user_id, None)
        payload["view"] = self._view(view, values)
        payload["response_urls"] = []
        return self._send_payload(payload, timestamp, secret)

    def app_home_opened(self, user_id: str, tab: str = "home") -> Response:
        """Open the app's Home tab: an Events API callback, sent as JSON like Slack sends it."""
        n = self._next()
        body = {
            "token": "legacy-verification-token",
            "team_id": self.team_id,
            "api_app_id": self.api_app_id,
            "type": "event_callback",
            "event_id": f"Ev0DRIVER{n:04d}",
            "event_time": int(self._clock()),
            "event": {
                "type": "app_home_opened",
                "user": user_id,
                "channel": f"D0{user_id[1:]}",
                "tab": tab,
                "event_ts": self._action_ts(),
            },
        }
        return self.post(json.dumps(body), headers_override={"Content-Type": "application/json"})

    def view_closed(self, user_id: str, view: Payload) -> Response:
        """Press Cancel on a view opened with notify_on_close."""
        payload = self._envelope("view_closed", user_id, None)
        payload.pop("trigger_id")
        payload["view"], payload["is_cleared"] = self._view(view, {}), False
        return self._send_payload(payload, None, None)

    # ---- building blocks -------------------------------------------------------------
    def _next(self) -> int:
        with self._counter_lock:
            return next(self._counter)

    def _trigger_id(self) -> str:
        self.last_trigger_id = f"tr-{self._next()}"
        return self.last_trigger_id

    def _response_url(self, kind: str, user_id: str, channel_id: str | None) -> str:
        if self.response_urls is not None:
            return self.response_urls(user_id, channel_id)
        return f"https://hooks.slack.com/{kind}/{self.team_id}/{self._next()}/fakeResponseSecret"

    def _action_ts(self) -> str:
        return f"{self._clock():.6f}"

    def _name(self, user_id: str) -> str:
        return self.user_names.get(user_id, user_id.lower())

    def _envelope(self, kind: str, user_id: str, trigger_id: str | None) -> Payload:
        return {
            "type": kind,
            "user": {
                "id": user_id,
                "username": self._name(user_id),
                "name": self._name(user_id),
                "team_id": self.team_id,
            },
            "api_app_id": self.api_app_id,
            "token": "legacy-verification-token",
            "trigger_id": trigger_id or self._trigger_id(),
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
        }

    def _view(self, view: Payload, values: Payload) -> Payload:
        view_id = view.get("id") or f"V0DRIVER{self._next():02d}"
        return {
            "id": view_id,
            "team_id": self.team_id,
            "type": "modal",
            "blocks": [],
            "private_metadata": "",
            "callback_id": "",
            "hash": f"{int(self._clock())}.driver",
            "clear_on_close": False,
            "notify_on_close": False,
            "close": None,
            "submit": None,
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": self.api_app_id,
            "external_id": "",
            "app_installed_team_id": self.team_id,
            "bot_id": "B0LATCHBOT",
            **view,
            "state": {"values": values},
        }

    def _send_payload(
        self, payload: Payload, timestamp: int | None, secret: str | None
    ) -> Response:
        body = urlencode({"payload": json.dumps(payload)})
        return self.post(body, timestamp=timestamp, secret=secret)
