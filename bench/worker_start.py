"""The first grant after a worker starts: as fast as any other grant?

Issue 14, point 2: cloud clients and heavy imports are built when each worker process
starts (app/worker/warmup.py), not on the first task. Runs the real stack (gunicorn web,
`latchkey worker`, beat, Redis, SQLite or DATABASE_URL, moto, a Slack stand-in answering
each call after --slack-ms). Each round: a request waits for approval, the worker is
restarted, and as soon as both its pools say ready the request is approved; the figure
is Approve click -> the requester in the IAM group (moto). Target: <= 1 s on a quiet
machine.

The baseline, measured in the same run: one approval at a time on the idle, long-running
stack (median of --baseline). The ratio first-grant / baseline should be about 1. Also
printed: how long the worker took from its start to ready (imports, start-up checks,
warm-up of every pool process).

Usage: .venv/bin/python -m bench.worker_start [--rounds 5] [--baseline 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import redis

from app.testing.stack import LocalStack
from bench.approve_to_access import approve_and_wait, pending, quiet
from bench.stacks import DEFAULT_REDIS_URL, approval_stack


def restart_worker(stack: LocalStack) -> float:
    """Stop the worker, start it again; seconds until both its pools say ready."""
    stack.stop_process("worker")
    started = time.monotonic()
    stack.start_process("worker")  # returns once both pools said ready in this run
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5, help="worker restarts")
    parser.add_argument("--baseline", type=int, default=5, help="single approvals, idle")
    parser.add_argument("--slack-ms", type=float, default=20.0, help="stand-in delay per call")
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
    )
    args = parser.parse_args()
    first: list[float] = []
    boot: list[float] = []
    with approval_stack(args.redis_url) as stack:
        stack.slack.slow_down("", args.slack_ms / 1000)
        approve_and_wait(stack, pending(stack, 1))  # the stack's own first grant
        single: list[float] = []
        for _ in range(args.baseline):
            waiting = pending(stack, 1)
            quiet(stack)
            single += approve_and_wait(stack, waiting)
        baseline = statistics.median(single)
        print(f"baseline, one approval on an idle stack: {baseline * 1000:.0f} ms (median)")
        for round_no in range(1, args.rounds + 1):
            waiting = pending(stack, 1)
            quiet(stack)
            boot.append(restart_worker(stack))
            first += approve_and_wait(stack, waiting)
            print(
                f"round {round_no}: worker ready in {boot[-1]:.1f} s, first grant "
                f"{first[-1] * 1000:.0f} ms",
                flush=True,
            )
    redis.Redis.from_url(args.redis_url).flushdb()
    median_first = statistics.median(first)
    print(f"machine: {os.cpu_count()} cores; Slack stand-in {args.slack_ms:.0f} ms per call")
    print(
        f"first grant after a start: median {median_first * 1000:.0f} ms, max "
        f"{max(first) * 1000:.0f} ms ({median_first / baseline:.2f}x the idle baseline "
        f"{baseline * 1000:.0f} ms); target <= 1 s: {'ok' if median_first <= 1 else 'MISSED'}"
    )
    print(f"worker start to ready: median {statistics.median(boot):.1f} s")


if __name__ == "__main__":
    main()
