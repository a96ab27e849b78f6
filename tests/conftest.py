"""Shared fixtures: a fresh database on every backend under test, flows, Redis.

The suite runs on pytest-xdist workers (scripts/test); everything here is per worker:
each has its own Redis and its own migrated template databases, and every test still
gets a database of its own.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from app.audit import AuditLog
from app.db import Database
from app.flows.loader import FlowRegistry, load_flows
from app.testing.mariadb_server import DEFAULT_ROOT_URL
from tests.databases import (
    PostgresPool,
    copy_sqlite,
    migrated_sqlite,
    url_of,
)
from tests.factories import AUDIT_KEY, write_flow

# Unset: each worker runs a private redis-server. Set: that Redis, worker N on db base + N.
REDIS_URL = os.environ.get("LATCHKEY_TEST_REDIS_URL")
POSTGRES_URL = os.environ.get("LATCHKEY_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", *(["postgresql"] if POSTGRES_URL else [])]
# MariaDB, root's connection: the machine's own by default (a new machine and CI have it, so
# the tests of MariaDB logins fail, rather than skip, where it is not running).
MARIADB_URL = os.environ.get("LATCHKEY_TEST_MARIADB_URL", DEFAULT_ROOT_URL)


def worker_index() -> int:
    """0 when serial; N on xdist worker gwN."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))


def migrated_database_for(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> Iterator[str]:
    """A new database of `backend`, migrated: a copy of the worker's migrated template
    (tests/databases.py), so neither a test nor a stack (`LocalStack(migrated=True)`) pays
    for a migration: a `latchkey migrate` process before each stack cost 1 to 2 s."""
    if backend == "sqlite":
        yield copy_sqlite(request.getfixturevalue("_sqlite_template"), tmp_path / "latchkey.db")
        return
    pool: PostgresPool = request.getfixturevalue("_postgres_pool")
    name = pool.take()
    try:
        yield url_of(pool.admin_url, name)
    finally:
        pool.give_back(name)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_sqlite(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def _postgres_pool() -> Iterator[PostgresPool]:
    assert POSTGRES_URL is not None
    pool = PostgresPool(POSTGRES_URL)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, migrated database on each backend: SQLite always, PostgreSQL when configured
    (tests/databases.py: copies of a database migrated once per worker)."""
    yield from migrated_database_for(request, request.param, tmp_path)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def audit() -> AuditLog:
    return AuditLog(AUDIT_KEY.encode())


@pytest.fixture
def cli_settings(database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`latchkey …` commands run in this process against this test's database and key."""
    from app.config import get_settings

    monkeypatch.setenv("DATABASE_URL", database.url)
    monkeypatch.setenv("LATCHKEY_AUDIT_KEY", AUDIT_KEY)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def flows_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "flows"
    directory.mkdir()
    write_flow(directory)
    return directory


@pytest.fixture
def flows(flows_dir: Path) -> FlowRegistry:
    return load_flows(flows_dir)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This worker's Redis: its own redis-server, or its own db of LATCHKEY_TEST_REDIS_URL.

    Stacks empty their Redis and their Celery workers take any task on it, so two test
    workers must never share a database.
    """
    import redis

    if REDIS_URL is None:
        if shutil.which("redis-server") is None:
            pytest.fail(
                "The tests need redis-server (apt-get install redis-server), or a Redis at "
                "LATCHKEY_TEST_REDIS_URL (worker N uses its db + N).",
                pytrace=False,
            )
        from app.testing.redis_server import RedisServer

        server = RedisServer(tmp_path_factory.mktemp("redis"), keep_data=False).start()
        try:
            yield server.url
        finally:
            server.stop()
        return
    base = make_url(REDIS_URL)
    db = int(base.database or 0) + worker_index()
    if db > 15:
        pytest.fail(
            f"LATCHKEY_TEST_REDIS_URL={REDIS_URL}: worker {worker_index()} would need db {db} "
            "(Redis has 0-15). Use a lower db, fewer workers (-n), or unset it to run a "
            "private redis-server per worker.",
            pytrace=False,
        )
    url = base.set(database=str(db)).render_as_string(hide_password=False)
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis is needed at {url} ({exc}). Start it with: "
            "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
            pytrace=False,
        )
    yield url


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """Stop when xdist's loadgroup dropped the e2e stack groups (tests/e2e/conftest.py):
    nothing would fail, but each module's stack would start again for every test, at seconds
    of CPU each. pytest 9.2 with pytest-xdist 3.8 did (pytest-xdist#1386)."""
    if node.config.getvalue("dist") != "loadgroup":
        return
    lost = [i for i in ids if "/e2e/" in i and "@" not in i.rsplit("]", 1)[-1]]
    if lost:
        pytest.exit(
            f"--dist loadgroup ignored the e2e stack groups (first: {lost[0]}): this pytest "
            "and pytest-xdist disagree on node ids; install the versions of requirements.lock",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )
