"""Passkeys are trusted only as the keyed trail vouches for them (app/passkeys/credentials.py):
a row an insider writes or edits is ignored, a removed one stays removed; and the admin CLI."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from app.audit import AuditLog
from app.cli import main
from app.db import Database
from app.models import Passkey
from app.passkeys.credentials import passkeys_of, register

USER = "U0PASSKEY1"


def _register(database: Database, audit: AuditLog, credential: str = "Y3JlZC0x") -> None:
    with database.session() as session:
        register(
            session, audit, user_id=USER, credential_id=credential, public_key="cGsx", sign_count=0
        )


def _credentials(database: Database, audit: AuditLog) -> list[str]:
    with database.session() as session:
        return [p.credential_id for p in passkeys_of(session, audit, USER)]


def test_rows_an_insider_writes_or_edits_are_not_passkeys(
    database: Database, audit: AuditLog
) -> None:
    _register(database, audit)
    assert _credentials(database, audit) == ["Y3JlZC0x"]
    with database.session() as session:
        real = session.execute(select(Passkey)).scalar_one()
        # Their own key, pointed at the real registration event; and the real row's key swapped.
        session.add(
            Passkey(user_id=USER, credential_id="ZXZl", public_key="ZXZl", audit_seq=real.audit_seq)
        )
    assert _credentials(database, audit) == ["Y3JlZC0x"]
    with database.session() as session:
        session.execute(
            update(Passkey).where(Passkey.credential_id == "Y3JlZC0x").values(public_key="ZXZl")
        )
    assert _credentials(database, audit) == []


@pytest.mark.usefixtures("cli_settings")
def test_the_admin_cli_lists_and_removes_and_a_restored_row_stays_removed(
    database: Database, audit: AuditLog, capsys: pytest.CaptureFixture[str]
) -> None:
    _register(database, audit)
    assert main(["passkey", "list", USER]) == 0
    assert "Y3JlZC0x  added" in capsys.readouterr().out
    with database.session() as session:
        kept = Passkey(**session.execute(select(Passkey)).scalar_one().model_dump())
    assert main(["passkey", "remove", USER, "--by", "U0ADMIN"]) == 0
    assert main(["passkey", "list", USER]) == 1
    with database.session() as session:
        session.add(kept)  # the insider puts the row back
    assert _credentials(database, audit) == []
    assert main(["passkey", "remove", USER, "--by", "U0ADMIN"]) == 1
