"""Ephemeral MariaDB (and MySQL) logins: made for a grant, locked, cut off and dropped at
its end by Latchkey's revoke and sweep (MariaDB has no expiry time for an account).

Grant: a row in Latchkey's bookkeeping table (`logins`: the person and the password's
nonce; MariaDB keeps no comment on an account), then `CREATE USER 'lk_…'@'%' IDENTIFIED BY
PASSWORD '*<hash>'`, `GRANT <role>`, and the login's own `SET DEFAULT ROLE` (another
account's default role can only be set with write access to the `mysql` database, which
the bot must not have, so the bot logs in as the login once to set it). An extension or an
overlapping grant unlocks it and grants the role again; the password stays. Revoke:
`ACCOUNT LOCK` (no new session), `KILL` each of its sessions, `DROP USER`, the row deleted.

The password reaches MariaDB only as its mysql_native_password hash, computed here, so it
is in no server log, the general log included.

The admin connection (LATCHKEY_MARIADB_LOGIN_URL) needs the grants of mariadb_setup.py.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import pymysql
from pymysql.cursors import Cursor

from app.providers.base import GrantSpec, ProviderError
from app.providers.databases import credentials

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,63}")
# Errors worth retrying: the connection lost or refused (client errors are 2000 and up),
# a lock wait or deadlock. Any other error from the server is a refusal to report.
_TRANSIENT_SERVER_ERRORS = {1205, 1213}
_NO_SUCH_THREAD = 1094


def native_hash(password: str) -> str:
    """mysql_native_password's stored form, `*` and SHA1(SHA1(password)) in hex, which
    MariaDB's PASSWORD() computes: sent instead of the password itself."""
    inner = hashlib.sha1(password.encode()).digest()  # noqa: S324 (MariaDB's own format)
    return "*" + hashlib.sha1(inner).hexdigest().upper()  # noqa: S324


