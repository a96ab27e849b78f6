"""The admin connection the PostgreSQL providers share (ephemeral logins, checked-out
accounts): how it is opened, how its failures read, and the role facts both ask."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from app.providers.base import ProviderError


class PgAdmin:
    """LATCHKEY_POSTGRES_LOGIN_URL's connection, to its own database or to a named one."""

    def __init__(self, url: str, *, connect_timeout: float = 10) -> None:
        # SQLAlchemy's spelling (postgresql+psycopg://) as libpq reads it.
        self.conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self._timeout = connect_timeout

    def connect(self, database: str | None = None) -> psycopg.Connection[Any]:
        more = {"dbname": database} if database else {}
        try:
            return psycopg.connect(
                self.conninfo, connect_timeout=self._timeout, autocommit=True, **more
            )
        except psycopg.OperationalError as exc:
            # Unreachable or refused: the grant task retries, the revoke is retried by the
            # sweep. The message never carries the URL (it may hold a password).
            raise ProviderError(
                f"PostgreSQL (logins) unreachable: {str(exc).splitlines()[0][:200]}",
                transient=True,
            ) from None

    def connection_string(self, database: str, user: str, password: str) -> str:
        """What the holder pastes into psql: the admin's host and port, their own login."""
        admin = conninfo_to_dict(self.conninfo)
        return make_conninfo(
            "",
            host=str(admin.get("host") or "localhost"),
            port=str(admin.get("port") or "5432"),
            dbname=database,
            user=user,
            password=password,
        )


def timestamp(at: datetime) -> str:
    aware = at if at.tzinfo else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def exists(conn: psycopg.Connection[Any], role: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    return row is not None


def comment(conn: psycopg.Connection[Any], role: str) -> str | None:
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    return row[0] if row else None


def set_comment(conn: psycopg.Connection[Any], role: str, text: str) -> None:
    conn.execute(
        sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(role), sql.Literal(text))
    )


def verifier(conn: psycopg.Connection[Any], role: str, password: str) -> str:
    """The SCRAM verifier of `password` (libpq's PQencryptPasswordConn): PostgreSQL never
    receives the password itself, so no server log can hold it."""
    return conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()


def terminate_sessions(conn: psycopg.Connection[Any], role: str) -> int:
    """End every session of `role`; how many were ended."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
        "FROM pg_stat_activity WHERE usename = %s",
        (role,),
    ).fetchone()
    return int(row[0]) if row else 0
