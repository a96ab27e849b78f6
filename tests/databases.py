"""Fresh, migrated databases for tests, without paying for a migration and a CREATE
DATABASE each time.

Migrating a database takes about 2 s and CREATE DATABASE as long again on PostgreSQL
(it syncs to disk): with some 300 database tests that was a third of the suite. So each
test worker migrates one database per backend once, and a test gets
- on SQLite, a copy of the migrated file;
- on PostgreSQL, a database of the worker's pool, emptied after its last test (TRUNCATE),
  or a new copy of the migrated template when the pool has none.
A test database that left the schema other than migrated (a downgrade test) is dropped,
not reused, so every test starts from exactly what `latchkey migrate` makes.
"""

from __future__ import annotations

import sqlite3
import uuid
from contextlib import closing
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from app.cli import migrate

# Rows that `latchkey migrate` itself writes; every other table starts empty.
MIGRATION_TABLES = {"alembic_version"}


def migrated_sqlite(folder: Path) -> Path:
    """A migrated SQLite file in `folder`: the source of every test's copy."""
    path = folder / "template.db"
    migrate(f"sqlite:///{path}")
    return path


def copy_sqlite(template: Path, target: Path) -> str:
    # sqlite3's backup copies what the WAL holds too, unlike a file copy.
    with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(target)) as copy:
        source.backup(copy)
    return f"sqlite:///{target}"


def create_postgres_database(admin_url: str, template: str | None = None) -> str:
    """CREATE DATABASE with a new name (from `template` when given); its name."""
    name = f"latchkey_test_{uuid.uuid4().hex[:12]}"
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        if template is not None:
            _disconnect(admin, template)  # a template must have no session open
        admin.execute(query)
    return name


def drop_postgres_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def url_of(admin_url: str, name: str) -> str:
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def _disconnect(admin: psycopg.Connection, name: str) -> None:
    admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    )


def _schema(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    """What a migration decides (tables, columns, indexes, constraints, triggers, functions,
    privileges, the revision), to tell a test that changed it."""
    return [
        *conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"
        ).fetchall(),
        *conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall(),
        *conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace ORDER BY 1"
        ).fetchall(),
        *conn.execute(
            "SELECT tgrelid::regclass::text, tgname, tgenabled FROM pg_trigger "
            "WHERE NOT tgisinternal ORDER BY 1, 2"
        ).fetchall(),
        *conn.execute(
            "SELECT proname, prosrc FROM pg_proc "
            "WHERE pronamespace = 'public'::regnamespace ORDER BY 1"
        ).fetchall(),
        *conn.execute(
            "SELECT relname, relacl::text FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace ORDER BY 1"
        ).fetchall(),
        *conn.execute("SELECT version_num FROM alembic_version").fetchall(),
    ]


def _tables(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return sorted(str(name) for (name,) in rows)


class PostgresPool:
    """One test worker's PostgreSQL databases: a migrated template and emptied copies."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.template = create_postgres_database(admin_url)
        migrate(url_of(admin_url, self.template))
        with psycopg.connect(url_of(admin_url, self.template)) as conn:
            self._schema = _schema(conn)
            # Emptying is only faithful while migrations write rows to no other table.
            self._reusable = all(
                table in MIGRATION_TABLES
                or conn.execute(
                    sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
                ).fetchone()
                == (True,)
                for table in _tables(conn)
            )
        self._idle: list[str] = []
        self._all: set[str] = set()

    def take(self) -> str:
        """The name of an empty, migrated database nobody else uses."""
        if self._idle:
            return self._idle.pop()
        name = create_postgres_database(self.admin_url, template=self.template)
        self._all.add(name)
        return name

    def give_back(self, name: str) -> None:
        """Empty the database for the next test, or drop it if its schema changed."""
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            _disconnect(admin, name)  # a test's engine that was never disposed
        if self._reusable:
            with psycopg.connect(url_of(self.admin_url, name), autocommit=True) as conn:
                if _schema(conn) == self._schema:
                    emptied = [t for t in _tables(conn) if t not in MIGRATION_TABLES]
                    # The audit trail refuses TRUNCATE by trigger (as it should in use);
                    # a replica session fires no ordinary trigger.
                    conn.execute("SET session_replication_role = replica")
                    conn.execute(
                        sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                            sql.SQL(", ").join(sql.Identifier(t) for t in emptied)
                        )
                    )
                    self._idle.append(name)
                    return
        self._all.discard(name)
        drop_postgres_database(self.admin_url, name)

    def close(self) -> None:
        for name in [*self._all, self.template]:
            drop_postgres_database(self.admin_url, name)
        self._all.clear()
        self._idle.clear()
