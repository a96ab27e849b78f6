"""Our Slack client against the stand-in: short 429s are waited out by the SDK's handler,
long ones go back to the caller (a Celery retry with that countdown, never a slept slot)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk.errors import SlackApiError

from app.config import Settings
from app.runtime import build_slack_client
from app.testing.slack_standin import SlackStandIn
from app.worker.tasks import _retry_after

TOKEN = "xoxb-retry-test"


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    slack = SlackStandIn(token=TOKEN)
    slack.start()
    yield slack
    slack.stop()


def _client(standin: SlackStandIn):  # type: ignore[no-untyped-def]
    return build_slack_client(Settings(slack_bot_token=TOKEN, slack_api_url=standin.base_url))


def test_short_rate_limit_is_retried_by_the_sdk(standin: SlackStandIn) -> None:
    standin.fail_next("chat.postMessage", status=429, retry_after=1)
    _client(standin).chat_postMessage(channel="C0X", text="hello")
    calls = standin.calls("chat.postMessage")
    assert [c.rate_limited for c in calls] == [True, False]
    assert calls[1].at - calls[0].at >= 1  # Retry-After was honoured


def test_long_rate_limit_is_handed_back_with_its_wait(standin: SlackStandIn) -> None:
    standin.fail_next("chat.postMessage", status=429, retry_after=30)
    with pytest.raises(SlackApiError) as caught:
        _client(standin).chat_postMessage(channel="C0X", text="hello")
    assert _retry_after(caught.value) == 30
    assert len(standin.calls("chat.postMessage")) == 1  # nobody slept 30 s in a worker slot
