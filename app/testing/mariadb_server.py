"""A corner of the machine's MariaDB for one test module or stack: its own bookkeeping
database, data database, role and least-privilege admin, made with root exactly as
docs/providers.md tells an admin to (mariadb_setup.py), and dropped again.

Every name is new (a uuid), as the server is shared by test workers running at once.
"""

from __future__ import annotations

import secrets
import uuid
from urllib.parse import unquote, urlsplit

import pymysql

from app.providers.databases.mariadb_setup import setup_sql

# The machine's MariaDB as CI and a new machine have it: root without a password.
DEFAULT_ROOT_URL = "mysql://root@127.0.0.1:3306/"


def root_connection(root_url: str) -> pymysql.connections.Connection:
    parts = urlsplit(root_url)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        autocommit=True,
        connect_timeout=5,
    )


class MariaDBCorner:
    def __init__(self, root_url: str) -> None:
        self.root_url = root_url
        tag = uuid.uuid4().hex[:10]
        parts = urlsplit(root_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 3306
        self.bookkeeping = f"latchkey_bk_{tag}"
        self.data = f"latchkey_data_{tag}"
        self.role = f"latchkey_read_{tag}"
        self.admin = f"latchkey_admin_{tag}"
        self.admin_password = secrets.token_urlsafe(16)

    @property
    def admin_url(self) -> str:
        return (
            f"mysql://{self.admin}:{self.admin_password}@{self.host}:{self.port}/{self.bookkeeping}"
        )

    def root(self) -> pymysql.connections.Connection:
        return root_connection(self.root_url)

    def create(self) -> MariaDBCorner:
        with self.root() as conn, conn.cursor() as cur:
            # The role and what it may read, as the database's admins would have them.
            cur.execute(f"CREATE DATABASE {self.data}")
            cur.execute(f"CREATE TABLE {self.data}.orders (id INT)")
            cur.execute(f"INSERT INTO {self.data}.orders VALUES (1), (2)")  # noqa: S608
            cur.execute(f"CREATE ROLE {self.role}")
            cur.execute(f"GRANT SELECT ON {self.data}.* TO {self.role}")
            for statement in setup_sql(
                database=self.bookkeeping,
                admin=self.admin,
                password=self.admin_password,
                roles=(self.role,),
            ):
                cur.execute(statement)
        return self

    def drop(self) -> None:
        with self.root() as conn, conn.cursor() as cur:
            # Logins a failed test left: those this corner's bookkeeping knows.
            try:
                cur.execute(f"SELECT login FROM {self.bookkeeping}.logins")  # noqa: S608
                left = [row[0] for row in cur.fetchall()]
            except pymysql.MySQLError:
                left = []
            for login in left:
                cur.execute("DROP USER IF EXISTS %s@'%%'", (login,))
            cur.execute(f"DROP USER IF EXISTS '{self.admin}'@'%'")
            cur.execute(f"DROP ROLE IF EXISTS {self.role}")
            cur.execute(f"DROP DATABASE IF EXISTS {self.bookkeeping}")
            cur.execute(f"DROP DATABASE IF EXISTS {self.data}")
