"""The shipped custom-provider example against a real PostgreSQL, where Latchkey may call
it twice at the same moment: the timed revoke and the sweep's revoke of a grant that is due
(seen in CI: the second REVOKE failed with "tuple concurrently deleted")."""

from __future__ import annotations

import importlib.util
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from app.db import utcnow
from app.flows.schema import CustomTarget
from app.providers.base import GrantSpec
from tests.conftest import POSTGRES_URL

EXAMPLE = Path(__file__).resolve().parents[2] / "flows" / "provider_postgres_role.py"


def _provider_class() -> Any:
    spec = importlib.util.spec_from_file_location("provider_postgres_role_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PostgresRole


@pytest.fixture
def roles(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[psycopg.Connection, str, str]]:
    if POSTGRES_URL is None:
        pytest.skip("LATCHKEY_TEST_POSTGRES_URL is not set: no PostgreSQL to grant roles in")
    monkeypatch.setenv("LATCHKEY_POSTGRES_ROLE_URL", POSTGRES_URL)
    suffix = uuid.uuid4().hex[:8]
    role, member = f"latchkey_race_{suffix}", f"race-{suffix}@example.com"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for name in (role, member):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
        try:
            yield conn, role, member
        finally:
            for name in (member, role):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def _at_once(call: Callable[[], object], times: int = 2) -> list[BaseException]:
    """Run `call` in `times` threads released together; what each raised."""
    barrier, failures = threading.Barrier(times), []

    def run() -> None:
        barrier.wait()
        try:
            call()
        except BaseException as exc:  # reported to the test
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_two_revokes_or_grants_at_the_same_moment_both_succeed(
    roles: tuple[psycopg.Connection, str, str],
) -> None:
    _, role, member = roles
    # One instance per worker process in Latchkey: two processes, two instances.
    first, second = _provider_class()(), _provider_class()()
    spec = GrantSpec(
        principal=member,
        target=CustomTarget(name="db-read", using="postgres_role", settings={"role": role}),
        expires_at=utcnow() + timedelta(minutes=5),
    )
    calls = iter((first, second) * 1000)
    for _ in range(15):  # the race is lost most times; a few rounds make it certain
        assert _at_once(lambda: next(calls).grant(spec)) == []
        assert first.check(spec), "granted"
        assert _at_once(lambda: next(calls).revoke(spec)) == []
        assert not first.check(spec), "revoked"
