"""Approve click to access: how long until the requester is in the IAM group (moto).

Issue 14, point 2: grants never wait behind messages. Runs the real stack (gunicorn web,
`latchkey worker` with its access and messages pools, beat, Redis, SQLite or DATABASE_URL,
moto, a Slack stand-in answering each call after --slack-ms) and fires N concurrent signed
Approve clicks (one per pending request) for each N in --concurrency. Latency = the moment
the grant was recorded (its `granted` audit event, committed right after the provider's
yes; membership in moto is checked too) - the moment the clicks were sent. Targets: p50
<= 1 s and p99 <= 3 s at 10 and at 50.

The baseline, measured in the same run on the same stack: one approval at a time on an
idle stack (--baseline of them, median). Figures are reported as ratios to it.
--compare-shared repeats the bursts with one Celery pool serving both queues (`latchkey
worker --queues access,messages`), which is what the split pools buy.

Usage: .venv/bin/python -m bench.approve_to_access [--concurrency 10 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
import uuid

import redis
from sqlalchemy import select

from app.models import AuditEvent
from app.testing.scenes import (
    approval_card_for,
    group_members,
    new_person,
    request_id_on,
    submit_request,
)
from app.testing.slack_standin import RecordedCall
from app.testing.stack import LocalStack, wait_until
from bench import cpu
from bench.click_ack import approve_click, burst, percentile
from bench.stacks import DEFAULT_REDIS_URL, approval_stack
from tests.factories import GROUP_NAME


def granted_at(stack: LocalStack, request_ids: list[uuid.UUID]) -> dict[uuid.UUID, float]:
    """When each request's access was recorded (its keyed `granted` audit event, written in
    the transaction right after the provider said yes), as epoch seconds."""
    with stack.database().session() as session:
        rows = session.execute(
            select(AuditEvent.request_id, AuditEvent.at).where(
                AuditEvent.event == "granted",  # type: ignore[arg-type]
                AuditEvent.request_id.in_(request_ids),  # type: ignore[union-attr]
            )
        ).all()
    return {request_id: at.timestamp() for request_id, at in rows}


# The audit events of an approval, in order: what the web kept, what the worker decided,
# its claim on the provider call, the access recorded.
STAGES = ("decision_deferred", "approved", "granting", "granted")


def stages(stack: LocalStack, request_ids: list[uuid.UUID], sent: float) -> dict[str, list[float]]:
    """Seconds from the clicks to each stage's audit event, per stage (first event each)."""
    with stack.database().session() as session:
        rows = session.execute(
            select(AuditEvent.request_id, AuditEvent.event, AuditEvent.at)
            .where(
                AuditEvent.event.in_(STAGES),  # type: ignore[attr-defined]
                AuditEvent.request_id.in_(request_ids),  # type: ignore[union-attr]
            )
            .order_by(AuditEvent.seq)  # type: ignore[arg-type]
        ).all()
    first: dict[tuple[uuid.UUID, str], float] = {}
    for request_id, event, at in rows:
        first.setdefault((request_id, event), at.timestamp() - sent)
    return {
        stage: [first[(r, stage)] for r in request_ids if (r, stage) in first] for stage in STAGES
    }


def pending(stack: LocalStack, count: int) -> list[tuple[str, RecordedCall]]:
    """`count` pending requests made through the modal: each requester's IAM user and card."""
    people = [new_person(stack) for _ in range(count)]
    for person in people:
        answer = submit_request(
            stack, person, flow="test-admin", target="admins", seconds=3600, reason="bench"
        )
        assert answer.status == 200, answer.body
    return [(p.email, approval_card_for(stack, p, timeout=120)) for p in people]


