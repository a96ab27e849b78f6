"""Health tells the truth: the report over a real DB (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.config import Settings
from app.db import Database, utcnow
from app.health import Limits, assess, check, migrations_head
from app.models import Heartbeat, RequestStatus
from app.worker.heartbeat import HeartbeatWriter, write_heartbeat
from tests.factories import GROUP_NAME, grant_row

NOW = utcnow()
# LATCHKEY_SWEEP_SECONDS=10 and the default grace: heartbeats stale after 30 s, revokes
# overdue after 40 s.
LIMITS = Limits(stale_after=timedelta(seconds=30), overdue_after=timedelta(seconds=40))


def _alive(database: Database, *, worker_age: float = 2, beat_age: float = 1) -> None:
    write_heartbeat(
        database, process="worker@host", kind="worker", now=NOW - timedelta(seconds=worker_age)
    )
    write_heartbeat(
        database, process="beat@host", kind="beat", now=NOW - timedelta(seconds=beat_age)
    )


def _grant(database: Database, status: RequestStatus, ended_ago: float) -> None:
    with database.session() as session:
        grant_row(
            session,
            status=status,
            expires_at=NOW - timedelta(seconds=ended_ago),
            requested_seconds=60,
            resource=GROUP_NAME,
        )


def _assess(database: Database) -> tuple[list[str], dict]:
    with database.session() as session:
        return assess(session, now=NOW, limits=LIMITS)


def test_fresh_heartbeats_and_no_overdue_grant_is_ok(database: Database) -> None:
    _alive(database)
    _grant(database, RequestStatus.ACTIVE, ended_ago=-300)  # ends in five minutes
    problems, report = _assess(database)
    assert problems == []
    assert report == {
        "schema": "ok",
        "schema_revision": migrations_head(),
        "schema_head": migrations_head(),
        "worker": "ok",
        "worker_heartbeat_age_seconds": 2.0,
        "workers_alive": 1,
        "beat": "ok",
        "beat_heartbeat_age_seconds": 1.0,
        "beats_alive": 1,
        "overdue_grants": 0,
        "oldest_overdue_seconds": 0.0,
    }


def test_stale_worker_heartbeat_is_not_ok_and_names_the_worker(database: Database) -> None:
    _alive(database, worker_age=45)
    problems, report = _assess(database)
    assert report["worker"] == "stale" and report["worker_heartbeat_age_seconds"] == 45.0
    assert report["workers_alive"] == 0 and report["beat"] == "ok"
    assert problems == [
        "worker: last heartbeat 45 s ago (limit 30 s); is `latchkey worker` running?"
    ]


def test_the_newest_worker_counts(database: Database) -> None:
    """A worker that died and one that took over: health follows the live one."""
    _alive(database, worker_age=3600)
    write_heartbeat(database, process="worker2@host", kind="worker", now=NOW)
    problems, report = _assess(database)
    assert problems == [] and report["workers_alive"] == 1
    assert report["worker_heartbeat_age_seconds"] == 0.0


def test_missing_beat_is_not_ok(database: Database) -> None:
    write_heartbeat(database, process="worker@host", kind="worker", now=NOW)
    problems, report = _assess(database)
    assert report["beat"] == "missing" and report["beat_heartbeat_age_seconds"] is None
    assert problems == ["beat: no heartbeat ever; is `latchkey beat` running?"]


def test_overdue_grants_are_counted_and_not_ok_past_the_grace(database: Database) -> None:
    _alive(database)
    _grant(database, RequestStatus.ACTIVE, ended_ago=5)  # the sweep has not come yet: fine
    problems, report = _assess(database)
    assert problems == [] and report["overdue_grants"] == 1
    assert report["oldest_overdue_seconds"] == 5.0

    _grant(database, RequestStatus.REVOKE_FAILED, ended_ago=120)
    _grant(database, RequestStatus.REVOKING, ended_ago=50)
    _grant(database, RequestStatus.EXPIRED, ended_ago=900)  # ended: not overdue
    problems, report = _assess(database)
    assert report["overdue_grants"] == 3 and report["oldest_overdue_seconds"] == 120.0
    assert len(problems) == 1
    assert problems[0].startswith("overdue grants: 3 past their end and not revoked")
    assert "oldest by 120 s (limit 40 s)" in problems[0]


def test_schema_behind_is_not_ok_and_names_migrate(database_url: str) -> None:
    from alembic import command

    from app.cli import _alembic_config

    command.downgrade(_alembic_config(database_url), "0006")
    database = Database(database_url)
    try:
        problems, report = _assess(database)
    finally:
        database.dispose()
    assert report["schema_revision"] == "0006"
    assert report["schema"].startswith("behind: the database is at 0006")
    assert problems == [f"schema {report['schema']}"]
    assert "run `latchkey migrate`" in problems[0]


def test_a_database_never_migrated_says_so(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        problems, report = _assess(database)
    finally:
        database.dispose()
    assert report["schema_revision"] is None
    assert problems == ["schema missing: the database has no schema; run `latchkey migrate`"]


def test_heartbeat_is_one_row_per_process_kept_fresh(database: Database) -> None:
    write_heartbeat(database, process="worker@host", kind="worker", now=NOW, details={"pid": 1})
    write_heartbeat(database, process="worker@host", kind="worker", now=NOW + timedelta(seconds=5))
    with database.session() as session:
        rows = list(session.execute(select(Heartbeat)).scalars())
    assert [(r.process, r.at) for r in rows] == [("worker@host", NOW + timedelta(seconds=5))]


def test_a_heartbeat_that_cannot_be_written_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = Database(f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}")
    writer = HeartbeatWriter(database, process="worker@host", kind="worker")
    assert writer.beat() is False
    assert writer.beat() is False
    assert caplog.text.count("heartbeat of worker worker@host not written") == 1


def test_check_reports_database_and_broker(database: Database, redis_url: str) -> None:
    _alive(database, worker_age=0, beat_age=0)
    settings = Settings(redis_url=redis_url, sweep_seconds=10)
    ok, report = check(database, settings, now=NOW)
    assert ok and report["status"] == "ok" and report["problems"] == []
    assert report["database"] == "ok" and report["broker"] == "ok"

    ok, report = check(database, Settings(redis_url="redis://127.0.0.1:1/0"), now=NOW)
    assert not ok and report["status"] == "unavailable"
    assert report["broker"] == "error: ConnectionError"
    assert report["problems"] == ["broker: error: ConnectionError"]


def test_a_database_that_does_not_answer_is_not_ok(redis_url: str) -> None:
    database = Database("postgresql+psycopg://nobody@127.0.0.1:1/latchkey")
    ok, report = check(database, Settings(redis_url=redis_url), now=NOW)
    assert not ok and report["database"] == "error: OperationalError"
    assert report["broker"] == "ok"
    assert report["problems"] == ["database: error: OperationalError"]


def test_limits_follow_the_sweep_interval() -> None:
    fast = Limits.from_settings(Settings(sweep_seconds=1))
    assert fast.stale_after == timedelta(seconds=15)
    assert fast.overdue_after == timedelta(seconds=31)
    slow = Limits.from_settings(Settings(sweep_seconds=60, overdue_grace_seconds=10))
    assert slow.stale_after == timedelta(seconds=180)
    assert slow.overdue_after == timedelta(seconds=70)
