"""Message turns across a Redis outage, on a real redis-server that persists its keys (as a
production Redis with AOF or RDB does) and is stopped and started under the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app import turns
from app.testing.redis_server import RedisServer


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def test_a_turn_that_ended_while_redis_was_away_is_released_once_redis_is_back(
    broker: RedisServer,
) -> None:
    client = redis.Redis.from_url(broker.url)
    with turns.turn(client, "latchkey:card:outage"):
        broker.stop()  # the message's work ends while Redis is away: no release heard
    broker.start()  # back with its data: the lock is there, held for nobody
    assert client.exists("latchkey:card:outage")
    assert client.pttl("latchkey:card:outage") > 30_000

    # The process's next turn, on anything, frees it at once (not in up to 60 s).
    with turns.turn(client, "latchkey:card:other"):
        assert not client.exists("latchkey:card:outage")
    with turns.turn(client, "latchkey:card:outage"):
        pass


def test_a_turn_held_elsewhere_is_refused_within_the_wait_not_waited_out(
    broker: RedisServer,
) -> None:
    client = redis.Redis.from_url(broker.url)
    client.set("latchkey:card:busy", "another-task", px=60_000)
    with pytest.raises(redis.exceptions.LockError), turns.turn(client, "latchkey:card:busy"):
        pass
    # Not ours: the other holder's lock is left as it was.
    assert client.get("latchkey:card:busy") == b"another-task"
