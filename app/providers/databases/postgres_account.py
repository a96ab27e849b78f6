"""Checked-out PostgreSQL accounts: an existing login lent to one holder at a time.

Check-out: the account's password is rotated to one derived from LATCHKEY_CREDENTIALS_KEY
and a new nonce (as ephemeral logins' are: app.providers.databases.credentials), its
`VALID UNTIL` set to the grant's end (PostgreSQL's own expiry, should Latchkey be down at
the end), and its comment names the holder and the nonce. The holder sees the password
through "Show credentials". Check-in (released, expired, revoked): rotated again, to a
random password nobody is shown, and every session of the account terminated: what the
holder saw stops working, and nothing they opened outlives the grant.

A second check-out by the same holder (an extension, a re-apply) keeps the password and
moves `VALID UNTIL`. Who holds the account is decided by Latchkey's DB (app.checkouts),
not here: this provider rotates whatever the comment says, once it is asked to.

The admin connection (LATCHKEY_POSTGRES_LOGIN_URL) needs CREATEROLE and pg_signal_backend
for a non-superuser account; a superuser account can only be managed by a superuser.
"""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
from psycopg import sql

from app.providers.base import GrantSpec, ProviderError
from app.providers.databases import credentials, pg_admin
from app.providers.databases.pg_admin import PgAdmin


class PostgresAccountProvider:
    name = "postgres_account"
    native_expiry = True

    def __init__(self, admin_url: str, key: bytes, *, connect_timeout: float = 10) -> None:
        self._admin = PgAdmin(admin_url, connect_timeout=connect_timeout)
        self._key = key

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        account = spec.target.account
        ends = pg_admin.timestamp(spec.expires_at)
        until = sql.Literal(ends)
        with self._admin.connect() as conn, conn.transaction():
            _lock(conn, account)
            _must_exist(conn, account)
            held = credentials.parse_checkout(pg_admin.comment(conn, account))
            if held is not None and held[1] == spec.principal:
                # Out to this holder already (an extension, a retry): the end moves, the
                # password they were shown stays.
                conn.execute(
                    sql.SQL("ALTER ROLE {} VALID UNTIL {}").format(sql.Identifier(account), until)
                )
                return {"account": account, "rotated": False, "valid_until": ends}
            nonce = credentials.new_nonce()
            secret = credentials.password(self._key, account, nonce)
            conn.execute(
                sql.SQL("ALTER ROLE {} LOGIN PASSWORD {} VALID UNTIL {}").format(
                    sql.Identifier(account),
                    sql.Literal(pg_admin.verifier(conn, account, secret)),
                    until,
                )
            )
            pg_admin.set_comment(conn, account, credentials.checkout_comment(nonce, spec.principal))
            # Sessions of whoever had it before (a check-in that could not end them).
            ended = _terminate(conn, account)
        return {
            "account": account,
            "rotated": True,
            "valid_until": ends,
            "sessions_terminated": ended,
        }

    def revoke(self, spec: GrantSpec) -> dict[str, Any]:
        account = spec.target.account
        with self._admin.connect() as conn, conn.transaction():
            _lock(conn, account)
            if not pg_admin.exists(conn, account):
                return {"account": account, "already_absent": True}
            held = credentials.parse_checkout(pg_admin.comment(conn, account))
            if held is None or held[1] != spec.principal:
                # Already checked in (a retry), or out to the next holder: not theirs to end.
                return {"account": account, "already_checked_in": True}
            # A password nobody is shown, kept nowhere.
            unknown = secrets.token_urlsafe(32)
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(account),
                    sql.Literal(pg_admin.verifier(conn, account, unknown)),
                )
            )
            pg_admin.set_comment(conn, account, credentials.CHECKED_IN)
            ended = _terminate(conn, account)
        return {"account": account, "rotated": True, "sessions_terminated": ended}

    def check(self, spec: GrantSpec) -> bool:
        """Out to this holder, as the account's comment says."""
        with self._admin.connect() as conn:
            held = credentials.parse_checkout(pg_admin.comment(conn, spec.target.account))
        return held is not None and held[1] == spec.principal

    def credentials(self, spec: GrantSpec) -> dict[str, str] | None:
        account = spec.target.account
        with self._admin.connect() as conn:
            held = credentials.parse_checkout(pg_admin.comment(conn, account))
        if held is None or held[1] != spec.principal:
            return None
        secret = credentials.password(self._key, account, held[0])
        return {
            "login": account,
            "password": secret,
            "connection": self._admin.connection_string(spec.target.database, account, secret),
        }

    def provisioned(self, target: Any) -> list[str]:
        """Who the account is out to, for the orphan pass (a check-out no grant holds)."""
        with self._admin.connect() as conn:
            held = credentials.parse_checkout(pg_admin.comment(conn, target.account))
        return [held[1]] if held else []

    def verify(self, target: Any) -> list[str]:
        """For `latchkey flows check --online`: the account exists and can be managed."""
        with self._admin.connect() as conn:
            row = conn.execute(
                "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (target.account,)
            ).fetchone()
            me = conn.execute(
                "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
        if row is None:
            return [f"PostgreSQL account {target.account!r} does not exist"]
        if row[0] and not (me and me[0]):
            return [
                f"PostgreSQL account {target.account!r} is a superuser: only a superuser "
                "admin login can rotate its password and end its sessions"
            ]
        if not (me and (me[0] or me[1])):
            return ["the admin login of LATCHKEY_POSTGRES_LOGIN_URL lacks CREATEROLE"]
        return []


def _lock(conn: psycopg.Connection[Any], account: str) -> None:
    # One rotation of an account at a time: a check-in and the next check-out never interleave.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"account|{account}",))


def _must_exist(conn: psycopg.Connection[Any], account: str) -> None:
    if not pg_admin.exists(conn, account):
        raise ProviderError(f"PostgreSQL account {account} does not exist", transient=False)


def _terminate(conn: psycopg.Connection[Any], account: str) -> int:
    try:
        with conn.transaction():
            return pg_admin.terminate_sessions(conn, account)
    except psycopg.errors.InsufficientPrivilege as exc:
        # A superuser's sessions need a superuser to end them: the end is not confirmed,
        # so the revoke fails and is retried and alerted, never marked done.
        raise ProviderError(
            f"cannot end the sessions of PostgreSQL account {account}: {exc}", transient=False
        ) from None
