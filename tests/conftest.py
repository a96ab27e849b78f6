"""Shared fixtures: a fresh database on every backend under test, flows, Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from app.audit import AuditLog
from app.cli import migrate
from app.db import Database
from app.flows.loader import FlowRegistry, load_flows
from tests.factories import AUDIT_KEY, write_flow

REDIS_URL = os.environ.get("LATCHKEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("LATCHKEY_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", *(["postgresql"] if POSTGRES_URL else [])]


def _fresh_postgres_database() -> tuple[str, str]:
    import psycopg

    assert POSTGRES_URL is not None
    name = f"latchkey_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(POSTGRES_URL, autocommit=True)
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return name, make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(name: str) -> None:
    import psycopg

    admin = psycopg.connect(POSTGRES_URL, autocommit=True)
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def database_url_for(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'latchkey.db'}"
        return
    name, url = _fresh_postgres_database()
    try:
        yield url
    finally:
        _drop_postgres_database(name)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, migrated database on each backend: SQLite always, PostgreSQL when configured."""
    for url in database_url_for(request.param, tmp_path):
        migrate(url)
        yield url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.dispose()


@pytest.fixture
def audit() -> AuditLog:
    return AuditLog(AUDIT_KEY.encode())


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
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis is needed at {REDIS_URL} ({exc}). Start it with: "
            "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
            pytrace=False,
        )
    return REDIS_URL
