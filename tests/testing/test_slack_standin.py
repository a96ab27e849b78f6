"""The Slack stand-in answers a real slack_sdk.WebClient the way Slack does."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from app.testing.slack_standin import SlackStandIn

TOKEN = "xoxb-test-token"
APPROVAL_BLOCKS = [
    {"type": "header", "text": {"type": "plain_text", "text": "Access request"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "<@U0ALICE> wants *admin*"}},
    {
        "type": "actions",
        "block_id": "decision",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "value": "req-1",
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
            },
            {
                "type": "button",
                "action_id": "deny",
                "value": "req-1",
                "text": {"type": "plain_text", "text": "Deny"},
                "style": "danger",
            },
        ],
    },
]
MODAL = {
    "type": "modal",
    "callback_id": "request_access",
    "private_metadata": "flow=prod-db",
    "title": {"type": "plain_text", "text": "Request access"},
    "submit": {"type": "plain_text", "text": "Request"},
    "blocks": [
        {
            "type": "input",
            "block_id": "why",
            "label": {"type": "plain_text", "text": "Why?"},
            "element": {"type": "plain_text_input", "action_id": "text"},
        },
    ],
}


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn(token=TOKEN) as running:
        running.add_user(
            "U0ALICE",
            name="alice",
            email="alice@example.com",
            tz="America/Los_Angeles",
            tz_offset=-28800,
        )
        running.add_user(
            "U0BOB", name="bob", email="Bob@Example.com", tz="Asia/Kolkata", is_admin=True
        )
        running.add_usergroup("S0LEADS", ["U0BOB"])
        running.add_channel("C0REQUESTS", name="access-requests", members=["U0ALICE", "U0BOB"])
        yield running


@pytest.fixture
def client(standin: SlackStandIn) -> WebClient:
    return WebClient(token=TOKEN, base_url=standin.base_url)


def test_base_url_is_what_web_client_appends_method_names_to(standin: SlackStandIn) -> None:
    assert standin.base_url.startswith("http://127.0.0.1:")
    assert standin.base_url.endswith("/api/")


def test_auth_test_names_the_bot(client: WebClient) -> None:
    answer = client.auth_test()
    assert answer["user_id"] == "U0LATCHBOT"
    assert answer["bot_id"] == "B0LATCHBOT"
    assert answer["team_id"] == "T0LATCHKEY"
    assert answer["url"] == "https://latchkey-test.slack.com/"


def test_post_message_answers_like_slack_and_records_decoded_blocks(
    standin: SlackStandIn, client: WebClient
) -> None:
    answer = client.chat_postMessage(
        channel="C0REQUESTS", text="Access request", blocks=APPROVAL_BLOCKS
    )

    assert answer["ok"] is True
    assert answer["channel"] == "C0REQUESTS"
    assert answer["message"]["blocks"] == APPROVAL_BLOCKS
    assert answer["message"]["text"] == "Access request"
    seconds, micros = answer["ts"].split(".")
    assert seconds.isdigit() and len(micros) == 6
    [call] = standin.calls("chat.postMessage")
    assert call.args == {
        "channel": "C0REQUESTS",
        "text": "Access request",
        "blocks": APPROVAL_BLOCKS,
    }
    assert call.response["ts"] == answer["ts"]
    assert "token" not in call.args


def test_json_fields_in_form_bodies_are_decoded(standin: SlackStandIn, client: WebClient) -> None:
    # params= makes slack_sdk form-encode, with blocks as a JSON string inside the form.
    client.api_call(
        "chat.postMessage",
        params={"channel": "C0REQUESTS", "text": "hi", "blocks": json.dumps(APPROVAL_BLOCKS)},
    )
    assert standin.calls("chat.postMessage")[0].args["blocks"] == APPROVAL_BLOCKS


def test_get_with_query_string_and_token_field(standin: SlackStandIn) -> None:
    url = f"{standin.base_url}users.info?user=U0ALICE&token={TOKEN}"
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback http URL
        body = json.loads(answer.read())
    assert body["ok"] is True
    assert body["user"]["name"] == "alice"
    assert standin.calls("users.info")[0].args == {"user": "U0ALICE"}


def test_users_info_and_lookup_come_from_the_directory(client: WebClient) -> None:
    alice = client.users_info(user="U0ALICE")["user"]
    assert alice["profile"]["email"] == "alice@example.com"
    assert (alice["tz"], alice["tz_offset"], alice["is_admin"]) == (
        "America/Los_Angeles",
        -28800,
        False,
    )
    bob = client.users_lookupByEmail(email="bob@example.com")["user"]
    assert bob["id"] == "U0BOB"
    assert bob["tz_offset"] == 19800  # computed from zoneinfo: Kolkata has no DST
    assert bob["is_admin"] is True

    with pytest.raises(SlackApiError) as missing:
        client.users_info(user="U0NOBODY")
    assert missing.value.response["error"] == "user_not_found"
    with pytest.raises(SlackApiError) as unknown_email:
        client.users_lookupByEmail(email="nobody@example.com")
    assert unknown_email.value.response["error"] == "users_not_found"


def test_usergroup_members(client: WebClient) -> None:
    assert client.usergroups_users_list(usergroup="S0LEADS")["users"] == ["U0BOB"]
    with pytest.raises(SlackApiError) as missing:
        client.usergroups_users_list(usergroup="S0NONE")
    assert missing.value.response["error"] == "no_such_subteam"


def test_views_open_then_update_keeps_the_id_and_checks_the_hash(
    standin: SlackStandIn, client: WebClient
) -> None:
    opened = client.views_open(trigger_id="tr-1", view=MODAL)["view"]
    assert opened["id"].startswith("V")
    assert opened["callback_id"] == "request_access"
    assert opened["private_metadata"] == "flow=prod-db"
    assert opened["state"] == {"values": {}}
    assert standin.wait_for("views.open").args["view"] == MODAL

    updated = client.views_update(
        view_id=opened["id"], hash=opened["hash"], view={**MODAL, "private_metadata": "step=2"}
    )["view"]
    assert updated["id"] == opened["id"]
    assert updated["hash"] != opened["hash"]
    with pytest.raises(SlackApiError) as stale:
        client.views_update(view_id=opened["id"], hash=opened["hash"], view=MODAL)
    assert stale.value.response["error"] == "hash_conflict"
    with pytest.raises(SlackApiError) as gone:
        client.views_update(view_id="V0NOPE", view=MODAL)
    assert gone.value.response["error"] == "not_found"


def test_views_reject_what_slack_rejects(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as no_trigger:
        client.views_open(trigger_id="", view=MODAL)
    assert no_trigger.value.response["error"] == "invalid_arguments"
    long_title = {**MODAL, "title": {"type": "plain_text", "text": "x" * 25}}
    with pytest.raises(SlackApiError) as too_long:
        client.views_open(trigger_id="tr-2", view=long_title)
    assert "/view/title/text" in too_long.value.response["response_metadata"]["messages"][0]


def test_invalid_blocks_are_refused(client: WebClient) -> None:
    too_long = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="C0REQUESTS", text="t", blocks=too_long)
    assert refused.value.response["error"] == "invalid_blocks"
    with pytest.raises(SlackApiError) as empty, pytest.warns(UserWarning, match="`text`"):
        client.chat_postMessage(channel="C0REQUESTS")
    assert empty.value.response["error"] == "no_text"


def test_a_dm_posted_to_a_user_id_is_updated_through_its_d_channel(
    standin: SlackStandIn, client: WebClient
) -> None:
    posted = client.chat_postMessage(channel="U0ALICE", text="Your access is active")
    assert posted["channel"] == "DU0ALICE"
    assert client.conversations_open(users="U0ALICE")["channel"]["id"] == "DU0ALICE"

    updated = client.chat_update(channel=posted["channel"], ts=posted["ts"], text="Expired")
    assert (updated["ts"], updated["text"]) == (posted["ts"], "Expired")
    assert standin.message("DU0ALICE", posted["ts"])["text"] == "Expired"
    with pytest.raises(SlackApiError) as wrong_channel:
        client.chat_update(channel="U0ALICE", ts=posted["ts"], text="Expired")
    assert wrong_channel.value.response["error"] == "message_not_found"


def test_ephemeral_permalink_and_channel_info(client: WebClient) -> None:
    ephemeral = client.chat_postEphemeral(channel="C0REQUESTS", user="U0ALICE", text="Only you")
    assert ephemeral["message_ts"]
    posted = client.chat_postMessage(channel="C0REQUESTS", text="card")
    link = client.chat_getPermalink(channel="C0REQUESTS", message_ts=posted["ts"])["permalink"]
    assert link == (
        "https://latchkey-test.slack.com/archives/C0REQUESTS/p" + posted["ts"].replace(".", "")
    )
    assert client.conversations_info(channel="C0REQUESTS")["channel"]["name"] == "access-requests"
    with pytest.raises(SlackApiError) as missing:
        client.conversations_info(channel="C0NOPE")
    assert missing.value.response["error"] == "channel_not_found"


def test_other_methods_answer_ok_and_are_recorded(standin: SlackStandIn, client: WebClient) -> None:
    assert client.reactions_add(channel="C0REQUESTS", name="white_check_mark", timestamp="1.2")[
        "ok"
    ]
    assert standin.calls("reactions.add")[0].args["name"] == "white_check_mark"


def test_wrong_or_missing_token_is_refused(standin: SlackStandIn) -> None:
    with pytest.raises(SlackApiError) as wrong:
        WebClient(token="xoxb-wrong", base_url=standin.base_url).auth_test()
    assert wrong.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as missing:
        WebClient(base_url=standin.base_url).auth_test()
    assert missing.value.response["error"] == "not_authed"
    assert [c.response["error"] for c in standin.calls("auth.test")] == [
        "invalid_auth",
        "not_authed",
    ]


def test_rate_limit_is_retried_by_slack_sdk(standin: SlackStandIn) -> None:
    standin.fail_next("chat.postMessage", retry_after=0)
    client = WebClient(
        token=TOKEN,
        base_url=standin.base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )

    assert client.chat_postMessage(channel="C0REQUESTS", text="card")["ok"] is True

    first, second = standin.calls("chat.postMessage")
    assert (first.rate_limited, first.status, first.response["error"]) == (True, 429, "ratelimited")
    assert (second.rate_limited, second.ok) == (False, True)
    assert standin.wait_for("chat.postMessage") is second  # only accepted calls count


def test_rate_limit_without_retry_surfaces_429_and_retry_after(
    standin: SlackStandIn, client: WebClient
) -> None:
    standin.fail_next("users.info", retry_after=7, times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as limited:
            client.users_info(user="U0ALICE")
        assert limited.value.response.status_code == 429
        assert limited.value.response.headers["Retry-After"] == "7"
    assert client.users_info(user="U0ALICE")["ok"] is True


def test_wait_for_sees_calls_made_later_by_another_thread(
    standin: SlackStandIn, client: WebClient
) -> None:
    def post_later() -> None:
        time.sleep(0.1)
        client.chat_postMessage(channel="C0REQUESTS", text="first")
        client.chat_postMessage(channel="C0REQUESTS", text="second")

    threading.Thread(target=post_later).start()
    call = standin.wait_for("chat.postMessage", lambda args: args["text"] == "second", timeout=5)
    assert call.args["text"] == "second"


def test_wait_for_timeout_lists_what_was_recorded(standin: SlackStandIn, client: WebClient) -> None:
    client.chat_postMessage(channel="C0REQUESTS", text="something else")
    with pytest.raises(TimeoutError, match="something else"):
        standin.wait_for("chat.postMessage", lambda args: args["text"] == "card", timeout=0.2)


def test_clear_forgets_calls(standin: SlackStandIn, client: WebClient) -> None:
    client.auth_test()
    standin.clear()
    assert standin.calls() == []


def test_message_ts_is_unique_across_threads(standin: SlackStandIn, client: WebClient) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        posted = list(
            pool.map(
                lambda n: client.chat_postMessage(channel="C0REQUESTS", text=str(n))["ts"],
                range(40),
            )
        )
        direct = list(pool.map(lambda _: standin.next_ts(), range(500)))
    assert len(set(posted + direct)) == len(posted) + len(direct)


def test_runs_standalone_and_prints_its_base_url() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "app.testing.slack_standin", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert WebClient(token=TOKEN, base_url=base_url).auth_test()["ok"] is True
    finally:
        process.terminate()
        process.wait(timeout=5)


def test_a_refused_call_does_not_use_up_an_injected_fault(standin: SlackStandIn) -> None:
    standin.fail_next("auth.test")
    with pytest.raises(SlackApiError):
        WebClient(token="xoxb-wrong", base_url=standin.base_url).auth_test()
    with pytest.raises(SlackApiError) as limited:
        WebClient(token=TOKEN, base_url=standin.base_url).auth_test()
    assert limited.value.response.status_code == 429


def test_ephemeral_only_reaches_members_of_the_channel(
    standin: SlackStandIn, client: WebClient
) -> None:
    standin.add_user("U0DEE", name="dee", email="dee@example.com")
    for channel, error in (("C0REQUESTS", "user_not_in_channel"), ("C0NOPE", "channel_not_found")):
        with pytest.raises(SlackApiError) as refused:
            client.chat_postEphemeral(channel=channel, user="U0DEE", text="Only you")
        assert refused.value.response["error"] == error
    standin.join("C0REQUESTS", "U0DEE")
    assert client.chat_postEphemeral(channel="C0REQUESTS", user="U0DEE", text="Now you")["ok"]
    standin.leave("C0REQUESTS", "U0DEE")
    assert standin.members("C0REQUESTS") == {"U0ALICE", "U0BOB"}


def test_response_url_records_what_the_person_was_shown(standin: SlackStandIn) -> None:
    url = standin.response_url("U0DEE", "C0REQUESTS")
    assert url.startswith(standin.base_url.removesuffix("api/") + "response/")

    answer = WebhookClient(url).send(
        text=":no_entry: Not yours", response_type="ephemeral", replace_original=False
    )

    assert answer.status_code == 200
    [shown] = standin.responses("U0DEE")
    assert shown.method == "response_url" and shown.ok
    assert shown.args == {
        "text": ":no_entry: Not yours",
        "response_type": "ephemeral",
        "replace_original": False,
        "user": "U0DEE",
        "channel": "C0REQUESTS",
    }
    assert standin.responses("U0ALICE") == []


def test_response_url_takes_five_posts_within_thirty_minutes() -> None:
    now = [1_000_000.0]
    with SlackStandIn(token=TOKEN, clock=lambda: now[0]) as standin:
        busy, late = standin.response_url("U0DEE"), standin.response_url("U0DEE")
        statuses = [WebhookClient(busy).send(text=str(n)).status_code for n in range(6)]
        assert statuses == [200] * 5 + [404]
        assert standin.responses()[-1].response["error"] == "used_url"

        now[0] += 30 * 60 - 1
        assert WebhookClient(late).send(text="in time").status_code == 200
        now[0] += 2
        expired = WebhookClient(late).send(text="too late")
        assert (expired.status_code, json.loads(expired.body)["error"]) == (404, "expired_url")
        unknown = WebhookClient(standin.base_url.removesuffix("api/") + "response/nope")
        assert unknown.send(text="x").status_code == 404
        assert [c.args["text"] for c in standin.responses("U0DEE") if c.ok] == [
            *map(str, range(5)),
            "in time",
        ]


def test_a_message_to_a_channel_the_bot_is_not_in_is_refused(
    standin: SlackStandIn, client: WebClient
) -> None:
    standin.add_channel("C0NOTIN", name="elsewhere", bot_member=False)
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel="C0NOTIN", text="a card")
    assert refused.value.response["error"] == "not_in_channel"
    assert client.conversations_info(channel="C0NOTIN")["channel"]["is_member"] is False
    assert client.chat_postMessage(channel="C0REQUESTS", text="a card")["ok"]
