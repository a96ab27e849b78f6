"""The schema keeps the sweeps O(due): with a long ended history and many live grants, the
database answers every sweep question from the open-grant index, never by reading the
history or every active request. Checked on the plans each backend chooses (EXPLAIN), the
schema's behaviour, not a timing; bench/sweep_cost.py measures the time."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, text
from sqlmodel import SQLModel

from app import queries
from app.audit import AuditLog
from app.config import Settings
from app.db import Database, utcnow
from app.flows.loader import FlowRegistry
from app.runtime import Runtime
from app.sweeps import sweep
from app.testing.grant_history import add_grants

OPEN_INDEX = "ix_grant_open_expires_at"
ENDED_INDEX = "ix_grant_ended_at"


@pytest.fixture
def history(database: Database) -> Database:
    """Many ended grants, fewer live ones ending hours from now: nothing is due."""
    add_grants(database, live=2000, ended=6000)
    if database.is_postgres:
        # As autovacuum would after a load; SQLite gets no statistics, as in production.
        with database.engine.connect() as connection:
            connection.execute(text("ANALYZE"))
            connection.commit()
    return database


@contextmanager
def statements(db: Database) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the block sends to the database, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def plan(db: Database, statement: str, parameters: Any) -> str:
    """The plan the database chooses for a statement, as one text."""
    explain = "EXPLAIN " if db.is_postgres else "EXPLAIN QUERY PLAN "
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(explain + statement, parameters)
        rows = cursor.fetchall()
    finally:
        raw.close()
    # PostgreSQL: one line per row; SQLite: (id, parent, notused, detail).
    return "\n".join(str(row[0] if db.is_postgres else row[-1]) for row in rows)


def full_scans(db: Database, text_plan: str) -> list[str]:
    """Lines of a plan that read the grant or request table from end to end."""
    lines = text_plan.splitlines()
    if db.is_postgres:
        return [
            line
            for line in lines
            if "Seq Scan on grant" in line or "Seq Scan on access_request" in line
        ]
    return [line for line in lines if line.startswith(("SCAN grant", "SCAN access_request"))]


def plans_of(db: Database, act: Any) -> list[tuple[str, str]]:
    with statements(db) as seen:
        act()
    return [(s, plan(db, s, p)) for s, p in seen if s.lstrip().upper().startswith("SELECT")]


def test_a_sweep_with_nothing_due_reads_open_grants_by_index_only(
    history: Database, flows: FlowRegistry, audit: AuditLog, redis_url: str
) -> None:
    settings = Settings(slack_bot_token="xoxb-test", database_url=history.url, redis_url=redis_url)
    rt = Runtime(settings=settings, db=history, flows=flows, audit=audit)
    counts: dict[str, int] = {}
    plans = plans_of(history, lambda: counts.update(sweep(rt)))

    assert not any(counts.values()), counts  # nothing was due: the plans are of idle questions
    assert plans, "the sweep asked the database nothing"
    for statement, text_plan in plans:
        assert not full_scans(history, text_plan), f"{statement}\n{text_plan}"
        if '"grant"' in statement or " grant" in statement:
            # Questions about grants start from the open ones in the time range, not from
            # every active request (that would cost O(active), not O(due)).
            assert OPEN_INDEX in text_plan, f"{statement}\n{text_plan}"
            assert "ix_access_request_status" not in text_plan, f"{statement}\n{text_plan}"
    assert any(OPEN_INDEX in p for _, p in plans)


def test_overdue_figures_and_recently_ended_grants_use_their_indexes(history: Database) -> None:
    now = utcnow()
    with history.session() as session:
        overdue = plans_of(history, lambda: queries.overdue(session, now))
        ended = plans_of(history, lambda: queries.recently_ended(session, now - timedelta(hours=1)))
        assert queries.overdue(session, now) == (0, None)
    assert len(overdue) == 1 and OPEN_INDEX in overdue[0][1], overdue
    assert len(ended) == 1 and ENDED_INDEX in ended[0][1], ended
    assert not full_scans(history, overdue[0][1] + "\n" + ended[0][1])


def test_the_migrated_schema_matches_the_models(database: Database) -> None:
    with database.engine.connect() as connection, warnings.catch_warnings():
        # SQLite cannot reflect expression indexes: alembic says so and compares the rest.
        warnings.simplefilter("ignore")
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []
    listing = (
        "SELECT indexname FROM pg_indexes WHERE tablename = 'grant'"
        if database.is_postgres
        else "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'grant'"
    )
    with database.engine.connect() as connection:
        indexes = set(connection.execute(text(listing)).scalars())
    assert {OPEN_INDEX, ENDED_INDEX} <= indexes
    assert "ix_grant_expires_at" not in indexes  # replaced by the open-grant index
