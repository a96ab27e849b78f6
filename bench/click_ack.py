"""Approve click ack at N concurrent clicks: Latchkey against a bare Bolt app, same run.

Issue 14, point 1: the ack of an Approve click must cost about what Bolt itself costs.
Runs the real stack (gunicorn web, Celery worker and beat on this machine, Redis, SQLite or
DATABASE_URL, moto, a Slack stand-in answering each call after --slack-ms) and, beside it,
bench/bare_bolt.py served by the same gunicorn line and config. Each round makes N pending
requests through the request modal, then fires N concurrent signed Approve clicks (one per
request) at the bare app and N at Latchkey, and times each HTTP round trip over loopback.
Target: Latchkey's p99 <= 1.3 x the bare app's p99.

Also printed: the web's CPU per click (gunicorn master and workers, from /proc), and how
long the worker took from the burst to the last grant (the clicks are decided there).

Usage: .venv/bin/python -m bench.click_ack [--clicks 50] [--rounds 3] [--slack-ms 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import func, select

from app.models import AccessRequest, RequestStatus
from app.slack import ids
from app.testing.scenes import approval_card_for, new_person, request_id_on, submit_request
from app.testing.slack_driver import Response, SlackDriver
from app.testing.slack_standin import RecordedCall
from app.testing.stack import SIGNING_SECRET, LocalStack, free_port, wait_until
from bench.stacks import DEFAULT_REDIS_URL, approval_stack
from tests.factories import APPROVER

ACTIVE = RequestStatus.ACTIVE.value
_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of a process and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / _TICK
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(p for p, parent in parents.items() if parent == pid)
    return total


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, int(len(ordered) * q + 0.999) - 1))]


def burst(clicks: list[Callable[[], Response]]) -> list[float]:
    """Fire every click at once (released together by a barrier); ms per round trip."""
    barrier = threading.Barrier(len(clicks))

    def timed(fire: Callable[[], Response]) -> float:
        barrier.wait()
        start = time.perf_counter()
        answer = fire()
        elapsed = (time.perf_counter() - start) * 1000
        assert answer.status == 200, (answer.status, answer.body)
        return elapsed

    with ThreadPoolExecutor(max_workers=len(clicks)) as pool:
        return list(pool.map(timed, clicks))


def approve_click(driver: SlackDriver, card: RecordedCall) -> Callable[[], Response]:
    """The signed Approve click Slack sends for this card."""
    return lambda: driver.block_action(
        APPROVER,
        ids.APPROVE_ACTION,
        request_id_on(card),
        block_id=ids.DECISION_BLOCK,
        channel_id=card.response["channel"],
        message_ts=card.response["ts"],
    )


def slow_slack(stack: LocalStack, seconds: float) -> None:
    """Each Web API call of the stand-in answers after `seconds`, as Slack over the internet."""
    answer = stack.slack.handle

    def handle(*args: Any) -> Any:
        time.sleep(seconds)
        return answer(*args)

    stack.slack.handle = handle  # type: ignore[method-assign]


def start_bare_bolt(stack: LocalStack) -> tuple[subprocess.Popen[bytes], int]:
    """bench/bare_bolt.py under the same gunicorn line and config as `latchkey web`."""
    port = free_port()
    log = (stack.workdir / "bare.log").open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:app.gunicorn_conf",
            "bench.bare_bolt:wsgi()",
        ],
        env={**stack.env, "PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    log.close()
    driver = SlackDriver(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET)

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError((stack.workdir / "bare.log").read_text())
        try:
            return driver.post("x=1").status in (200, 401, 404)
        except OSError:
            return False

    wait_until(up, 30, "the bare Bolt app")
    return process, port


def pending_cards(stack: LocalStack, count: int) -> list[RecordedCall]:
    """`count` pending requests made through the modal; their approval cards."""
    people = [new_person(stack) for _ in range(count)]
    for person in people:
        answer = submit_request(
            stack, person, flow="test-admin", target="admins", seconds=3600, reason="bench"
        )
        assert answer.status == 200, answer.body
    return [approval_card_for(stack, person, timeout=60) for person in people]


def statuses(stack: LocalStack, request_ids: list[uuid.UUID]) -> dict[str, int]:
    """How many of these requests are in each status."""
    with stack.database().session() as session:
        rows = session.execute(
            select(AccessRequest.status, func.count())
            .where(AccessRequest.id.in_(request_ids))  # type: ignore[attr-defined]
            .group_by(AccessRequest.status)
        ).all()
    return {str(status.value): int(count) for status, count in rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clicks", type=int, default=50, help="concurrent clicks per burst")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slack-ms", type=float, default=20.0, help="stand-in delay per call")
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
    )
    args = parser.parse_args()
    ours: list[float] = []
    bare: list[float] = []
    ours_cpu = bare_cpu = 0.0
    decided: list[float] = []
    with approval_stack(args.redis_url) as stack:
        bare_process, bare_port = start_bare_bolt(stack)
        bare_driver = SlackDriver(
            f"http://127.0.0.1:{bare_port}/slack/events",
            SIGNING_SECRET,
            response_urls=stack.slack.response_url,
        )
        try:
            # Each app's first request pays for auth.test and imports: not measured.
            assert bare_driver.block_action(APPROVER, "warm.up", "-").status == 200
            slow_slack(stack, args.slack_ms / 1000)
            web_pid = stack.pids()["web"]
            for round_no in range(1, args.rounds + 1):
                cards = pending_cards(stack, args.clicks)
                request_ids = [uuid.UUID(request_id_on(card)) for card in cards]
                before = tree_cpu_seconds(bare_process.pid)
                bare += burst([approve_click(bare_driver, card) for card in cards])
                bare_cpu += tree_cpu_seconds(bare_process.pid) - before
                time.sleep(0.5)
                before = tree_cpu_seconds(web_pid)
                fired = time.monotonic()
                ours += burst([approve_click(stack.driver, card) for card in cards])
                try:
                    wait_until(
                        lambda ids_=request_ids: statuses(stack, ids_).get(ACTIVE) == len(ids_),
                        120,
                        "every approved request to be granted",
                        interval=0.05,
                    )
                except TimeoutError:
                    print(statuses(stack, request_ids), stack.all_logs()[-6000:])
                    raise
                decided.append(time.monotonic() - fired)
                # Includes what the web does after the acks (ringing, telling).
                ours_cpu += tree_cpu_seconds(web_pid) - before
                print(f"round {round_no}: {args.clicks} clicks, all granted", flush=True)
        finally:
            os.killpg(bare_process.pid, 15)
            bare_process.wait(20)
    redis.Redis.from_url(args.redis_url).flushdb()
    n = len(ours)
    print(f"machine: {os.cpu_count()} cores; {args.clicks} concurrent clicks x {args.rounds}")
    for name, samples, cpu in (("bare Bolt", bare, bare_cpu), ("Latchkey", ours, ours_cpu)):
        print(
            f"{name:<10} p50={percentile(samples, 0.5):7.1f} ms  "
            f"p99={percentile(samples, 0.99):7.1f} ms  web CPU {cpu / n * 1000:5.1f} ms/click"
        )
    ratio = percentile(ours, 0.99) / percentile(bare, 0.99)
    print(f"ratio p99 Latchkey / bare: {ratio:.2f} (target <= 1.3)")
    print(f"burst -> last grant: {', '.join(f'{s:.1f} s' for s in decided)}")


if __name__ == "__main__":
    main()