class MariaDBLoginProvider:
    name = "mariadb_login"
    # No account expiry in MariaDB (a password's can only be whole days after it was set,
    # and an expired one still opens a session to change it): the sweep ends the access.
    native_expiry = False

    def __init__(self, admin_url: str, key: bytes, *, connect_timeout: float = 10) -> None:
        parts = urlsplit(admin_url)
        if parts.scheme.split("+")[0] not in ("mysql", "mariadb"):
            raise ValueError("LATCHKEY_MARIADB_LOGIN_URL is not a mysql:// or mariadb:// URL")
        self._host = parts.hostname or "localhost"
        self._port = parts.port or 3306
        self._user = unquote(parts.username or "")
        self._password = unquote(parts.password or "")
        # The URL's database holds the bookkeeping (`logins`, `accounts`, `sessions`).
        self._database = _identifier(parts.path.strip("/") or "latchkey")
        self._key = key
        self._timeout = connect_timeout

    # -- the provider ----------------------------------------------------------------------

    def login(self, spec: GrantSpec) -> str:
        return credentials.login_name(self._key, spec.target.resource, spec.principal)

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        login, role = self.login(spec), _identifier(spec.target.role)
        with self._admin(login) as cur:
            held, hosts = _held(cur, login), _hosts(cur, login)
            if (held is None and hosts) or (held is not None and held[1] != spec.principal):
                # The name is derived from the person: an account of that name without
                # Latchkey's row for them is one Latchkey did not make. Never take it.
                raise ProviderError(
                    f"MariaDB user {login} exists and is not {spec.principal}'s Latchkey login",
                    transient=False,
                )
            made = "%" not in hosts
            if made:
                nonce = credentials.new_nonce()
                # The row first: should the bot stop between the two, a row without an
                # account is made good by the next grant, where an account without a row
                # would be refused as someone else's for ever.
                cur.execute(
                    "REPLACE INTO logins (login, nonce, principal, resource)"
                    " VALUES (%s, %s, %s, %s)",
                    (login, nonce, spec.principal, spec.target.resource),
                )
                secret = credentials.password(self._key, login, nonce)
                cur.execute(
                    "CREATE USER %s@'%%' IDENTIFIED BY PASSWORD %s", (login, native_hash(secret))
                )
            else:
                assert held is not None
                secret = credentials.password(self._key, login, held[0])
                cur.execute("ALTER USER %s@'%%' ACCOUNT UNLOCK", (login,))
            cur.execute(f"GRANT `{role}` TO %s@'%%'", (login,))
        self._set_default_role(login, secret, role)
        return {
            "login": login,
            "database": spec.target.database,
            "role": role,
            "created": made,
        }

    def revoke(self, spec: GrantSpec) -> dict[str, Any]:
        login = self.login(spec)
        with self._admin(login) as cur:
            held, hosts = _held(cur, login), _hosts(cur, login)
            if held is None or held[1] != spec.principal:
                if hosts:
                    raise ProviderError(
                        f"MariaDB user {login} is not a Latchkey login: left as it is",
                        transient=False,
                    )
                return {"login": login, "already_absent": True}
            if "%" not in hosts:
                cur.execute("DELETE FROM logins WHERE login = %s", (login,))
                return {"login": login, "already_absent": True}
            # No new session from here on, then the open ones are ended.
            cur.execute("ALTER USER %s@'%%' ACCOUNT LOCK", (login,))
            cur.execute("SELECT id FROM sessions WHERE login = %s", (login,))
            terminated = 0
            for (thread,) in cur.fetchall():
                try:
                    cur.execute("KILL %s", (int(thread),))
                    terminated += 1
                except pymysql.MySQLError as exc:
                    if exc.args[0] != _NO_SUCH_THREAD:  # it ended on its own meanwhile
                        raise
            cur.execute("DROP USER IF EXISTS %s@'%%'", (login,))
            cur.execute("DELETE FROM logins WHERE login = %s", (login,))
        return {"login": login, "sessions_terminated": terminated, "dropped": True}

    def check(self, spec: GrantSpec) -> bool:
        """The login is Latchkey's for this person, exists and is not locked."""
        login = self.login(spec)
        with self._admin() as cur:
            held = _held(cur, login)
            cur.execute("SELECT locked FROM accounts WHERE login = %s AND host = '%%'", (login,))
            row = cur.fetchone()
        return bool(held and held[1] == spec.principal and row is not None and not row[0])

    def credentials(self, spec: GrantSpec) -> dict[str, str] | None:
        """What the holder needs to connect, derived from the login's nonce as the
        bookkeeping holds it now; None when there is no login of Latchkey's for them."""
        login = self.login(spec)
        with self._admin() as cur:
            held, hosts = _held(cur, login), _hosts(cur, login)
        if held is None or held[1] != spec.principal or "%" not in hosts:
            return None
        secret = credentials.password(self._key, login, held[0])
        # base64url: nothing in the password needs quoting in a URL.
        where = f"{self._host}:{self._port}/{spec.target.database}"
        return {
            "login": login,
            "password": secret,
            "connection": f"mysql://{login}:{secret}@{where}",
        }

    def provisioned(self, target: Any) -> list[str]:
        """The people holding a login of Latchkey's for this target (for the orphan pass)."""
        with self._admin() as cur:
            cur.execute(
                "SELECT l.login, l.principal FROM logins l"
                " JOIN accounts a ON a.login = l.login AND a.host = '%'"
            )
            rows = cur.fetchall()
        return [
            principal
            for login, principal in rows
            if login == credentials.login_name(self._key, target.resource, principal)
        ]

    def verify(self, target: Any) -> list[str]:
        """For `latchkey flows check --online`: the role exists and may be handed out, and
        the admin has what docs/providers.md asks for."""
        problems = []
        with self._admin() as cur:
            cur.execute(
                "SELECT 1 FROM information_schema.APPLICABLE_ROLES"
                " WHERE ROLE_NAME = %s AND IS_GRANTABLE = 'YES'",
                (target.role,),
            )
            if cur.fetchone() is None:
                problems.append(
                    f"MariaDB role {target.role!r} does not exist or is not granted to the "
                    "admin of LATCHKEY_MARIADB_LOGIN_URL WITH ADMIN OPTION"
                )
            cur.execute("SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES")
            held = {row[0] for row in cur.fetchall()}
            for needed in ("CREATE USER", "CONNECTION ADMIN"):
                if needed not in held and "SUPER" not in held:
                    problems.append(f"the admin of LATCHKEY_MARIADB_LOGIN_URL lacks {needed}")
            for table in ("logins", "accounts", "sessions"):
                try:
                    cur.execute(f"SELECT 1 FROM `{table}` LIMIT 0")  # noqa: S608 (ours)
                except pymysql.MySQLError:
                    problems.append(
                        f"{self._database}.{table} is missing or not readable by the admin "
                        "(docs/providers.md: MariaDB logins)"
                    )
        return problems

    # -- the connections -------------------------------------------------------------------

    @contextmanager
    def _admin(self, lock: str | None = None) -> Iterator[Cursor]:
        """The admin connection's cursor, holding the named lock of a login when given:
        one grant or revoke of a login at a time (overlapping grants may make it together)."""
        conn = self._connect(self._user, self._password, self._database)
        try:
            with _refusals(), conn.cursor() as cur:
                if lock is not None:
                    cur.execute("SELECT GET_LOCK(%s, %s)", (f"latchkey:{lock}", self._timeout))
                    got = cur.fetchone()
                    if not (got and got[0] == 1):
                        raise ProviderError(f"MariaDB login {lock} is busy", transient=True)
                yield cur
        finally:
            conn.close()  # which releases the lock

    def _set_default_role(self, login: str, secret: str, role: str) -> None:
        """As the login itself: a session starts with its default role active, and a holder
        pasting the connection string expects the role's privileges without `SET ROLE`."""
        conn = self._connect(login, secret, None)
        try:
            with _refusals(), conn.cursor() as cur:
                cur.execute(f"SET DEFAULT ROLE `{role}`")
        finally:
            conn.close()

    def _connect(self, user: str, password: str, database: str | None) -> Any:
        try:
            return pymysql.connect(
                host=self._host,
                port=self._port,
                user=user,
                password=password,
                database=database,
                connect_timeout=self._timeout,
                autocommit=True,
                charset="utf8mb4",
            )
        except pymysql.MySQLError as exc:
            # Unreachable or refused: the grant task retries, the revoke is retried by the
            # sweep. The message never carries the URL (it may hold a password).
            raise ProviderError(
                f"MariaDB (logins) unreachable: {_said(exc)}", transient=True
            ) from None


