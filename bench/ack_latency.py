"""How long Slack waits for our ack: slash command, modal submit, Approve click.

Slack's limit is 3 s. Runs the real stack (gunicorn, worker, beat, Redis, SQLite or
DATABASE_URL) with the Slack and AWS stand-ins, and times signed requests end to end
over loopback. Usage: .venv/bin/python -m bench.ack_latency [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import redis

from app.slack import ids
from app.testing.scenes import (
    approval_card_for,
    click,
    new_person,
    open_request_modal,
    submit_request,
)
from bench.stacks import DEFAULT_REDIS_URL, approval_stack
from tests.factories import APPROVER


def _timed(samples: list[float], fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    samples.append((time.perf_counter() - start) * 1000)
    return result


def _summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return (
        f"{name:<18} n={len(samples):<3} p50={statistics.median(ordered):6.1f} ms  "
        f"p95={p95:6.1f} ms  max={ordered[-1]:6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
    )
    args = parser.parse_args()
    with approval_stack(args.redis_url) as stack:
        command, submit, approve = [], [], []
        for _ in range(args.rounds):
            person = new_person(stack)
            view = _timed(command, open_request_modal, stack, person)
            response = _timed(
                submit,
                submit_request,
                stack,
                person,
                flow="test-admin",
                target="admins",
                seconds=3600,
                reason="bench",
                view=view,
            )
            assert response.status == 200, response.body
            card = approval_card_for(stack, person)
            assert _timed(approve, click, stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
        # open_request_modal also waits for views.open to reach the stand-in: the
        # modal is on screen when it returns, so it is an upper bound of the ack.
        print(_summary("/access → modal", command))
        print(_summary("submit request", submit))
        print(_summary("approve click", approve))
    redis.Redis.from_url(args.redis_url).flushdb()


if __name__ == "__main__":
    main()
