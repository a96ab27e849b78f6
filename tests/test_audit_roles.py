"""PostgreSQL: run as a role that may only read and append audit events (docs/audit.md,
"Append-only"), and show it cannot alter the trail nor switch the trigger off.

The table's owner can `ALTER TABLE audit_event DISABLE TRIGGER`, so the application must
not connect as the owner. This builds exactly the documented set-up in a database of its
own (roles are cluster-wide: unique names, dropped after).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.audit import AuditLog
from app.cli import migrate
from app.db import Database
from tests.conftest import POSTGRES_URL
from tests.factories import AUDIT_KEY

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL, reason="LATCHKEY_TEST_POSTGRES_URL is not set (CI always sets it)"
)

# The grants of docs/audit.md, run by the owner after every `latchkey migrate`.
APP_GRANTS = """
GRANT USAGE ON SCHEMA public TO {app};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app};
REVOKE ALL ON audit_event FROM {app};
GRANT SELECT, INSERT ON audit_event TO {app};
REVOKE ALL ON alembic_version FROM {app};
GRANT SELECT ON alembic_version TO {app};
"""


def _admin(sql: str) -> None:
    import psycopg

    assert POSTGRES_URL is not None
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]  # test-made names, no user input


@pytest.fixture
def roles() -> Iterator[tuple[str, str]]:
    """(owner URL, app URL) for a fresh database owned by its own migration role."""
    assert POSTGRES_URL is not None
    tag = uuid.uuid4().hex[:10]
    owner, app, database = f"latchkey_owner_{tag}", f"latchkey_app_{tag}", f"latchkey_roles_{tag}"
    _admin(f"CREATE ROLE {owner} LOGIN PASSWORD 'owner-pw-{tag}'")
    _admin(f"CREATE ROLE {app} LOGIN PASSWORD 'app-pw-{tag}'")
    _admin(f"CREATE DATABASE {database} OWNER {owner}")
    _admin(f"REVOKE CONNECT ON DATABASE {database} FROM PUBLIC")
    _admin(f"GRANT CONNECT ON DATABASE {database} TO {app}")
    base = make_url(POSTGRES_URL).set(database=database)
    as_owner = base.set(username=owner, password=f"owner-pw-{tag}")
    as_app = base.set(username=app, password=f"app-pw-{tag}")
    try:
        yield (
            as_owner.render_as_string(hide_password=False),
            as_app.render_as_string(hide_password=False),
        )
    finally:
        _admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        _admin(f"DROP ROLE IF EXISTS {app}")
        _admin(f"DROP ROLE IF EXISTS {owner}")


def test_the_app_role_appends_but_cannot_alter_or_unguard_the_trail(
    roles: tuple[str, str],
) -> None:
    owner_url, app_url = roles
    migrate(owner_url)
    owner = Database(owner_url)
    app_role = make_url(app_url).username
    with owner.session() as session:
        for statement in APP_GRANTS.format(app=app_role).strip().splitlines():
            session.execute(text(statement))
    owner.dispose()

    db, audit = Database(app_url), AuditLog(AUDIT_KEY.encode())
    try:
        for n in range(3):
            with db.session() as session:
                audit.append(session, event="requested", actor=f"U{n}")
        with db.session() as session:
            assert audit.verify(session).ok and audit.verify(session).checked == 3
        for statement in (
            "UPDATE audit_event SET actor = 'U-evil' WHERE seq = 1",
            "DELETE FROM audit_event WHERE seq = 3",
            "TRUNCATE audit_event",
            "ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only",
            "ALTER TABLE audit_event DISABLE TRIGGER ALL",
            "DROP TRIGGER audit_event_append_only ON audit_event",
            "SET session_replication_role = replica",
        ):
            with pytest.raises(DBAPIError) as refused, db.session() as session:
                session.execute(text(statement))
            # Refused by privileges, before the trigger is even asked.
            assert "permission denied" in str(refused.value) or "must be owner" in str(
                refused.value
            ), statement
        with db.session() as session:
            result = audit.verify(session)
        assert result.ok and result.checked == 3
    finally:
        db.dispose()
