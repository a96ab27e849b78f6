"""What a MariaDB admin runs once, as root, before Latchkey makes logins there.

The same statements are in docs/providers.md (a test compares them) and are what the tests
run to make the least-privilege admin they use, so the documented grants are the ones
proven to be enough.

MariaDB keeps no comment on an account, so Latchkey's own record of its logins (whom each
is for, its password's nonce) is a table, `logins`. Two views, owned by root, show the bot
Latchkey's accounts (`lk_…`: whether each is locked) and their sessions, and nothing else
of the server's: no password hash, no other session's statement text, which reading
`mysql.global_priv` or holding PROCESS would show it.
"""

from __future__ import annotations


def setup_sql(
    *,
    database: str = "latchkey",
    admin: str = "latchkey_admin",
    password: str = "…",  # noqa: S107 (what the docs show in its place)
    roles: tuple[str, ...] = ("warehouse_read",),
) -> list[str]:
    """The statements, one per item, for this bookkeeping database, admin and roles (the
    admin's own names, typed by them or made by the tests: not user input)."""
    account = f"'{admin}'@'%'"
    return [
        f"CREATE DATABASE {database}",
        f"CREATE TABLE {database}.logins (\n"
        "  login VARCHAR(32) PRIMARY KEY,\n"
        "  nonce CHAR(32) NOT NULL,\n"
        "  principal VARCHAR(200) NOT NULL,\n"
        "  resource VARCHAR(400) NOT NULL,\n"
        "  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP\n"
        ") DEFAULT CHARSET = utf8mb4",
        f"CREATE SQL SECURITY DEFINER VIEW {database}.accounts AS\n"  # noqa: S608
        "  SELECT User AS login, Host AS host,\n"
        "    IFNULL(JSON_VALUE(Priv, '$.account_locked') IN ('1', 'true'), 0) AS locked\n"
        "  FROM mysql.global_priv WHERE User LIKE 'lk\\_%'",
        f"CREATE SQL SECURITY DEFINER VIEW {database}.sessions AS\n"  # noqa: S608
        "  SELECT ID AS id, USER AS login FROM information_schema.PROCESSLIST\n"
        "  WHERE USER LIKE 'lk\\_%'",
        f"CREATE USER {account} IDENTIFIED BY '{password}'",
        # CREATE USER to make, lock and drop the logins; CONNECTION ADMIN to KILL their
        # sessions (MariaDB 10.5.2 and later; SUPER before). Never root, never PROCESS.
        f"GRANT CREATE USER, CONNECTION ADMIN ON *.* TO {account}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {database}.logins TO {account}",
        f"GRANT SELECT ON {database}.accounts TO {account}",
        f"GRANT SELECT ON {database}.sessions TO {account}",
        *(f"GRANT {role} TO {account} WITH ADMIN OPTION" for role in roles),
    ]
