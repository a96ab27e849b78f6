"""A custom provider, worked through: membership of a PostgreSQL role.

Grant runs `GRANT <role> TO <user>`, revoke `REVOKE <role> FROM <user>`, check reads
`pg_auth_members`. PostgreSQL has no expiry on role membership, so this provider relies on
Latchkey's timed revoke and sweep (`native_expiry = False`), and reconciliation
catches a membership added or removed behind Latchkey's back.

Use it from a flow:

    CustomTarget(name="analytics-read", using="postgres_role",
                 settings={"role": "analytics_read"})

The bot connects with LATCHKEY_POSTGRES_ROLE_URL (a role with CREATEROLE, or ADMIN OPTION
on the roles it hands out; never a superuser). The requester's PostgreSQL role is their
mapped principal: their email unless the flow maps it (`identity.per_provider`).
"""

from __future__ import annotations

import os
import re
from typing import Any

import psycopg
from psycopg import sql

from app.providers.base import GrantSpec, ProviderError
from app.providers.custom import CustomProvider

# PostgreSQL truncates identifiers beyond 63 bytes; a truncated name would be someone else.
_MAX_IDENTIFIER = 63
_ROLE = re.compile(r"[a-z_][a-z0-9_$]*")


class PostgresRole(CustomProvider):
    name = "postgres_role"

    def __init__(self) -> None:
        self._url = os.environ.get("LATCHKEY_POSTGRES_ROLE_URL", "")

    @classmethod
    def settings_problems(cls, settings: dict[str, Any]) -> list[str]:
        role = settings.get("role")
        if not isinstance(role, str) or not _ROLE.fullmatch(role):
            return ["settings.role: a PostgreSQL role name (lowercase letters, digits, _)"]
        unknown = sorted(set(settings) - {"role"})
        return [f"settings.{key}: not a setting of postgres_role" for key in unknown]

    @classmethod
    def principal_problem(cls, principal: str) -> str | None:
        if not principal or len(principal.encode()) > _MAX_IDENTIFIER:
            return f"a PostgreSQL role name is 1-{_MAX_IDENTIFIER} bytes"
        return None

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        role = spec.target.settings["role"]
        self._run(sql.SQL("GRANT {} TO {}"), role, spec.principal, "GRANT", wanted=True)
        return {"role": role, "member": spec.principal}

    def revoke(self, spec: GrantSpec) -> dict[str, Any]:
        role = spec.target.settings["role"]
        if not self._exists(spec.principal):
            # A member that no longer exists holds nothing: revoking what is gone is success.
            return {"role": role, "member": spec.principal, "already_absent": True}
        # REVOKE of a membership that is not there only warns, so this is idempotent.
        self._run(sql.SQL("REVOKE {} FROM {}"), role, spec.principal, "REVOKE", wanted=False)
        return {"role": role, "member": spec.principal}

    def check(self, spec: GrantSpec) -> bool:
        return self._is_member(spec.target.settings["role"], spec.principal)

    def _is_member(self, role: str, member: str) -> bool:
        query = (
            "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = %s AND u.rolname = %s"
        )
        with self._connect() as conn:
            return conn.execute(query, (role, member)).fetchone() is not None

    def verify(self, target: Any) -> list[str]:
        """For `latchkey flows check --online`: the role to hand out exists."""
        role = target.settings["role"]
        return [] if self._exists(role) else [f"PostgreSQL role {role!r} does not exist"]

    def _exists(self, role: str) -> bool:
        with self._connect() as conn:
            return (
                conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
                is not None
            )

    def _run(self, statement: sql.SQL, role: str, member: str, verb: str, *, wanted: bool) -> None:
        """Run GRANT or REVOKE; `wanted`: whether `member` should be in `role` after it."""
        # Identifiers are quoted by psycopg, never formatted into the SQL by hand.
        query = statement.format(sql.Identifier(role), sql.Identifier(member))
        try:
            with self._connect() as conn:
                conn.execute(query)
        except (psycopg.errors.InternalError, psycopg.errors.UniqueViolation) as exc:
            # Two REVOKEs (or GRANTs) of one membership at the same moment: PostgreSQL
            # fails the second ("tuple concurrently deleted"; a duplicate key in
            # pg_auth_members). Latchkey may well make both: the timed revoke and the
            # sweep's find a grant due together. The other one did the work, so what
            # counts is the membership now; anything else is worth another try.
            if self._is_member(role, member) is not wanted:
                raise ProviderError(
                    f"PostgreSQL {verb} failed: {exc}".strip(), transient=True
                ) from None
        except psycopg.errors.UndefinedObject as exc:
            raise ProviderError(
                f"PostgreSQL {verb} failed: {exc}".strip(), transient=False
            ) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ProviderError(
                f"PostgreSQL {verb} refused: {exc}".strip(), transient=False
            ) from None

    def _connect(self) -> psycopg.Connection[Any]:
        if not self._url:
            raise ProviderError("LATCHKEY_POSTGRES_ROLE_URL is not set", transient=False)
        try:
            return psycopg.connect(self._url, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            # The database may come back: the task retries.
            raise ProviderError(f"PostgreSQL unreachable: {exc}".strip(), transient=True) from None
