"""Identity links are trusted only as the keyed trail vouches for them: rows an insider
edits or restores count as no link (app/identity_links/store.py); and the admin's CLI."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from app.audit import AuditLog
from app.cli import main
from app.db import Database
from app.identity_links.store import link, linked, unlink
from app.models import IdentityLink

USER = "U0LINKED1"


def _link(database: Database, audit: AuditLog, email: str = "ann@example.com") -> None:
    with database.session() as session:
        link(session, audit, user_id=USER, issuer="https://idp", subject="00u1", email=email)


def _email(database: Database, audit: AuditLog) -> str | None:
    with database.session() as session:
        row = linked(session, audit, USER)
        return row.email if row else None


def test_a_link_edited_in_the_db_is_no_link(database: Database, audit: AuditLog) -> None:
    _link(database, audit)
    assert _email(database, audit) == "ann@example.com"
    with database.session() as session:
        session.execute(
            update(IdentityLink).where(IdentityLink.user_id == USER).values(email="eve@example.com")
        )
    assert _email(database, audit) is None
    _link(database, audit, "ann@example.com")  # linking again restores it, keyed
    assert _email(database, audit) == "ann@example.com"


def test_a_link_restored_after_an_unlink_is_no_link(database: Database, audit: AuditLog) -> None:
    _link(database, audit)
    with database.session() as session:
        kept = session.get(IdentityLink, USER)
        assert kept is not None
        copy = IdentityLink(**kept.model_dump())
        assert unlink(session, audit, USER, actor="U0ADMIN")
    with database.session() as session:
        session.add(copy)  # the insider puts the old row back, old keyed event and all
    assert _email(database, audit) is None


def test_the_admin_cli_shows_and_unlinks(
    database: Database,
    audit: AuditLog,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.factories import AUDIT_KEY

    monkeypatch.setenv("DATABASE_URL", database.url)
    monkeypatch.setenv("LATCHKEY_AUDIT_KEY", AUDIT_KEY)
    from app.config import get_settings

    get_settings.cache_clear()
    _link(database, audit)
    assert main(["identity", "show", USER]) == 0
    assert "ann@example.com (subject 00u1 at https://idp)" in capsys.readouterr().out
    assert main(["identity", "unlink", USER, "--by", "U0ADMIN"]) == 0
    assert main(["identity", "show", USER]) == 1
    assert main(["identity", "unlink", USER, "--by", "U0ADMIN"]) == 1
