"""Ephemeral MariaDB logins against the machine's real MariaDB (issue 18.1).

The provider's admin is least-privilege, made with root by the statements docs/providers.md
gives (app/providers/databases/mariadb_setup.py). Not skipped without MariaDB: CI starts it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pymysql
import pytest

from app.flows.db_targets import MariaDBLoginTarget
from app.providers.base import GrantSpec, ProviderError
from app.providers.databases.mariadb import MariaDBLoginProvider, native_hash
from app.providers.databases.mariadb_setup import setup_sql
from app.testing.mariadb_server import MariaDBCorner
from tests.conftest import MARIADB_URL

KEY = b"credentials-key-0123456789abcdef"


@pytest.fixture(scope="module")
def corner() -> Iterator[MariaDBCorner]:
    made = MariaDBCorner(MARIADB_URL).create()
    try:
        yield made
    finally:
        made.drop()


@pytest.fixture
def provider(corner: MariaDBCorner) -> MariaDBLoginProvider:
    return MariaDBLoginProvider(corner.admin_url, KEY)


def _target(corner: MariaDBCorner) -> MariaDBLoginTarget:
    return MariaDBLoginTarget(name="orders-read", database=corner.data, role=corner.role)


def _spec(corner: MariaDBCorner, ends_in: timedelta = timedelta(hours=1)) -> GrantSpec:
    person = f"ann.{uuid.uuid4().hex[:8]}@example.com"
    end = (datetime.now(UTC) + ends_in).replace(microsecond=0)
    return GrantSpec(principal=person, target=_target(corner), expires_at=end)


def _connect(connection: str) -> pymysql.connections.Connection:
    url = urlsplit(connection)
    return pymysql.connect(
        host=url.hostname,
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        database=url.path.strip("/"),
        connect_timeout=5,
    )


def _orders(connection: str) -> int:
    with _connect(connection) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders")
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


def _refused(connection: str) -> str:
    with pytest.raises(pymysql.MySQLError) as refused:
        _orders(connection)
    return str(refused.value)


def _exists(corner: MariaDBCorner, login: str) -> bool:
    with corner.root() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM mysql.global_priv WHERE User = %s", (login,))
        return cur.fetchone() is not None


def test_a_login_reads_during_its_grant_and_its_open_session_is_killed_at_the_end(
    provider: MariaDBLoginProvider, corner: MariaDBCorner
) -> None:
    spec = _spec(corner)
    details = provider.grant(spec)
    creds = provider.credentials(spec)
    assert creds is not None and details["login"] == creds["login"] and details["created"]
    assert creds["login"].startswith("lk_") and spec.principal not in creds["login"]
    assert creds["password"] not in repr(details)
    # The role is the login's default: its privileges come without SET ROLE.
    assert _orders(creds["connection"]) == 2
    assert provider.check(spec)

    held_open = _connect(creds["connection"])
    try:
        ended = provider.revoke(spec)
        assert ended == {"login": creds["login"], "sessions_terminated": 1, "dropped": True}
        with pytest.raises(pymysql.MySQLError), held_open.cursor() as cur:
            cur.execute("SELECT count(*) FROM orders")
    finally:
        held_open.close()
    assert "Access denied" in _refused(creds["connection"])
    assert not provider.check(spec) and not _exists(corner, creds["login"])
    assert provider.revoke(spec) == {"login": creds["login"], "already_absent": True}


def test_the_password_reaches_mariadb_only_as_its_hash(
    provider: MariaDBLoginProvider, corner: MariaDBCorner, tmp_path: Path
) -> None:
    """Every statement and connection the server sees, in its general log: no password."""
    log_file = Path("/tmp") / f"latchkey-general-{uuid.uuid4().hex}.log"
    with corner.root() as conn, conn.cursor() as cur:
        cur.execute("SELECT @@general_log, @@general_log_file, @@log_output")
        was = cur.fetchone()
        assert was is not None
        cur.execute("SET GLOBAL log_output = 'FILE'")
        cur.execute("SET GLOBAL general_log_file = %s", (str(log_file),))
        cur.execute("SET GLOBAL general_log = 1")
    spec = _spec(corner)
    try:
        provider.grant(spec)
        creds = provider.credentials(spec)
        assert creds is not None and _orders(creds["connection"]) == 2
        provider.revoke(spec)
    finally:
        with corner.root() as conn, conn.cursor() as cur:
            cur.execute("SET GLOBAL general_log = %s", (int(was[0]),))
            cur.execute("SET GLOBAL general_log_file = %s", (was[1],))
            cur.execute("SET GLOBAL log_output = %s", (was[2],))
    logged = log_file.read_text(errors="replace")
    log_file.unlink(missing_ok=True)
    # The log is real: it has the statements that made and dropped the login.
    assert f"CREATE USER '{creds['login']}'" in logged and "DROP USER" in logged
    assert native_hash(creds["password"]) in logged
    assert creds["password"] not in logged


def test_an_overlapping_grant_keeps_the_password_and_unlocks_the_login(
    provider: MariaDBLoginProvider, corner: MariaDBCorner
) -> None:
    spec = _spec(corner)
    provider.grant(spec)
    before = provider.credentials(spec)
    assert before is not None
    with corner.root() as conn, conn.cursor() as cur:
        cur.execute("ALTER USER %s@'%%' ACCOUNT LOCK", (before["login"],))
    assert not provider.check(spec)  # a locked login is not access
    later = GrantSpec(spec.principal, spec.target, spec.expires_at + timedelta(hours=2))
    assert provider.grant(later)["created"] is False
    assert provider.check(spec) and provider.credentials(spec) == before
    assert _orders(before["connection"]) == 2
    provider.revoke(spec)


def test_a_new_grant_after_the_end_has_a_new_password(
    provider: MariaDBLoginProvider, corner: MariaDBCorner
) -> None:
    spec = _spec(corner)
    provider.grant(spec)
    first = provider.credentials(spec)
    provider.revoke(spec)
    provider.grant(spec)
    second = provider.credentials(spec)
    assert first is not None and second is not None
    assert first["login"] == second["login"] and first["password"] != second["password"]
    assert "Access denied" in _refused(first["connection"])
    assert _orders(second["connection"]) == 2
    provider.revoke(spec)


def test_a_user_latchkey_did_not_make_is_never_taken_or_dropped(
    provider: MariaDBLoginProvider, corner: MariaDBCorner
) -> None:
    spec = _spec(corner)
    login = provider.login(spec)
    with corner.root() as conn, conn.cursor() as cur:
        # Someone's, by chance or on purpose.
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY 'theirs'", (login,))
    try:
        with pytest.raises(ProviderError, match="not a Latchkey login") as refused:
            provider.revoke(spec)
        assert refused.value.transient is False
        with pytest.raises(ProviderError, match=r"exists and is not .*Latchkey login"):
            provider.grant(spec)
        assert provider.credentials(spec) is None and not provider.check(spec)
        assert _exists(corner, login)
    finally:
        with corner.root() as conn, conn.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (login,))


def test_the_orphan_pass_sees_latchkeys_logins_of_the_target_only(
    provider: MariaDBLoginProvider, corner: MariaDBCorner
) -> None:
    spec = _spec(corner)
    provider.grant(spec)
    other = MariaDBLoginTarget(name="other", database="mysql", role=corner.role)
    try:
        assert spec.principal in provider.provisioned(spec.target)
        assert spec.principal not in provider.provisioned(other)
    finally:
        provider.revoke(spec)
    assert spec.principal not in provider.provisioned(spec.target)


def test_verify_names_a_role_the_admin_cannot_hand_out(
    provider: MariaDBLoginProvider, corner: MariaDBCorner
) -> None:
    assert provider.verify(_target(corner)) == []
    missing = MariaDBLoginTarget(name="x", database=corner.data, role="no_such_role")
    assert provider.verify(missing) == [
        "MariaDB role 'no_such_role' does not exist or is not granted to the admin of "
        "LATCHKEY_MARIADB_LOGIN_URL WITH ADMIN OPTION"
    ]


def test_an_unreachable_server_is_a_transient_error_without_the_password() -> None:
    down = MariaDBLoginProvider(
        "mysql://latchkey_admin:admin-secret@127.0.0.1:1/latchkey", KEY, connect_timeout=2
    )
    with pytest.raises(ProviderError) as raised:
        down.grant(GrantSpec("ann@example.com", _target_named(), datetime.now(UTC)))
    assert raised.value.transient is True and "admin-secret" not in str(raised.value)


def _target_named() -> MariaDBLoginTarget:
    return MariaDBLoginTarget(name="x", database="shop", role="shop_read")


def test_the_documented_setup_is_the_one_tested() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "providers.md").read_text()
    assert ";\n".join(setup_sql()) + ";" in docs
