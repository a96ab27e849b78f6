"""Targets that make a database login for the grant (issue 18), checked when flows load."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, field_validator

from app.flows.base_targets import Routed, _matching

# Unquoted PostgreSQL identifiers (63 bytes at most: a longer one is silently truncated).
_PG_NAME = re.compile(r"[a-z_][a-z0-9_$]{0,62}")
# MariaDB/MySQL database and role names: stricter than the server (which takes almost any
# quoted text) so a name in a flow is one an admin can type unquoted; 64 characters is
# MariaDB's limit for a database name.
_MY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,63}")
# Words MariaDB gives a meaning in role statements (SET DEFAULT ROLE NONE, GRANT … PUBLIC).
_MY_RESERVED_ROLES = frozenset({"none", "public", "current_role", "current_user"})


def _named(pattern: re.Pattern[str], what: str) -> AfterValidator:
    return AfterValidator(lambda value: _matching(value, pattern, what))


# The names the targets below take, each checked where it is declared.
PgDatabase = Annotated[str, _named(_PG_NAME, "a PostgreSQL database name (a-z, 0-9, _)")]
PgRole = Annotated[str, _named(_PG_NAME, "a PostgreSQL role name (a-z, 0-9, _)")]
MyDatabase = Annotated[str, _named(_MY_NAME, "a MariaDB database name (letters, digits, _, $)")]


class PostgresLoginTarget(Routed):
    """A PostgreSQL login made for the grant (`lk_…`, random password, `VALID UNTIL` its
    end) and a member of `roles`; dropped at the end with its sessions terminated. The
    holder sees the login and password in a private modal, never in Slack history."""

    provider: Literal["postgres_login"] = "postgres_login"
    name: str
    # The database the holder connects to (and where what the login owned is dropped).
    database: PgDatabase
    roles: tuple[PgRole, ...] = Field(min_length=1)
    description: str = ""

    @property
    def resource(self) -> str:
        return f"postgres/{self.database}/{'+'.join(sorted(self.roles))}"


class PostgresAccountTarget(Routed):
    """An existing PostgreSQL account (a break-glass DBA login, say) checked out to one
    holder at a time: its password is rotated when it goes out (the holder sees the new
    one in a private modal) and again when it comes back, so what they saw stops working.
    A request while it is out waits in a queue (`when_checked_out="queue"`, told who has
    it and until when) or is refused (`"refuse"`)."""

    provider: Literal["postgres_account"] = "postgres_account"
    name: str
    # The login that is checked out; Latchkey sets its password, VALID UNTIL and comment.
    account: PgRole
    # The database its connection string names.
    database: PgDatabase
    when_checked_out: Literal["queue", "refuse"] = "queue"
    description: str = ""

    # One holder at a time (app.checkouts): the DB, not the provider, decides who is next.
    exclusive: ClassVar[bool] = True

    @property
    def resource(self) -> str:
        return f"postgres-account/{self.account}"


class MariaDBLoginTarget(Routed):
    """A MariaDB (or MySQL) login made for the grant (`lk_…`, a derived password), given
    `role` as its default role; locked, its sessions killed and dropped at the end. One
    role: a MariaDB session has one role active at a time (grant several to one role to
    combine them). The holder sees the login and password in a private modal."""

    provider: Literal["mariadb_login"] = "mariadb_login"
    name: str
    # The database the holder is told to connect to; what the login may do there is the
    # role's privileges, which the database's admins decide.
    database: MyDatabase
    role: str
    description: str = ""

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        _matching(value, _MY_NAME, "a MariaDB role name (letters, digits, _, $)")
        if value.lower() in _MY_RESERVED_ROLES:
            raise ValueError(f"{value!r} is a word MariaDB reserves, not a role name")
        return value

    @property
    def resource(self) -> str:
        return f"mariadb/{self.database}/{self.role}"