def approve_and_wait(stack: LocalStack, waiting: list[tuple[str, RecordedCall]]) -> list[float]:
    """Fire one Approve click per card at once; seconds from each click to its access.

    The moment of access is read from the DB (polling moto for a group of hundreds would
    load the very CPUs being measured); membership in moto is then checked once.
    """
    cards = [card for _, card in waiting]
    request_ids = [uuid.UUID(request_id_on(card)) for card in cards]
    cpu_before, sent = cpu.snapshot(), time.time()
    # burst() releases the clicks together; the send moment is shared within ~ms.
    burst([approve_click(stack.driver, card) for card in cards])
    done = wait_until(
        lambda: (
            (found := granted_at(stack, request_ids)) and len(found) == len(request_ids) and found
        ),
        180,
        "every approved request to be granted",
        interval=0.1,
    )
    wall, cpu_after = time.time() - sent, cpu.snapshot()
    members = set(group_members(stack, GROUP_NAME))
    missing = [email for email, _ in waiting if email not in members]
    assert not missing, f"granted in the DB but not in the IAM group: {missing}"
    if len(request_ids) > 1:
        # Where the time went: p50 from the clicks to each stage.
        print(
            "    stages (p50 after the clicks): "
            + ", ".join(
                f"{stage} {percentile(times, 0.5) * 1000:.0f} ms"
                for stage, times in stages(stack, request_ids, sent).items()
                if times
            ),
            flush=True,
        )
        # Until the last grant (the poll above adds up to 0.1 s of the bench's own).
        print("    " + cpu.describe(cpu.spent(cpu_before, cpu_after), wall), flush=True)
    return [done[r] - sent for r in request_ids]


def quiet(stack: LocalStack, seconds: float = 3.0) -> None:
    """Let the messages of the last round (cards, DMs, App Homes) drain before the next."""
    time.sleep(seconds)


def measure(stack: LocalStack, sizes: list[int], rounds: int) -> dict[int, list[float]]:
    results: dict[int, list[float]] = {}
    for size in sizes:
        samples: list[float] = []
        for _ in range(rounds):
            cards = pending(stack, size)
            quiet(stack)
            samples += approve_and_wait(stack, cards)
        results[size] = samples
        print(
            f"  {size:>3} concurrent: p50 {percentile(samples, 0.5) * 1000:7.0f} ms  "
            f"p99 {percentile(samples, 0.99) * 1000:7.0f} ms",
            flush=True,
        )
    return results


def shared_pool_worker(stack: LocalStack) -> subprocess.Popen[bytes]:
    """Replace the stack's worker with one pool serving both queues (access asked first)."""
    stack.stop_process("worker")
    name = "shared"
    with (stack.workdir / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            [
                *stack.command_prefix,
                "worker",
                "--queues",
                "access,messages",
                "--concurrency",
                str(stack.worker_concurrency),
                "--name",
                f"{name}@%h",
            ],
            env=stack.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_until(lambda: "ready." in stack.log(name), 120, "the shared-pool worker")
    return process


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--rounds", type=int, default=2, help="bursts per concurrency")
    parser.add_argument("--baseline", type=int, default=5, help="single approvals, idle")
    parser.add_argument("--slack-ms", type=float, default=20.0, help="stand-in delay per call")
    parser.add_argument("--compare-shared", action="store_true")
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=4,
        help="processes in each worker pool (default 4, as `latchkey worker`)",
    )
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
    )
    args = parser.parse_args()
    with approval_stack(args.redis_url, worker_concurrency=args.worker_concurrency) as stack:
        # Every Web API call answers after --slack-ms, as Slack over the internet.
        stack.slack.slow_down("", args.slack_ms / 1000)
        approve_and_wait(stack, pending(stack, 1))  # first grant: not measured
        single: list[float] = []
        for _ in range(args.baseline):
            cards = pending(stack, 1)
            quiet(stack)
            single += approve_and_wait(stack, cards)
        baseline = statistics.median(single)
        print(f"baseline, one approval on an idle stack: {baseline * 1000:.0f} ms (median)")
        print("split pools (latchkey worker):")
        split = measure(stack, args.concurrency, args.rounds)
        shared: dict[int, list[float]] = {}
        if args.compare_shared:
            process = shared_pool_worker(stack)
            try:
                print("one shared pool (latchkey worker --queues access,messages):")
                shared = measure(stack, args.concurrency, args.rounds)
            finally:
                process.terminate()
                process.wait(30)
    redis.Redis.from_url(args.redis_url).flushdb()
    print(f"machine: {os.cpu_count()} cores; Slack stand-in {args.slack_ms:.0f} ms per call")
    for label, results in (("split", split), ("shared", shared)):
        for size, samples in results.items():
            p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
            verdict = "ok" if p50 <= 1 and p99 <= 3 else "MISSED"
            print(
                f"{label:<6} {size:>3} concurrent: p50 {p50 * 1000:6.0f} ms "
                f"({p50 / baseline:5.1f}x baseline)  p99 {p99 * 1000:6.0f} ms "
                f"({p99 / baseline:5.1f}x)  target p50<=1 s, p99<=3 s: {verdict}"
            )


if __name__ == "__main__":
    main()
