"""How long Slack waits for our ack: slash command, modal submit, Approve click.

Slack's limit is 3 s. Runs the real stack (gunicorn, worker, beat, Redis, SQLite or
DATABASE_URL) with the Slack and AWS stand-ins, and times signed requests end to end
over loopback. Usage: .venv/bin/python -m bench.ack_latency [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import redis

from app.slack import ids
from app.testing.scenes import (
    approval_card_for,
    click,
    new_person,
    open_request_modal,
    submit_request,
)
from app.testing.stack import LocalStack
from tests.factories import APPROVER, APPROVER_GROUP, GROUP_APPROVER, GROUP_NAME, write_flow


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
        default=os.environ.get("LATCHKEY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
    )
    args = parser.parse_args()
    redis.Redis.from_url(args.redis_url).flushdb()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "flows").mkdir()
        write_flow(work / "flows")
        with LocalStack(
            workdir=work,
            flows_dir=work / "flows",
            redis_url=args.redis_url,
            database_url=os.environ.get("DATABASE_URL"),
        ) as stack:
            stack.slack.add_user(APPROVER, name="ann", email="ann@example.com")
            stack.slack.add_usergroup(APPROVER_GROUP, [GROUP_APPROVER])
            stack.iam().create_group(GroupName=GROUP_NAME)
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
                assert (
                    _timed(approve, click, stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
                )
            # open_request_modal also waits for views.open to reach the stand-in: the
            # modal is on screen when it returns, so it is an upper bound of the ack.
            print(_summary("/access → modal", command))
            print(_summary("submit request", submit))
            print(_summary("approve click", approve))
    redis.Redis.from_url(args.redis_url).flushdb()


if __name__ == "__main__":
    main()
