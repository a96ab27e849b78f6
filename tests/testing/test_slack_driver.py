"""The driver's requests are signed and shaped so a real Bolt app accepts and routes them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from app.testing.slack_driver import (
    SlackDriver,
    plain_text_value,
    sign,
    static_select_value,
)
from app.testing.slack_standin import SlackStandIn

SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"
REQUEST_MODAL = {
    "type": "modal",
    "callback_id": "request_access",
    "private_metadata": "flow=prod-db",
    "title": {"type": "plain_text", "text": "Request access"},
    "submit": {"type": "plain_text", "text": "Request"},
    "blocks": [
        {
            "type": "input",
            "block_id": "role",
            "label": {"type": "plain_text", "text": "Role"},
            "element": {
                "type": "static_select",
                "action_id": "choice",
                "options": [{"text": {"type": "plain_text", "text": "Admin"}, "value": "admin"}],
            },
        },
        {
            "type": "input",
            "block_id": "why",
            "label": {"type": "plain_text", "text": "Why?"},
            "element": {"type": "plain_text_input", "action_id": "text"},
        },
    ],
}


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class BoltUnderTest:
    """A tiny Bolt app on a real HTTP port, remembering the bodies its listeners got."""

    standin: SlackStandIn
    events_url: str
    seen: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _build_app(client: WebClient, seen: dict[str, list[dict[str, Any]]]) -> App:
    # Bolt calls auth.test on start-up through this client, i.e. against the stand-in.
    app = App(signing_secret=SECRET, client=client)

    @app.command("/access")
    def open_request_modal(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        seen.setdefault("command", []).append(body)
        client.views_open(trigger_id=body["trigger_id"], view=REQUEST_MODAL)

    @app.action("approve")
    def approve(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        seen.setdefault("approve", []).append(body)
        client.chat_update(
            channel=body["channel"]["id"],
            ts=body["message"]["ts"],
            text=f"Approved by <@{body['user']['id']}>",
        )

    @app.action("pick_role")
    def pick_role(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        seen.setdefault("pick_role", []).append(body)

    @app.view("request_access")
    def submit_request(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        seen.setdefault("submit", []).append(body)
        why = view["state"]["values"]["why"]["text"]["value"]
        if not why:
            ack(response_action="errors", errors={"why": "Say why you need access."})
        else:
            ack()

    return app


@pytest.fixture
def bolt() -> Iterator[BoltUnderTest]:
    with SlackStandIn(token=TOKEN) as standin:
        seen: dict[str, list[dict[str, Any]]] = {}
        app = _build_app(WebClient(token=TOKEN, base_url=standin.base_url), seen)
        server: WSGIServer = make_server(
            "127.0.0.1", 0, SlackRequestHandler(app), handler_class=_QuietHandler
        )
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield BoltUnderTest(
                standin, f"http://127.0.0.1:{server.server_port}/slack/events", seen
            )
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture
def driver(bolt: BoltUnderTest) -> SlackDriver:
    return SlackDriver(bolt.events_url, SECRET, user_names={"U0ALICE": "alice"})


def test_sign_is_what_slack_sdk_verifies() -> None:
    body = "token=x&command=%2Faccess&text=prod-db+admin"
    headers = sign(body, SECRET)
    timestamp, signature = headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]

    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert signature.startswith("v0=")
    assert SignatureVerifier(SECRET).is_valid(body, timestamp, signature)
    assert not SignatureVerifier(SECRET).is_valid(body + "&x=1", timestamp, signature)
    assert not SignatureVerifier("another-secret").is_valid(body, timestamp, signature)


def test_sign_uses_the_given_timestamp() -> None:
    headers = sign("a=b", SECRET, timestamp=1_700_000_000)
    assert headers["X-Slack-Request-Timestamp"] == "1700000000"
    verifier = SignatureVerifier(SECRET, clock=_FixedClock(1_700_000_000))
    assert verifier.is_valid("a=b", "1700000000", headers["X-Slack-Signature"])


class _FixedClock:
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def test_signed_slash_command_reaches_the_command_listener(
    bolt: BoltUnderTest, driver: SlackDriver
) -> None:
    answer = driver.slash_command("U0ALICE", "prod-db admin")

    assert answer.status == 200
    [body] = bolt.seen["command"]
    assert (body["command"], body["text"], body["user_id"], body["user_name"]) == (
        "/access",
        "prod-db admin",
        "U0ALICE",
        "alice",
    )
    assert (body["channel_id"], body["team_id"]) == ("C0REQUESTS", "T0LATCHKEY")
    assert body["response_url"].startswith("https://hooks.slack.com/commands/")
    assert body["trigger_id"] == driver.last_trigger_id
    opened = bolt.standin.wait_for(
        "views.open", lambda args: args["trigger_id"] == driver.last_trigger_id, timeout=5
    )
    assert opened.args["view"]["callback_id"] == "request_access"


def test_trigger_ids_are_unique(driver: SlackDriver) -> None:
    driver.slash_command("U0ALICE")
    first = driver.last_trigger_id
    driver.slash_command("U0ALICE")
    assert driver.last_trigger_id != first


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param({"secret": "not-the-secret"}, id="wrong-secret"),
        pytest.param({"timestamp": int(time.time()) - 6 * 60}, id="stale-timestamp"),
    ],
)
def test_badly_signed_command_is_refused(
    bolt: BoltUnderTest, driver: SlackDriver, tamper: dict[str, Any]
) -> None:
    assert driver.slash_command("U0ALICE", "prod-db admin", **tamper).status == 401
    assert "command" not in bolt.seen


@pytest.mark.parametrize("header", ["X-Slack-Signature", "X-Slack-Request-Timestamp"])
def test_missing_signature_header_is_refused(
    bolt: BoltUnderTest, driver: SlackDriver, header: str
) -> None:
    body = "command=%2Faccess&user_id=U0ALICE&text="
    assert driver.post(body, headers_override={header: None}).status == 401
    assert "command" not in bolt.seen


def test_tampered_body_is_refused(bolt: BoltUnderTest, driver: SlackDriver) -> None:
    signed_for = "command=%2Faccess&user_id=U0ALICE&text=read"
    headers = sign(signed_for, SECRET)
    answer = driver.send_raw(signed_for.replace("read", "admin"), headers)
    assert answer.status == 401
    assert "command" not in bolt.seen


def test_http_errors_are_returned_not_raised(bolt: BoltUnderTest) -> None:
    lost = SlackDriver(bolt.events_url.replace("/slack/events", "/nowhere"), SECRET)
    assert lost.slash_command("U0ALICE").status == 404


def test_button_click_on_a_posted_message(bolt: BoltUnderTest, driver: SlackDriver) -> None:
    client = WebClient(token=TOKEN, base_url=bolt.standin.base_url)
    card = client.chat_postMessage(
        channel="C0REQUESTS",
        text="Access request",
        blocks=[
            {
                "type": "actions",
                "block_id": "decision",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "approve",
                        "value": "req-1",
                        "text": {"type": "plain_text", "text": "Approve"},
                    }
                ],
            }
        ],
    )

    answer = driver.block_action(
        "U0BOB",
        "approve",
        "req-1",
        block_id="decision",
        channel_id=card["channel"],
        message_ts=card["ts"],
        message=card["message"],
        action_text="Approve",
    )

    assert answer.status == 200
    [body] = bolt.seen["approve"]
    assert body["type"] == "block_actions"
    assert body["actions"][0] | {"action_ts": "-"} == {
        "action_id": "approve",
        "block_id": "decision",
        "type": "button",
        "value": "req-1",
        "text": {"type": "plain_text", "text": "Approve", "emoji": True},
        "action_ts": "-",
    }
    assert body["container"] == {
        "type": "message",
        "message_ts": card["ts"],
        "channel_id": "C0REQUESTS",
        "is_ephemeral": False,
    }
    assert body["message"]["blocks"] == card["message"]["blocks"]
    assert body["response_url"].startswith("https://hooks.slack.com/actions/")
    updated = bolt.standin.wait_for("chat.update", timeout=5)
    assert updated.args["ts"] == card["ts"]
    assert bolt.standin.message("C0REQUESTS", card["ts"])["text"] == "Approved by <@U0BOB>"


def test_select_in_an_open_modal(bolt: BoltUnderTest, driver: SlackDriver) -> None:
    view = {**REQUEST_MODAL, "id": "V0OPEN", "hash": "1.x"}
    answer = driver.block_action(
        "U0ALICE",
        "pick_role",
        "admin",
        block_id="role",
        view=view,
        action_type="static_select",
        action_text="Admin",
    )

    assert answer.status == 200
    [body] = bolt.seen["pick_role"]
    assert body["container"] == {"type": "view", "view_id": "V0OPEN"}
    assert body["view"]["callback_id"] == "request_access"
    assert body["actions"][0]["selected_option"]["value"] == "admin"
    assert "response_url" not in body


def test_view_submission_carries_the_opened_view_and_values(
    bolt: BoltUnderTest, driver: SlackDriver
) -> None:
    driver.slash_command("U0ALICE", "prod-db")
    opened = bolt.standin.wait_for("views.open", timeout=5).response["view"]
    values = {
        "role": {"choice": static_select_value("admin", "Admin")},
        "why": {"text": plain_text_value("")},
    }

    refused = driver.view_submission("U0ALICE", opened, values)
    assert refused.status == 200
    assert refused.json() == {
        "response_action": "errors",
        "errors": {"why": "Say why you need access."},
    }

    values["why"] = {"text": plain_text_value("INC-42: restore a table")}
    accepted = driver.view_submission("U0ALICE", opened, values)
    assert (accepted.status, accepted.body) == (200, "")

    submitted = bolt.seen["submit"][-1]
    assert submitted["type"] == "view_submission"
    assert submitted["view"]["id"] == opened["id"]
    assert submitted["view"]["private_metadata"] == "flow=prod-db"
    assert submitted["view"]["state"]["values"]["role"]["choice"]["selected_option"] == {
        "text": {"type": "plain_text", "text": "Admin", "emoji": True},
        "value": "admin",
    }


def test_interaction_body_is_one_json_payload_field() -> None:
    driver = SlackDriver("http://127.0.0.1:9/slack/events", SECRET, user_names={"U0ALICE": "alice"})
    sent: list[str] = []
    driver.send_raw = lambda body, headers: sent.append(body)  # type: ignore[method-assign]
    driver.block_action("U0ALICE", "approve", "req-1")
    [payload] = parse_qs(sent[0])["payload"]
    assert json.loads(payload)["user"] == {
        "id": "U0ALICE",
        "username": "alice",
        "name": "alice",
        "team_id": "T0LATCHKEY",
    }


def test_clicks_and_commands_carry_response_urls_the_standin_serves(
    bolt: BoltUnderTest,
) -> None:
    driver = SlackDriver(bolt.events_url, SECRET, response_urls=bolt.standin.response_url)
    card = WebClient(token=TOKEN, base_url=bolt.standin.base_url).chat_postMessage(
        channel="C0REQUESTS", text="card"
    )
    driver.block_action("U0DEE", "approve", "req-1", channel_id="C0REQUESTS", message_ts=card["ts"])
    driver.slash_command("U0ALICE", channel_id="C0OTHER")

    click, command = bolt.seen["approve"][0], bolt.seen["command"][0]
    for body, user, channel in ((click, "U0DEE", "C0REQUESTS"), (command, "U0ALICE", "C0OTHER")):
        assert body["response_url"].startswith(bolt.standin.base_url.removesuffix("api/"))
        assert WebhookClient(body["response_url"]).send(text=f"hi {user}").status_code == 200
        [shown] = bolt.standin.responses(user)
        assert (shown.args["channel"], shown.args["text"]) == (channel, f"hi {user}")
