"""What a beat sweep with nothing due costs as the live grants grow, over a long history.

Fills a scratch database with `--history` ended grants, then with 1k, 10k and 100k live
grants (ending 1 to 9 hours ahead, so nothing is due), and times the whole sweep
(app.sweeps.sweep: due revokes, revokes to hand the broker, stuck and lapsed grants,
cardless requests, failed revokes, expiry notices, pending timeouts) at each size: the
median of `--runs` sweeps. The baseline is the smallest size in the same run; the ratio
largest/smallest is ~1 when the sweep costs O(due), and grows with the live grants or the
history when a question reads them. Target: < 30 ms at every size.

SQLite: a file in a temporary folder. PostgreSQL: a scratch database created next to
LATCHKEY_BENCH_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test) and
dropped at the end; ANALYZE runs after each fill, as autovacuum would. Redis is not used
(nothing is due, so nothing is rung).

Usage: .venv/bin/python -m bench.sweep_cost [--backends sqlite,postgresql]
       [--sizes 1000,10000,100000] [--history 100000] [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.audit import AuditLog
from app.cli import migrate
from app.config import Settings
from app.db import Database
from app.flows.loader import load_flows
from app.runtime import Runtime
from app.sweeps import sweep
from app.testing.grant_history import add_grants
from app.testing.stack import BOT_TOKEN
from tests.factories import AUDIT_KEY, write_flow

POSTGRES_URL = os.environ.get(
    "LATCHKEY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@contextmanager
def scratch_database(backend: str, folder: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'sweep-cost.db'}"
        return
    import psycopg

    name = f"latchkey_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def median_sweep_ms(rt: Runtime, runs: int) -> tuple[float, float, float]:
    """Median wall and CPU (this process) milliseconds of one sweep, and the median wall
    milliseconds of one empty transaction (SELECT 1) taken between them.

    Wall time includes waiting for the database and for a core on a busy machine; CPU
    time is the sweep's own work, steadier when other jobs share the cores; the empty
    transaction is the baseline of the same moment: sweep/empty says how many bare round
    trips a sweep is worth, whatever the load.
    """
    sweep(rt)  # warm: connections, compiled statements, the Celery app of rt.tasks
    wall, cpu, empty = [], [], []
    for _ in range(runs):
        started, used = time.perf_counter(), time.process_time()
        counts = sweep(rt)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - used) * 1000)
        assert not any(counts.values()), f"something was due: {counts}"
        started = time.perf_counter()
        with rt.db.session() as session:
            session.execute(text("SELECT 1"))
        empty.append((time.perf_counter() - started) * 1000)
    return statistics.median(wall), statistics.median(cpu), statistics.median(empty)


def bench(
    backend: str, sizes: list[int], history: int, runs: int
) -> dict[int, tuple[float, float, float]]:
    results: dict[int, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, scratch_database(backend, Path(tmp)) as url:
        folder = Path(tmp)
        (folder / "flows").mkdir()
        write_flow(folder / "flows")  # expiry notices on (10 min): that question runs too
        migrate(url)
        db = Database(url)
        settings = Settings(slack_bot_token=BOT_TOKEN, database_url=url)
        rt = Runtime(
            settings=settings,
            db=db,
            flows=load_flows(folder / "flows"),
            audit=AuditLog(AUDIT_KEY.encode()),
        )
        started = time.perf_counter()
        add_grants(db, ended=history)
        live = 0
        for size in sizes:
            add_grants(db, live=size - live)
            live = size
            if db.is_postgres:
                with db.engine.connect() as connection:
                    connection.execute(text("ANALYZE"))
                    connection.commit()
            results[size] = wall, cpu, empty = median_sweep_ms(rt, runs)
            print(
                f"{backend:10} live={size:>7,} history={history:>7,}  sweep median "
                f"wall={wall:7.2f} ms cpu={cpu:6.2f} ms; empty transaction {empty:5.2f} ms "
                f"(sweep = {wall / empty:4.1f} of them; load {os.getloadavg()[0]:.1f}, "
                f"filled in {time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        db.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    load = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} cores, load {load:.1f}; history {args.history:,} ended grants"
    )
    summary = []
    for backend in args.backends.split(","):
        results = bench(backend, sizes, args.history, args.runs)
        small, large = results[sizes[0]], results[sizes[-1]]
        verdict = "met" if max(wall for wall, _, _ in results.values()) < 30 else "MISSED"
        summary.append(
            f"{backend:10} {sizes[-1]:,}/{sizes[0]:,} live: wall ratio {large[0] / small[0]:.2f}, "
            f"cpu ratio {large[1] / small[1]:.2f}, in empty transactions "
            f"{(large[0] / large[2]) / (small[0] / small[2]):.2f}; "
            f"target < 30 ms wall at every size: {verdict}"
        )
    print("\n".join(summary))


if __name__ == "__main__":
    main()
