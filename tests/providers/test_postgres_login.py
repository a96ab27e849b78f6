"""Ephemeral PostgreSQL logins against a real server that checks passwords (issue 18.1).

A private PostgreSQL (app/testing/postgres_server.py): the machine's own trusts every local
connection, where any password would do. The provider's admin login is least-privilege
(CREATEROLE and pg_signal_backend), as docs/providers.md says to set it up.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from app.flows.db_targets import PostgresLoginTarget
from app.providers.base import GrantSpec, ProviderError
from app.providers.databases.postgres import PostgresLoginProvider
from app.testing.postgres_server import ADMIN, PostgresServer, private_postgres

KEY = b"credentials-key-0123456789abcdef"
DATABASE = "warehouse"
ROLE = "warehouse_read"

pytestmark = pytest.mark.skipif(
    shutil.which("runuser") is None, reason="needs runuser to start PostgreSQL as its user"
)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with private_postgres(
        DATABASE,
        f"CREATE ROLE {ROLE} NOLOGIN",
        f"GRANT {ROLE} TO {ADMIN} WITH ADMIN OPTION",
        "CREATE TABLE orders (id int)",
        "INSERT INTO orders VALUES (1), (2)",
        f"GRANT SELECT ON orders TO {ROLE}",
    ) as pg:
        yield pg


@pytest.fixture
def provider(server: PostgresServer) -> PostgresLoginProvider:
    return PostgresLoginProvider(server.url(user=ADMIN), KEY)


TARGET = PostgresLoginTarget(name="warehouse-read", database=DATABASE, roles=(ROLE,))


def _spec(person: str, ends_in: timedelta = timedelta(hours=1)) -> GrantSpec:
    end = (datetime.now(UTC) + ends_in).replace(microsecond=0)
    return GrantSpec(principal=person, target=TARGET, expires_at=end)


def _person() -> str:
    return f"ann.{uuid.uuid4().hex[:8]}@example.com"


def _orders(connection: str) -> int:
    with psycopg.connect(connection, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM orders").fetchone()
    assert row is not None
    return int(row[0])


def test_a_login_works_during_its_grant_and_its_open_session_is_ended_with_it(
    provider: PostgresLoginProvider, server: PostgresServer
) -> None:
    spec = _spec(_person())
    details = provider.grant(spec)
    creds = provider.credentials(spec)
    assert creds is not None and details["login"] == creds["login"]
    assert creds["login"].startswith("lk_") and spec.principal not in creds["login"]
    # What the trail keeps says which login, never how to open it.
    assert creds["password"] not in repr(details)
    assert _orders(creds["connection"]) == 2  # the role's privileges come with the login
    assert provider.check(spec)

    held_open = psycopg.connect(creds["connection"], autocommit=True)
    try:
        ended = provider.revoke(spec)
        assert ended["sessions_terminated"] == 1 and ended["dropped"] is True
        with pytest.raises(psycopg.OperationalError):
            held_open.execute("SELECT count(*) FROM orders")
    finally:
        held_open.close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _orders(creds["connection"])
    assert not provider.check(spec)
    assert provider.revoke(spec) == {"login": creds["login"], "already_absent": True}
    # The password went to PostgreSQL only as a SCRAM verifier: no statement logged has it.
    assert creds["password"] not in server.log_text


def test_valid_until_is_the_grants_end_and_an_extension_moves_it_keeping_the_password(
    provider: PostgresLoginProvider, server: PostgresServer
) -> None:
    spec = _spec(_person())
    login = provider.grant(spec)["login"]
    assert server.valid_until(login) == spec.expires_at
    before = provider.credentials(spec)
    later = GrantSpec(spec.principal, TARGET, spec.expires_at + timedelta(hours=2))
    assert provider.grant(later)["created"] is False
    assert server.valid_until(login) == later.expires_at
    after = provider.credentials(spec)
    assert before is not None and after == before
    assert _orders(after["connection"]) == 2
    provider.revoke(spec)


def test_postgres_itself_refuses_the_password_after_its_end(
    provider: PostgresLoginProvider,
) -> None:
    """Native expiry: with Latchkey down at the end, nobody logs in after it."""
    spec = _spec(_person(), ends_in=timedelta(seconds=3))
    provider.grant(spec)
    creds = provider.credentials(spec)
    assert creds is not None and _orders(creds["connection"]) == 2
    time.sleep(max(0.0, (spec.expires_at - datetime.now(UTC)).total_seconds()) + 0.5)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _orders(creds["connection"])
    # Still there, for Latchkey's revoke (or reconciliation) to drop.
    assert provider.check(spec)
    provider.revoke(spec)
    assert not provider.check(spec)


def test_a_new_grant_after_the_end_has_a_new_password(provider: PostgresLoginProvider) -> None:
    spec = _spec(_person())
    provider.grant(spec)
    first = provider.credentials(spec)
    provider.revoke(spec)
    provider.grant(spec)
    second = provider.credentials(spec)
    assert first is not None and second is not None
    assert first["login"] == second["login"] and first["password"] != second["password"]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _orders(first["connection"])
    assert _orders(second["connection"]) == 2
    provider.revoke(spec)


def test_a_role_latchkey_did_not_make_is_never_taken_or_dropped(
    provider: PostgresLoginProvider, server: PostgresServer
) -> None:
    spec = _spec(_person())
    login = provider.login(spec)
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {login} LOGIN")  # someone's, by chance or on purpose
    try:
        with pytest.raises(ProviderError, match="not a Latchkey login") as refused:
            provider.revoke(spec)
        assert refused.value.transient is False
        with pytest.raises(ProviderError, match=r"exists and is not .*Latchkey login"):
            provider.grant(spec)
        assert provider.credentials(spec) is None
        with psycopg.connect(server.url(), autocommit=True) as conn:
            assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone()
    finally:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {login}")


def test_the_orphan_pass_sees_latchkeys_logins_of_the_target_only(
    provider: PostgresLoginProvider,
) -> None:
    spec = _spec(_person())
    provider.grant(spec)
    other = PostgresLoginTarget(name="other", database="postgres", roles=(ROLE,))
    try:
        assert spec.principal in provider.provisioned(TARGET)
        assert spec.principal not in provider.provisioned(other)
    finally:
        provider.revoke(spec)
    assert spec.principal not in provider.provisioned(TARGET)


def test_an_unreachable_server_is_a_transient_error_without_the_url(
    server: PostgresServer,
) -> None:
    down = PostgresLoginProvider(
        f"postgresql://{ADMIN}:admin-secret@127.0.0.1:1/postgres", KEY, connect_timeout=2
    )
    with pytest.raises(ProviderError) as raised:
        down.grant(_spec(_person()))
    assert raised.value.transient is True and "admin-secret" not in str(raised.value)
