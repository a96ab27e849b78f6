"""Is Latchkey doing its job? One report for `GET /healthz` and `latchkey health`.

Not "ok" while the DB or the broker is down, the schema is behind the code, the worker or
the beat has gone silent, or a grant is overdue for its revoke (DESIGN.md, invariant 11).
`assess` reads the DB only and takes `now`, so tests decide the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, select, text
from sqlmodel import Session

from app import queries
from app.config import Settings
from app.db import Database, utcnow
from app.models import Heartbeat

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
OK = "ok"


@dataclass(frozen=True)
class Limits:
    """How old a heartbeat and how late a revoke may be before health is not ok."""

    stale_after: timedelta
    overdue_after: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        sweep = settings.sweep_seconds
        return cls(
            stale_after=timedelta(seconds=max(3 * sweep, 15.0)),
            overdue_after=timedelta(seconds=sweep + settings.overdue_grace_seconds),
        )


@lru_cache(maxsize=1)
def migrations_head() -> str | None:
    """The revision the code needs (the head of migrations/)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


@lru_cache(maxsize=1)
def known_revisions() -> frozenset[str]:
    from alembic.script import ScriptDirectory

    return frozenset(r.revision for r in ScriptDirectory(str(MIGRATIONS)).walk_revisions())


def schema_state(revision: str | None, head: str | None) -> str:
    """ok | a sentence saying what is wrong; only 'ahead' (a newer deploy) stays ok."""
    if revision is None:
        return "missing: the database has no schema; run `latchkey migrate`"
    if revision == head:
        return OK
    if revision in known_revisions():
        return (
            f"behind: the database is at {revision}, the code needs {head}; run `latchkey migrate`"
        )
    return OK  # a revision this code does not know: a newer release migrated already


def _revision(session: Session) -> str | None:
    try:
        with session.begin_nested():
            return session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception:
        return None  # no alembic_version table: never migrated


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else round(max(0.0, (now - then).total_seconds()), 1)


def assess(session: Session, *, now: datetime, limits: Limits) -> tuple[list[str], dict[str, Any]]:
    """What the DB says about the schema, the heartbeats and overdue grants.

    Returns the problems (each naming what to look at) and the report's fields.
    """
    problems: list[str] = []
    report: dict[str, Any] = {}

    revision, head = _revision(session), migrations_head()
    report["schema"] = schema_state(revision, head)
    report["schema_revision"] = revision
    report["schema_head"] = head
    if report["schema"] != OK:
        problems.append(f"schema {report['schema']}")
        return problems, report  # the tables below may not exist yet

    for kind, command in (("worker", "latchkey worker"), ("beat", "latchkey beat")):
        newest, alive = session.execute(
            select(
                func.max(Heartbeat.at),
                func.sum(case((Heartbeat.at >= now - limits.stale_after, 1), else_=0)),  # type: ignore[operator]
            ).where(Heartbeat.kind == kind)  # type: ignore[arg-type]
        ).one()
        age = _age(now, newest)
        report[f"{kind}_heartbeat_age_seconds"] = age
        report[f"{kind}s_alive"] = int(alive or 0)
        limit = limits.stale_after.total_seconds()
        if age is None:
            report[kind] = "missing"
            problems.append(f"{kind}: no heartbeat ever; is `{command}` running?")
        elif age > limit:
            report[kind] = "stale"
            problems.append(
                f"{kind}: last heartbeat {age:.0f} s ago (limit {limit:.0f} s); is `{command}` running?"
            )
        else:
            report[kind] = OK
    problems += _unserved_queues(session, now - limits.stale_after, report)

    count, oldest = queries.overdue(session, now)
    oldest_seconds = _age(now, oldest) or 0.0
    report["overdue_grants"] = count
    report["oldest_overdue_seconds"] = oldest_seconds
    if oldest_seconds > limits.overdue_after.total_seconds():
        problems.append(
            f"overdue grants: {count} past their end and not revoked, the oldest by "
            f"{oldest_seconds:.0f} s (limit {limits.overdue_after.total_seconds():.0f} s); "
            "see the worker's log and revoke_failed grants"
        )
    return problems, report


# The queues some live worker must consume (app/worker/celery_app.py), and what serves them.
SERVED_QUEUES = {
    "access": "grants and revokes; `latchkey worker` or `latchkey worker --queues access`",
    "messages": "Slack messages; `latchkey worker` or `latchkey worker --queues messages`",
}


def _unserved_queues(session: Session, since: datetime, report: dict[str, Any]) -> list[str]:
    """A queue no live worker consumes: its work waits for the sweep, or for ever.

    Only said when some worker is alive (a silent worker is its own problem, above). A
    heartbeat without `queues` is a worker of an older release: it served everything.
    """
    rows = session.execute(
        select(Heartbeat.details).where(Heartbeat.kind == "worker", Heartbeat.at >= since)  # type: ignore[arg-type,operator]
    ).scalars()
    served: set[str] = set()
    alive = False
    for details in rows:
        alive = True
        queues = (details or {}).get("queues")
        served |= set(SERVED_QUEUES) if queues is None else set(queues)
    unserved = [q for q in SERVED_QUEUES if q not in served] if alive else []
    if unserved:
        report["unserved_queues"] = unserved
    return [f"queue {q}: no live worker consumes it ({SERVED_QUEUES[q]})" for q in unserved]


def _broker(redis_url: str) -> str:
    try:
        import redis

        redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2).ping()
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return OK


def check(
    db: Database,
    settings: Settings,
    *,
    now: datetime | None = None,
    also: Mapping[str, str] | None = None,
) -> tuple[bool, dict[str, Any]]:
    """The whole report: database, broker, then what the DB says. (ok, JSON-able dict).

    `also` adds what only the calling process knows, by name (e.g. the web's "slack"):
    anything but "ok" is a problem.
    """
    now = now or utcnow()
    problems: list[str] = []
    fields: dict[str, Any] = {}
    try:
        with db.session() as session:
            session.execute(text("SELECT 1"))
            fields["database"] = OK
            found, report = assess(session, now=now, limits=Limits.from_settings(settings))
            problems += found
            fields.update(report)
    except Exception as exc:
        fields["database"] = f"error: {type(exc).__name__}"
        problems.append(f"database: {fields['database']}")
    fields["broker"] = _broker(settings.redis_url)
    if fields["broker"] != OK:
        problems.append(f"broker: {fields['broker']}")
    for name, state in (also or {}).items():
        fields[name] = state
        if state != OK:
            problems.append(f"{name}: {state}")
    ok = not problems
    return ok, {"status": OK if ok else "unavailable", "problems": problems, **fields}
