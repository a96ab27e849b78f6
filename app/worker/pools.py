"""`latchkey worker`: an access pool and a messages pool, so grants never wait behind Slack.

One Celery worker has one pool of processes; when every process is busy posting to a slow
Slack, a grant waits however the queues are ordered. So by default `latchkey worker` runs
two Celery workers and supervises them: one consumes only the access queue (grants,
revokes, decisions, the sweep), the other the messages queue (and Celery's old default
queue, drained after an upgrade). `--queues` runs one kind only, so each scales on its own.

The supervisor passes SIGTERM or SIGINT on as SIGTERM (Celery's warm shutdown) and, when
one pool exits, stops the other and exits with its code: the process manager restarts the
whole worker, as it did a single one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from app.worker.celery_app import ACCESS, LEGACY, MESSAGES, QUEUES


@dataclass(frozen=True)
class Pool:
    """One Celery worker: the queues it consumes, in the order it asks Redis for them."""

    kind: str
    queues: tuple[str, ...]


def parse_queues(value: str | None) -> list[Pool]:
    """`--queues` to the pools to run: none given means one pool per kind."""
    if not value:
        return [pool_for((ACCESS,)), pool_for((MESSAGES,))]
    wanted = tuple(dict.fromkeys(q.strip() for q in value.split(",") if q.strip()))
    unknown = [q for q in wanted if q not in QUEUES]
    if unknown or not wanted:
        raise ValueError(
            f"--queues: unknown queue {', '.join(unknown) or '(none)'}; "
            f"use {', '.join(QUEUES)} or both, comma-separated"
        )
    return [pool_for(wanted)]


def pool_for(queues: tuple[str, ...]) -> Pool:
    # Access first: with both in one pool, Redis is asked for access work first each time.
    ordered = tuple(q for q in QUEUES if q in queues)
    if MESSAGES in ordered:
        ordered += (LEGACY,)
    return Pool(kind="+".join(q for q in ordered if q != LEGACY), queues=ordered)


def node_name(name: str, pool: Pool) -> str:
    """`worker@%h` -> `worker-access@%h`: two pools on one host need distinct node names."""
    local, at, host = name.partition("@")
    return f"{local}-{pool.kind}{at}{host}"


# On one host the two pools share the CPUs too: the messages pool runs a little nicer, so
# when both are busy the kernel gives grants and revokes the CPU first.
MESSAGES_NICENESS = 5


def _die_with_parent() -> None:
    """A pool outlives a supervisor killed with SIGKILL otherwise (Linux only)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: S110 - not Linux: the process group still gets the signal
        pass


def _start_messages_pool() -> None:
    _die_with_parent()
    os.nice(MESSAGES_NICENESS)


def supervise(pools: Sequence[Pool], *, concurrency: int, name: str, metrics_port: int) -> int:
    """Run each pool as `latchkey worker --queues …`; return when all have exited."""
    children: list[subprocess.Popen[bytes]] = []
    for index, pool in enumerate(pools):
        env = dict(os.environ)
        if metrics_port:
            # Each pool serves its own task counters: the access pool on the configured
            # port, the messages pool on the next one.
            env["LATCHKEY_WORKER_METRICS_PORT"] = str(metrics_port + index)
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "app.cli",
                    "worker",
                    "--queues",
                    ",".join(q for q in pool.queues if q != LEGACY),
                    "--concurrency",
                    str(concurrency),
                    "--name",
                    node_name(name, pool),
                ],
                env=env,
                preexec_fn=_die_with_parent if ACCESS in pool.queues else _start_messages_pool,
            )
        )

    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        # SIGTERM whatever came: Ctrl-C in a terminal already sent SIGINT to the pools too,
        # and a second SIGINT would make Celery's shutdown cold (tasks cut short).
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while any(child.poll() is None for child in children):
        for child in children:
            if child.poll() is not None and not stopping:
                # One pool gone: the other must not run on alone, half a worker.
                code = child.returncode or 1
                stop(signal.SIGTERM, None)
        time.sleep(0.2)
    if stopping and code == 0:
        return max((c.returncode for c in children if c.returncode and c.returncode > 0), default=0)
    return code
