"""Memory and time of `audit export` over 100,000 events, and an exact round trip.

Builds a chain of N events (real HMAC chain, SQLite or DATABASE_URL), exports it as CSV and
JSON lines to files while tracemalloc records the peak of Python allocations, then reads
both files back and compares them with the DB. The peak should stay flat as N grows
(events are streamed in batches), not grow with N.
Usage: .venv/bin/python -m bench.export_memory [--events 100000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from app.audit import GENESIS, AuditLog, chain_hash
from app.audit.export import iter_events, read_csv, read_jsonl, write_csv, write_jsonl
from app.cli import migrate
from app.db import Database
from app.models import AuditEvent

KEY = b"bench-audit-key-0123456789abcdef"


def build_chain(db: Database, count: int) -> None:
    """Insert `count` chained events fast (bulk insert), hashed exactly as AuditLog does."""
    prev, start, rows = GENESIS, datetime(2026, 1, 1, tzinfo=UTC), []
    for seq in range(1, count + 1):
        event = AuditEvent(
            seq=seq,
            at=start + timedelta(seconds=seq),
            event="requested" if seq % 3 else "granted",
            actor=f"U{seq % 500:05d}",
            request_id=uuid.UUID(int=seq // 5),
            flow="prod-admin",
            target="admins",
            subject=f"U{seq % 500:05d}",
            details={"reason": f"=ticket OPS-{seq} <!channel>", "n": seq},
            prev_hash=prev,
            hash="",
        )
        event.hash = prev = chain_hash(KEY, prev, event)
        rows.append({c: getattr(event, c) for c in AuditEvent.model_fields})
        if len(rows) == 5000:
            with db.session() as session:
                session.execute(insert(AuditEvent), rows)
            rows = []
    if rows:
        with db.session() as session:
            session.execute(insert(AuditEvent), rows)


def export(db: Database, path: Path, fmt: str) -> tuple[int, float, float]:
    tracemalloc.start()
    began = time.perf_counter()
    with path.open("w", newline="", encoding="utf-8") as out, db.session() as session:
        count = (write_csv if fmt == "csv" else write_jsonl)(iter_events(session), out)
    seconds = time.perf_counter() - began
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return count, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        migrate(url)
        db = Database(url)
        began = time.perf_counter()
        build_chain(db, args.events)
        print(f"built {args.events} chained events in {time.perf_counter() - began:.1f}s")
        with db.session() as session:
            verified = AuditLog(KEY).verify(session)
        print(f"verify: {verified.message}")
        for fmt in ("csv", "jsonl"):
            path = Path(tmp) / f"audit.{fmt}"
            count, seconds, peak = export(db, path, fmt)
            size = path.stat().st_size / 1e6
            print(
                f"{fmt}: {count} events, {size:.1f} MB in {seconds:.1f}s "
                f"({count / seconds:,.0f}/s), peak Python memory {peak:.1f} MB"
            )
            with path.open(encoding="utf-8", newline="") as source:
                back = read_csv(source) if fmt == "csv" else read_jsonl(source)
                with db.session() as session:
                    from app.audit.export import as_record

                    same = all(
                        json.dumps(a, sort_keys=True) == json.dumps(as_record(b), sort_keys=True)
                        for a, b in zip(back, iter_events(session), strict=True)
                    )
            print(f"{fmt}: round trip {'exact' if same else 'DIFFERS'}")


if __name__ == "__main__":
    main()
