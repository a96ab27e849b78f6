"""A private PostgreSQL server that checks passwords, for the tests of database logins.

The machine's own server trusts every local connection, so any password (or an expired
one) would open it: a login's password and its `VALID UNTIL` can only be shown to work,
and to stop working, against a server that asks for them, as a production one does. This
one asks everyone but its superuser (`postgres`, for the tests' own set-up) and the admin
login the provider uses (`latchkey_admin`, trusted so the test needs no password for it).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql

from app.testing.stack import free_port, wait_until

ADMIN = "latchkey_admin"
HBA = f"""\
local all all trust
host all postgres 127.0.0.1/32 trust
host all {ADMIN} 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL's server is not installed (apt-get install postgresql)")
    return Path(initdb).parent


class PostgresServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def valid_until(self, role: str) -> datetime | None:
        """PostgreSQL's own end of a role's password, as the server holds it."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT rolvaliduntil FROM pg_roles WHERE rolname = %s", (role,)
            ).fetchone()
        assert row is not None, f"no role {role}"
        return row[0]  # type: ignore[no-any-return]

    def url(self, user: str = "postgres", database: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        data = self.workdir / "data"
        self.workdir.mkdir(parents=True, exist_ok=True)
        bindir = _bindir()
        # PostgreSQL refuses to run as root: as its own user when the tests are root.
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if as_user:
            shutil.chown(self.workdir, "postgres")
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
            check=True,
            capture_output=True,
        )
        hba = data / "pg_hba.conf"
        hba.write_text(HBA)
        if as_user:
            shutil.chown(hba, "postgres")
        log = (self.workdir / "postgres.log").open("ab")
        self._process = subprocess.Popen(
            [
                *as_user,
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(self.workdir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                # Every statement logged: a test reads the log for anything secret.
                "-c",
                "log_statement=all",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._answers, 30, "the private PostgreSQL server to accept connections")
        with psycopg.connect(self.url(), autocommit=True) as conn:
            # The least the provider needs, as docs/providers.md tells an admin to set up.
            conn.execute(f"CREATE ROLE {ADMIN} LOGIN CREATEROLE")
            conn.execute(f"GRANT pg_signal_backend TO {ADMIN}")
        return self

    @property
    def log_text(self) -> str:
        path = self.workdir / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _answers(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited: {self.log_text[-2000:]}")
        try:
            psycopg.connect(self.url(), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGINT)  # a fast shutdown
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._process = None


@contextmanager
def private_postgres(database: str, *setup: str) -> Iterator[PostgresServer]:
    """A private PostgreSQL with `database` created and `setup` run in it as postgres,
    stopped and removed at the end. Its folder is not under pytest's tmp: PostgreSQL runs
    as its own user, who cannot enter root's."""
    workdir = Path(tempfile.mkdtemp(prefix="latchkey-pg-"))
    pg = PostgresServer(workdir).start()
    try:
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        with psycopg.connect(pg.url(database=database), autocommit=True) as conn:
            for statement in setup:
                conn.execute(statement.encode())
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
