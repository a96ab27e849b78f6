"""Turns: one message task at a time per request (its card and DMs) or per person (their
App Home), by a Redis lock, never a DB lock, so a slow Slack holds up no grant or revoke.

Two ways a lock outlives its work, both seen after a broker outage:
- A task waiting for its turn held its worker process meanwhile, so a few waiting tasks
  stopped the whole messages pool. A turn is waited for at most TURN_WAIT; then LockError
  is raised and the task is tried again later, its process free for other messages.
- A task that finished while Redis was away could not release its lock, and a persisted
  Redis came back with the key for the rest of its 60 s: that request's messages waited
  it out, and a short grant could end before "You now have" was sent. The lock is kept
  and released by the process's next turn, once Redis answers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.lock import Lock

log = logging.getLogger(__name__)

# A turn is held at most this long (a message's Slack calls, retries included).
TURN_SECONDS = 60
# How long a task waits for its turn before it gives its process back and is retried.
TURN_WAIT = 3.0

# Locks of this process whose release Redis did not hear, with their tokens (Lock.release
# forgets the token before it talks to Redis).
_unreleased: list[tuple[Lock, bytes]] = []


@contextmanager
def turn(redis: Redis, key: str) -> Iterator[None]:
    """Hold `key`'s turn for the block; LockError when it is not ours within TURN_WAIT."""
    release_left_over()
    # Not thread-local: a lock kept for later is released from its own token.
    lock = redis.lock(key, timeout=TURN_SECONDS, blocking_timeout=TURN_WAIT, thread_local=False)
    if not lock.acquire():
        raise LockError(f"{key} is another task's turn", lock_name=key)
    token = lock.local.token
    try:
        yield
    finally:
        _release(lock, token)


def release_left_over() -> None:
    """Release the locks earlier turns could not, now that Redis may answer again."""
    for lock, token in list(_unreleased):
        _unreleased.remove((lock, token))
        _release(lock, token)


def _release(lock: Lock, token: bytes) -> None:
    try:
        lock.do_release(token)  # only if it is still ours (the token), atomically
    except (RedisConnectionError, RedisTimeoutError):
        # Redis is away: the key may come back with it (persisted), held for nobody.
        log.warning("turn %s not released (Redis away); released on the next turn", lock.name)
        _unreleased.append((lock, token))
    except LockError:
        pass  # it ran out meanwhile, or another turn took it over: nothing of ours to free
