"""Which queue each task goes to, which pools `latchkey worker` runs, readiness per queue,
and the App Home debounce against real Redis and the Slack stand-in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from app.audit import AuditLog
from app.config import Settings
from app.db import Database
from app.flows.loader import load_flows
from app.health import assess
from app.notify import HOME_QUIET_SECONDS, publish_home_when_due, refresh_home
from app.runtime import Runtime
from app.testing.slack_standin import DEFAULT_TOKEN, SlackStandIn
from app.worker.celery_app import ACCESS, LEGACY, MESSAGES, create_celery, queue_of
from app.worker.heartbeat import write_heartbeat
from app.worker.pools import node_name, parse_queues
from tests.test_health import LIMITS, NOW


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(slack_bot_token=DEFAULT_TOKEN, redis_url=redis_url)


@pytest.mark.parametrize(
    "task",
    [
        "latchkey.grant_access",
        "latchkey.revoke_access",
        "latchkey.decide_deferred",
        "latchkey.decide_approval",  # any decision task, present or to come
        "latchkey.end_grant",
        "latchkey.sweep",
    ],
)
def test_access_work_goes_to_the_access_queue(settings: Settings, task: str) -> None:
    assert queue_of(task, create_celery(settings)) == ACCESS


@pytest.mark.parametrize(
    "task",
    [
        "latchkey.notify",
        "latchkey.process_submission",
        "latchkey.publish_home",
        "latchkey.audit_deliver",
        "latchkey.audit_checkpoint",
        "latchkey.reconcile",
    ],
)
def test_messages_and_background_work_go_to_the_messages_queue(
    settings: Settings, task: str
) -> None:
    assert queue_of(task, create_celery(settings)) == MESSAGES


def test_a_worker_serving_both_queues_asks_redis_for_access_work_first(
    settings: Settings,
) -> None:
    # kombu's default rotates the queues after each message (fair, not first).
    options = create_celery(settings).conf.broker_transport_options
    assert options["queue_order_strategy"] == "priority"
    assert parse_queues("messages,access")[0].queues == (ACCESS, MESSAGES, LEGACY)


def test_latchkey_worker_runs_one_pool_per_queue_unless_told() -> None:
    access, messages = parse_queues(None)
    assert access.queues == (ACCESS,)
    # The messages pool also drains Celery's default queue, where an older web sent.
    assert messages.queues == (MESSAGES, LEGACY)
    assert [p.queues for p in parse_queues("access")] == [(ACCESS,)]
    assert node_name("worker@%h", access) == "worker-access@%h"
    assert node_name("latchkey@%h", messages) == "latchkey-messages@%h"
    with pytest.raises(ValueError, match="unknown queue celery"):
        parse_queues("celery")


def test_readiness_names_a_queue_no_live_worker_consumes(database: Database) -> None:
    write_heartbeat(database, process="beat@host", kind="beat", now=NOW)
    write_heartbeat(
        database,
        process="worker-access@host",
        kind="worker",
        details={"queues": ["access"]},
        now=NOW,
    )
    # A messages pool that died a while ago does not count.
    write_heartbeat(
        database,
        process="worker-messages@host",
        kind="worker",
        details={"queues": ["celery", "messages"]},
        now=NOW - timedelta(hours=1),
    )
    with database.session() as session:
        problems, report = assess(session, now=NOW, limits=LIMITS)
    assert report["unserved_queues"] == ["messages"]
    assert problems == [
        "queue messages: no live worker consumes it (Slack messages; `latchkey worker` "
        "or `latchkey worker --queues messages`)"
    ]
    write_heartbeat(
        database,
        process="worker-messages@host",
        kind="worker",
        details={"queues": ["celery", "messages"]},
        now=NOW,
    )
    with database.session() as session:
        problems, report = assess(session, now=NOW, limits=LIMITS)
    assert problems == [] and "unserved_queues" not in report


# -- App Home debounce ---------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        standin.add_user("U0HOME", name="home", email="home@example.com")
        yield standin


@pytest.fixture
def rt(
    database: Database, flows_dir: Path, audit: AuditLog, slack: SlackStandIn, redis_url: str
) -> Iterator[Runtime]:
    redis.Redis.from_url(redis_url).flushdb()
    settings = Settings(
        slack_bot_token=DEFAULT_TOKEN,
        slack_api_url=slack.base_url,
        database_url=database.url,
        redis_url=redis_url,
    )
    yield Runtime(settings=settings, db=database, flows=load_flows(flows_dir), audit=audit)
    redis.Redis.from_url(redis_url).flushdb()


def _waiting_publishes(rt: Runtime) -> list[dict]:
    """The delayed App Home tasks sitting in the messages queue (nobody consumes here)."""
    messages = [json.loads(m) for m in rt.redis.lrange(MESSAGES, 0, -1)]
    return [m for m in messages if m["headers"]["task"] == "latchkey.publish_home"]


def test_notifications_in_a_burst_publish_once_now_and_once_at_the_window_end(
    rt: Runtime, slack: SlackStandIn
) -> None:
    for _ in range(5):
        refresh_home(rt, "U0HOME")
    assert len(slack.calls("views.publish")) == 1  # the first, at once
    later = _waiting_publishes(rt)
    assert len(later) == 1  # the other four share one publish
    eta = later[0]["headers"]["eta"]
    assert eta is not None  # when the window ends, not now

    # That publish, when it runs, renders afresh and opens a new window.
    publish_home_when_due(rt, "U0HOME")
    assert len(slack.calls("views.publish")) == 2
    refresh_home(rt, "U0HOME")
    assert len(slack.calls("views.publish")) == 2
    assert len(_waiting_publishes(rt)) == 2  # a new one for the new window


def test_without_redis_every_notification_publishes(rt: Runtime, slack: SlackStandIn) -> None:
    rt.__dict__["redis"] = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    refresh_home(rt, "U0HOME")
    refresh_home(rt, "U0HOME")
    assert len(slack.calls("views.publish")) == 2
    assert HOME_QUIET_SECONDS <= 5  # "a few seconds"


def test_the_beat_feeds_the_siem_only_with_a_webhook_and_as_often_as_set() -> None:
    """No webhook: nothing to deliver, so nothing scheduled. With one: every sweep, unless
    LATCHKEY_AUDIT_DELIVER_SECONDS says otherwise."""
    from app.worker.celery_app import beat_schedule

    quiet = Settings(sweep_seconds=7)
    assert "audit-deliver" not in beat_schedule(quiet)
    hook = {
        "audit_webhook_url": "https://siem.example.com/in",
        "audit_webhook_secret": "siem-secret-0123456789",
        "sweep_seconds": 7,
    }
    every_sweep = beat_schedule(Settings(**hook))  # type: ignore[arg-type]
    assert every_sweep["audit-deliver"]["schedule"] == timedelta(seconds=7)
    own = beat_schedule(Settings(**hook, audit_deliver_seconds=60))  # type: ignore[arg-type]
    assert own["audit-deliver"]["schedule"] == timedelta(seconds=60)
    assert own["sweep"]["schedule"] == timedelta(seconds=7)
