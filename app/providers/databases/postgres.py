"""Ephemeral PostgreSQL logins: made for a grant, ended by PostgreSQL itself at its end.

Grant: `CREATE ROLE lk_… LOGIN PASSWORD <SCRAM verifier> VALID UNTIL '<end>' IN ROLE <the
target's roles>`, with a comment naming the person (and the password's nonce). An extension
or an overlapping grant moves `VALID UNTIL`; the password stays. Revoke: `NOLOGIN` first (no
new session can start), every session of the login terminated, then `DROP OWNED` and `DROP
ROLE`. `VALID UNTIL` is PostgreSQL's own expiry of the password: should Latchkey be down at
the end, nobody can log in with it after its time (sessions already open stay until the
revoke, which the sweep retries).

The password reaches PostgreSQL only as a SCRAM verifier computed here (libpq's
PQencryptPasswordConn), so it is in no server log even with `log_statement = all`.

The admin connection (LATCHKEY_POSTGRES_LOGIN_URL) needs CREATEROLE, membership of
pg_signal_backend (to end sessions) and ADMIN OPTION on the roles it hands out; never a
superuser.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql

from app.providers.base import GrantSpec, ProviderError
from app.providers.databases import credentials, pg_admin
from app.providers.databases.pg_admin import PgAdmin, exists, set_comment, terminate_sessions
from app.providers.databases.pg_admin import timestamp as _timestamp

log = logging.getLogger(__name__)


class PostgresLoginProvider:
    name = "postgres_login"
    native_expiry = True

    def __init__(self, admin_url: str, key: bytes, *, connect_timeout: float = 10) -> None:
        self._admin = PgAdmin(admin_url, connect_timeout=connect_timeout)
        self._key = key

    # -- the provider ----------------------------------------------------------------------

    def login(self, spec: GrantSpec) -> str:
        return credentials.login_name(self._key, spec.target.resource, spec.principal)

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        login, roles = self.login(spec), tuple(spec.target.roles)
        until = sql.Literal(_timestamp(spec.expires_at))
        with self._connect() as conn, conn.transaction():
            # One grant of a login at a time: two overlapping grants may make it together.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (login,))
            held = _comment_of(conn, login)
            if (held is None and exists(conn, login)) or (
                held is not None and held[1] != spec.principal
            ):
                # The name is derived from the person: a role of that name without Latchkey's
                # comment for them is one Latchkey did not make this way (or an edited
                # comment). Never take it.
                raise ProviderError(
                    f"PostgreSQL role {login} exists and is not {spec.principal}'s Latchkey login",
                    transient=False,
                )
            if held is None:
                nonce = credentials.new_nonce()
                verifier = pg_admin.verifier(
                    conn, login, credentials.password(self._key, login, nonce)
                )
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} VALID UNTIL {} IN ROLE {}").format(
                        sql.Identifier(login),
                        sql.Literal(verifier),
                        until,
                        sql.SQL(", ").join(map(sql.Identifier, roles)),
                    )
                )
                # The admin a member of the login: DROP OWNED at the end needs the login's
                # privileges (a CREATEROLE admin is not given them by creating it).
                conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(login)))
                set_comment(conn, login, credentials.comment(nonce, spec.principal))
                made = True
            else:
                conn.execute(
                    sql.SQL("ALTER ROLE {} LOGIN VALID UNTIL {}").format(
                        sql.Identifier(login), until
                    )
                )
                conn.execute(
                    sql.SQL("GRANT {} TO {}").format(
                        sql.SQL(", ").join(map(sql.Identifier, roles)), sql.Identifier(login)
                    )
                )
                made = False
        return {
            "login": login,
            "database": spec.target.database,
            "roles": list(roles),
            "valid_until": _timestamp(spec.expires_at),
            "created": made,
        }

    def revoke(self, spec: GrantSpec) -> dict[str, Any]:
        login = self.login(spec)
        with self._connect() as conn:
            held = _comment_of(conn, login)
            if held is None:
                if not exists(conn, login):
                    return {"login": login, "already_absent": True}
                raise ProviderError(
                    f"PostgreSQL role {login} is not a Latchkey login: left as it is",
                    transient=False,
                )
            # No new session from here on, then the open ones are ended.
            conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(login)))
            terminated = terminate_sessions(conn, login)
        # What it owns or was granted in its database goes with it (DROP OWNED works in the
        # database it runs in), then the login itself (a role is the cluster's: any will do).
        try:
            with self._connect(spec.target.database) as conn:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(login)))
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))
        except psycopg.errors.DependentObjectsStillExist as exc:
            # Objects in another database: access has ended (no login, no session), the
            # role stays for an admin to clear, and the trail says so.
            log.warning("PostgreSQL login %s left without LOGIN: %s", login, exc)
            return {"login": login, "sessions_terminated": terminated, "dropped": False}
        return {"login": login, "sessions_terminated": terminated, "dropped": True}

    def check(self, spec: GrantSpec) -> bool:
        """The login exists and may log in. Its `VALID UNTIL` is not asked: that is the
        native expiry (as a policy's end date is at AWS), and a login past it that still
        exists is Latchkey's to drop, which reconciliation does when no grant holds it."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (self.login(spec),)
            ).fetchone()
        return bool(row and row[0])

    def credentials(self, spec: GrantSpec) -> dict[str, str] | None:
        """What the holder needs to connect, derived from the login's nonce as the database
        holds it now; None when there is no login of Latchkey's for them."""
        login = self.login(spec)
        with self._connect() as conn:
            held = _comment_of(conn, login)
        if held is None or held[1] != spec.principal:
            return None
        secret = credentials.password(self._key, login, held[0])
        return {
            "login": login,
            "password": secret,
            "connection": self._admin.connection_string(spec.target.database, login, secret),
        }

    def provisioned(self, target: Any) -> list[str]:
        """The people holding a login of Latchkey's for this target (for the orphan pass)."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles "
                "WHERE rolname LIKE 'lk\\_%%'"
            ).fetchall()
        people = []
        for name, text in rows:
            held = credentials.parse_comment(text)
            if held and name == credentials.login_name(self._key, target.resource, held[1]):
                people.append(held[1])
        return people

    def verify(self, target: Any) -> list[str]:
        """For `latchkey flows check --online`: the roles exist and may be handed out."""
        problems = []
        with self._connect() as conn:
            for role in target.roles:
                if not exists(conn, role):
                    problems.append(f"PostgreSQL role {role!r} does not exist")
            row = conn.execute(
                "SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            if not (row and row[0]):
                problems.append("the admin login of LATCHKEY_POSTGRES_LOGIN_URL lacks CREATEROLE")
        return problems

    def _connect(self, database: str | None = None) -> psycopg.Connection[Any]:
        return self._admin.connect(database)


def _comment_of(conn: psycopg.Connection[Any], login: str) -> tuple[str, str] | None:
    return credentials.parse_comment(pg_admin.comment(conn, login))
