"""Start-up checks: what `web`, `worker` and `beat` verify before they do anything, and
what `latchkey check` reports.

Each check returns a problem — one sentence naming the setting and the fix — or None.
A process stops at the first problem (`require`), with that one line and no traceback;
`latchkey check` runs them all (`run_all`). The database and Redis get a bounded time
to answer (LATCHKEY_STARTUP_TIMEOUT_SECONDS): a deploy may start us before them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from app.config import ConfigError, Settings
from app.db import Database
from app.flows.loader import FlowError, FlowRegistry, load_flows
from app.logs import one_line

BACKENDS = ("sqlite", "postgresql")
_URL_EXAMPLE = "e.g. postgresql://user:password@host:5432/latchkey or sqlite:///latchkey.db"


class StartupError(ConfigError):
    """A start-up check failed; the message is the one line to print."""


class Skipped(str):
    """Not a problem: the check could not run because an earlier one failed (its reason)."""


@dataclass
class Probe:
    """What the checks share: the settings, and what earlier checks built (so later
    checks and the runtime reuse it instead of building it twice)."""

    settings: Settings
    require_slack: bool = True
    # False where a process must keep serving through a Redis outage (a restarted web
    # worker: requests are stored and the sweep finds them when Redis is back).
    require_broker: bool = True
    # Seconds the database and Redis get to answer; None: LATCHKEY_STARTUP_TIMEOUT_SECONDS.
    wait_seconds: float | None = None
    key: bytes | None = None
    flows: FlowRegistry | None = None
    database_url_ok: bool = False
    database_up: bool = False
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    @property
    def timeout(self) -> float:
        if self.wait_seconds is not None:
            return self.wait_seconds
        return self.settings.startup_timeout_seconds


def _retrying(probe: Probe, attempt: Callable[[], None]) -> Exception | None:
    """Call `attempt` until it returns or the time is up; the last error, or None."""
    deadline = time.monotonic() + probe.timeout
    while True:
        try:
            attempt()
            return None
        except Exception as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                return exc
            probe.sleep(min(1.0, left))


def _waited(probe: Probe) -> str:
    seconds = probe.timeout
    return f"after {seconds:g} s" if seconds else "at once"


def slack_settings(probe: Probe) -> str | None:
    if not probe.require_slack:
        return None
    try:
        probe.settings.require_slack()
    except ConfigError as exc:
        return str(exc)
    return None


def audit_key_set(probe: Probe) -> str | None:
    try:
        probe.key = probe.settings.require_audit_key()
    except ConfigError as exc:
        return str(exc)
    return None


def flows_valid(probe: Probe) -> str | None:
    try:
        probe.flows = load_flows(probe.settings.flows_dir)
    except FlowError as exc:
        return (
            "LATCHKEY_FLOWS: "
            + "; ".join(exc.problems or [str(exc)])
            + (" (run `latchkey flows check`)")
        )
    from app.flows.needs import settings_problems

    needs = settings_problems(probe.flows, probe.settings)
    if needs:
        return "LATCHKEY_FLOWS: " + "; ".join(problem for _, problem in needs)
    return None


def database_url_valid(probe: Probe) -> str | None:
    url = probe.settings.database_url
    try:
        backend = make_url(url).get_backend_name()
    except Exception:
        return f"DATABASE_URL is not a database URL; set it to a SQLAlchemy URL, {_URL_EXAMPLE}"
    if backend not in BACKENDS:
        return (
            f"DATABASE_URL names the database type {backend!r}; Latchkey runs on PostgreSQL "
            f"or SQLite: {_URL_EXAMPLE}"
        )
    probe.database_url_ok = True
    return None


def _probe_engine(url: str, timeout: float) -> Engine:
    connect_args: dict[str, object] = {}
    if make_url(url).get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = max(1, min(5, round(timeout) or 1))
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


def database_reachable(probe: Probe) -> str | None:
    if not probe.database_url_ok:
        return Skipped("DATABASE_URL is not usable")
    url = probe.settings.database_url
    engine = _probe_engine(url, probe.timeout)

    def connect() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        error = _retrying(probe, connect)
    finally:
        engine.dispose()
    if error is None:
        probe.database_up = True
        return None
    where = make_url(url).render_as_string(hide_password=True)
    return (
        f"DATABASE_URL: the database at {where} did not answer {_waited(probe)} "
        f"({type(error).__name__}); check that it runs and this host can reach it "
        "(LATCHKEY_STARTUP_TIMEOUT_SECONDS sets how long start-up waits)"
    )


def schema_at_head(probe: Probe) -> str | None:
    from app.health import OK, _revision, migrations_head, schema_state

    if not probe.database_up:
        return Skipped("the database does not answer")
    db = Database(probe.settings.database_url)
    try:
        with db.session() as session:
            state = schema_state(_revision(session), migrations_head())
    finally:
        db.dispose()
    return None if state == OK else f"DATABASE_URL: the schema is {state}"


def audit_key_matches(probe: Probe) -> str | None:
    from app.audit.keys import require_matching_key

    if not probe.database_up or probe.key is None:
        return Skipped("needs the database and LATCHKEY_AUDIT_KEY")
    db = Database(probe.settings.database_url)
    try:
        require_matching_key(db, probe.key)
    except ConfigError as exc:
        return str(exc)
    finally:
        db.dispose()
    return None


def redis_reachable(probe: Probe) -> str | None:
    import redis

    if not probe.require_broker:
        return None
    url = probe.settings.redis_url
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    except ValueError:
        return "REDIS_URL is not a Redis URL; set it like redis://:password@host:6379/0"
    try:
        error = _retrying(probe, client.ping)
    finally:
        client.close()
    if error is None:
        return None
    where = urlsplit_host(url)
    return (
        f"REDIS_URL: Redis at {where} did not answer {_waited(probe)} ({type(error).__name__}); "
        "check that it runs, this host can reach it and the password is right "
        "(LATCHKEY_STARTUP_TIMEOUT_SECONDS sets how long start-up waits)"
    )


def urlsplit_host(url: str) -> str:
    """host:port/db of a URL, without its credentials."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.hostname or '?'}:{port or 6379}{parts.path or ''}"


# In order: a check may rely on what an earlier one found (the database's checks on its URL).
CHECKS: list[tuple[str, Callable[[Probe], str | None]]] = [
    ("slack settings", slack_settings),
    ("audit key", audit_key_set),
    ("flows", flows_valid),
    ("database url", database_url_valid),
    ("database", database_reachable),
    ("schema", schema_at_head),
    ("audit chain", audit_key_matches),
    ("redis", redis_reachable),
]


def run_all(probe: Probe) -> list[tuple[str, str | None]]:
    """Every check's name and problem (None when it passed; a Skipped when it could not run)."""
    return [(name, _one_line(check(probe))) for name, check in CHECKS]


def require(probe: Probe) -> Probe:
    """Stop at the first problem: StartupError with its one line."""
    for _, check in CHECKS:
        problem = _one_line(check(probe))
        if problem and not isinstance(problem, Skipped):
            raise StartupError(problem)
    return probe


def _one_line(problem: str | None) -> str | None:
    if problem is None or isinstance(problem, Skipped):
        return problem
    return one_line(" ".join(problem.split("\n")))
