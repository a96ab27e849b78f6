"""Checked-out PostgreSQL accounts against a real server that checks passwords (issue 18.3).

A private PostgreSQL (app/testing/postgres_server.py) with a least-privilege admin
(CREATEROLE, pg_signal_backend), and a break-glass account that exists before Latchkey.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from app.flows.db_targets import PostgresAccountTarget
from app.providers.base import GrantSpec, ProviderError
from app.providers.databases.postgres_account import PostgresAccountProvider
from app.testing.postgres_server import ADMIN, PostgresServer, private_postgres

KEY = b"credentials-key-0123456789abcdef"
DATABASE = "warehouse"
ORIGINAL = "the-password-before-latchkey"

pytestmark = pytest.mark.skipif(
    shutil.which("runuser") is None, reason="needs runuser to start PostgreSQL as its user"
)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with private_postgres(
        DATABASE,
        "CREATE ROLE root_like SUPERUSER LOGIN",
        "CREATE TABLE orders (id int)",
        "INSERT INTO orders VALUES (1), (2), (3)",
    ) as pg:
        yield pg


@pytest.fixture
def account(server: PostgresServer) -> str:
    """A privileged account of its own per test, with the password it had before."""
    name = f"dba_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN CREATEDB PASSWORD '{ORIGINAL}'")
        conn.execute(f"GRANT pg_read_all_data TO {name}")
    return name


@pytest.fixture
def provider(server: PostgresServer) -> PostgresAccountProvider:
    return PostgresAccountProvider(server.url(user=ADMIN), KEY)


def _target(account: str) -> PostgresAccountTarget:
    return PostgresAccountTarget(name="dba", account=account, database=DATABASE)


def _spec(account: str, person: str, ends_in: timedelta = timedelta(hours=1)) -> GrantSpec:
    end = (datetime.now(UTC) + ends_in).replace(microsecond=0)
    return GrantSpec(principal=person, target=_target(account), expires_at=end)


def _orders(server: PostgresServer, user: str, password: str) -> int:
    dsn = make_conninfo(
        "", host="127.0.0.1", port=str(server.port), dbname=DATABASE, user=user, password=password
    )
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM orders").fetchone()
    assert row is not None
    return int(row[0])


def test_a_checkout_rotates_the_password_and_the_check_in_rotates_it_again(
    provider: PostgresAccountProvider, server: PostgresServer, account: str
) -> None:
    spec = _spec(account, "ann@example.com")
    details = provider.grant(spec)
    assert details["rotated"] is True
    creds = provider.credentials(spec)
    assert creds is not None and creds["login"] == account
    assert creds["password"] not in repr(details)
    # The password it had before Latchkey no longer opens it; the one shown does.
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _orders(server, account, ORIGINAL)
    assert _orders(server, account, creds["password"]) == 3
    with psycopg.connect(creds["connection"], connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (account,)
    assert server.valid_until(account) == spec.expires_at
    assert provider.check(spec) and provider.provisioned(spec.target) == ["ann@example.com"]

    held_open = psycopg.connect(creds["connection"], autocommit=True)
    try:
        back = provider.revoke(spec)
        assert back == {"account": account, "rotated": True, "sessions_terminated": 1}
        with pytest.raises(psycopg.OperationalError):
            held_open.execute("SELECT count(*) FROM orders")
    finally:
        held_open.close()
    # What the holder saw stops working at check-in.
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _orders(server, account, creds["password"])
    assert provider.credentials(spec) is None and not provider.check(spec)
    assert provider.provisioned(spec.target) == []
    assert provider.revoke(spec) == {"account": account, "already_checked_in": True}
    # PostgreSQL only ever received SCRAM verifiers.
    assert creds["password"] not in server.log_text


def test_an_extension_moves_valid_until_and_keeps_the_password(
    provider: PostgresAccountProvider, server: PostgresServer, account: str
) -> None:
    spec = _spec(account, "ann@example.com")
    provider.grant(spec)
    before = provider.credentials(spec)
    later = GrantSpec(spec.principal, spec.target, spec.expires_at + timedelta(hours=2))
    assert provider.grant(later)["rotated"] is False
    assert server.valid_until(account) == later.expires_at
    assert provider.credentials(later) == before
    assert before is not None and _orders(server, account, before["password"]) == 3
    provider.revoke(later)


def test_the_next_holder_gets_a_new_password_and_the_last_one_cannot_end_it(
    provider: PostgresAccountProvider, server: PostgresServer, account: str
) -> None:
    ann, bob = _spec(account, "ann@example.com"), _spec(account, "bob@example.com")
    provider.grant(ann)
    ann_creds = provider.credentials(ann)
    provider.revoke(ann)
    provider.grant(bob)
    bob_creds = provider.credentials(bob)
    assert ann_creds is not None and bob_creds is not None
    assert ann_creds["password"] != bob_creds["password"]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _orders(server, account, ann_creds["password"])
    # A late revoke of Ann's (a retry) leaves Bob's check-out as it is.
    assert provider.revoke(ann) == {"account": account, "already_checked_in": True}
    assert _orders(server, account, bob_creds["password"]) == 3
    assert provider.credentials(ann) is None
    provider.revoke(bob)


def test_a_missing_account_or_a_superuser_is_named_and_never_half_changed(
    provider: PostgresAccountProvider,
) -> None:
    with pytest.raises(ProviderError, match="does not exist") as missing:
        provider.grant(_spec("dba_nobody", "ann@example.com"))
    assert missing.value.transient is False
    assert provider.verify(_target("dba_nobody")) == [
        "PostgreSQL account 'dba_nobody' does not exist"
    ]
    problems = provider.verify(_target("root_like"))
    assert problems and "superuser" in problems[0]
    with pytest.raises(psycopg.Error):
        # CREATEROLE cannot touch a superuser: PostgreSQL says so, nothing is changed.
        provider.grant(_spec("root_like", "ann@example.com"))