@contextmanager
def _refusals() -> Iterator[None]:
    """A server's refusal as a ProviderError; a lost connection or a lock wait, transient."""
    try:
        yield
    except pymysql.MySQLError as exc:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        transient = code >= 2000 or code in _TRANSIENT_SERVER_ERRORS
        raise ProviderError(f"MariaDB (logins): {_said(exc)}", transient=transient) from None


def _said(exc: BaseException) -> str:
    text = " ".join(str(a) for a in exc.args) or type(exc).__name__
    return text.splitlines()[0][:200]


def _identifier(name: str) -> str:
    """A database or role name put in a statement between backticks: checked again here,
    the target model having checked it when the flow loaded."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a MariaDB name Latchkey uses (letters, digits, _, $)")
    return name


def _held(cur: Cursor, login: str) -> tuple[str, str] | None:
    """(nonce, person) of Latchkey's row for this login; None when it has none."""
    cur.execute("SELECT nonce, principal FROM logins WHERE login = %s", (login,))
    row = cur.fetchone()
    return (str(row[0]), str(row[1])) if row else None


def _hosts(cur: Cursor, login: str) -> set[str]:
    """The hosts of every account of this name (Latchkey makes only `'…'@'%'`)."""
    cur.execute("SELECT host FROM accounts WHERE login = %s", (login,))
    return {str(row[0]) for row in cur.fetchall()}
