"""`latchkey worker`: an access pool and a messages pool, so grants never wait behind Slack.

One Celery worker has one pool of processes; when every process is busy posting to a slow
Slack, a grant waits however the queues are ordered. So by default `latchkey worker` runs
two Celery workers, forked from it, and supervises them: one consumes only the access queue
(grants, revokes, decisions, the sweep), the other the messages queue (and Celery's old
default queue, drained after an upgrade). `--queues` runs one kind only, so each scales on
its own.

The supervisor passes SIGTERM or SIGINT on as SIGTERM (Celery's warm shutdown) and, when
one pool exits, stops the other and exits with its code: the process manager restarts the
whole worker, as it did a single one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
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


def _prctl(option: int, value: int | bytes) -> None:
    """Linux's prctl; elsewhere nothing (the process group still gets signals; the pool's
    name is lost)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, value, 0, 0, 0)
    except Exception:  # noqa: S110 - not Linux
        pass


def _die_with_parent() -> None:
    """A pool outlives a supervisor killed with SIGKILL otherwise."""
    _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def process_name(pool: Pool) -> str:
    """What `top` and `ps -o comm` show for a pool's processes (at most 15 bytes)."""
    return f"lk-pool-{pool.kind.split('+')[0]}"[:15]


def _name_process(name: str) -> None:
    """A forked pool keeps the supervisor's command line; its name says which pool it is
    (its own processes inherit it)."""
    _prctl(15, name.encode())  # PR_SET_NAME


def supervise(
    pools: Sequence[Pool],
    *,
    concurrency: int,
    name: str,
    metrics_port: int,
    run_pool: Callable[[Pool, int, str], int],
) -> int:
    """Run each pool in a process forked from this one; return when all have exited.

    Forked, not started afresh: this process has imported the app and built (and checked)
    the runtime, which each pool inherits instead of paying for it again (some 1.5 to 2 s
    of CPU per pool at every start). `run_pool(pool, concurrency, node name)` is what the
    child runs, as `latchkey worker --queues …` would.
    """
    children: list[int] = []
    for index, pool in enumerate(pools):
        pid = os.fork()
        if pid == 0:  # the pool
            os._exit(_pool_main(pool, index, concurrency, name, metrics_port, run_pool))
        children.append(pid)

    stopping = False
    codes: dict[int, int] = {}

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        # SIGTERM whatever came: Ctrl-C in a terminal already sent SIGINT to the pools too,
        # and a second SIGINT would make Celery's shutdown cold (tasks cut short).
        for pid in children:
            if pid not in codes:
                _signal(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while len(codes) < len(children):
        for pid in children:
            if pid in codes:
                continue
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
            codes[pid] = os.waitstatus_to_exitcode(status)
            if not stopping:
                # One pool gone: the other must not run on alone, half a worker.
                code = codes[pid] or 1
                stop(signal.SIGTERM, None)
        time.sleep(0.2)
    if stopping and code == 0:
        return max((c for c in codes.values() if c > 0), default=0)
    return code


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
        os.kill(pid, sig)


def _pool_main(
    pool: Pool,
    index: int,
    concurrency: int,
    name: str,
    metrics_port: int,
    run_pool: Callable[[Pool, int, str], int],
) -> int:
    """In the forked child: become the pool (its own metrics port, its niceness), run it."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    _die_with_parent()
    _name_process(process_name(pool))
    if ACCESS not in pool.queues:
        os.nice(MESSAGES_NICENESS)
    if metrics_port:
        # Each pool serves its own task counters: the access pool on the configured port,
        # the messages pool on the next one.
        os.environ["LATCHKEY_WORKER_METRICS_PORT"] = str(metrics_port + index)
    try:
        return run_pool(pool, concurrency, node_name(name, pool))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
