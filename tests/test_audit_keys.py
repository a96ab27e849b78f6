"""The audit key: every process refuses a key that did not write the chain; rotation hands
the chain to a new key without breaking `verify`, and stale or old keys cannot write on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from app.audit import AuditKeyMismatch, AuditLog
from app.audit.keys import ROTATED, check_key, key_id, require_matching_key
from app.config import ConfigError
from app.db import Database
from app.models import AuditEvent
from tests.factories import AUDIT_KEY

OLD = AUDIT_KEY
NEW = "the-new-audit-key-after-rotation-0123"
ROOT = Path(__file__).resolve().parents[1]


def _write(db: Database, audit: AuditLog, n: int) -> None:
    for i in range(n):
        with db.session() as session:
            audit.append(session, event="requested", actor=f"U{i}")


def latchkey(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI in its own process, with only the settings given (no .env, no LATCHKEY_*)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "LATCHKEY_"))}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**base, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_right_key_passes_and_a_wrong_one_is_refused_with_the_fix(
    database: Database, audit: AuditLog
) -> None:
    with database.session() as session:
        assert check_key(session, b"any-key-fits-an-empty-chain") is None
    _write(database, audit, 3)
    require_matching_key(database, OLD.encode())
    with pytest.raises(ConfigError) as refused:
        require_matching_key(database, b"a-key-someone-mistyped-0000")
    message = str(refused.value)
    assert "LATCHKEY_AUDIT_KEY does not match the audit trail" in message
    assert "newest audit event (3, requested)" in message
    assert "latchkey audit rotate-key" in message


def test_an_unmigrated_database_is_named(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(ConfigError, match=r"database not migrated.*latchkey migrate"):
        require_matching_key(db, OLD.encode())


def test_a_head_no_key_of_ours_signed_never_stops_a_write(
    database: Database, audit: AuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    """A row forged at the head (an insider's) must not halt every state change — revokes
    included — so the next event is written, the break logged loudly and named by verify.
    (A process whose own key was rotated away is refused: see the rotation tests.)"""
    _write(database, audit, 1)
    with database.session() as session:
        AuditLog(b"a-key-someone-forged-00000").append(session, event="approved", actor="x")
    with database.session() as session:
        audit.append(session, event="revoking", actor="latchkey")
    assert "appending anyway" in caplog.text
    with database.session() as session:
        result = audit.verify(session)
    assert not result.ok and result.bad_seq == 2


def test_check_key_command_refuses_a_wrong_key(
    database: Database, audit: AuditLog, tmp_path: Path
) -> None:
    _write(database, audit, 2)
    env = {"DATABASE_URL": database.url}
    wrong = latchkey(
        ["audit", "check-key"], {**env, "LATCHKEY_AUDIT_KEY": "wrong-key-0123456789"}, tmp_path
    )
    assert wrong.returncode == 2, wrong.stderr
    assert "LATCHKEY_AUDIT_KEY does not match the audit trail" in wrong.stderr
    assert "latchkey audit rotate-key" in wrong.stderr
    right = latchkey(["audit", "check-key"], {**env, "LATCHKEY_AUDIT_KEY": OLD}, tmp_path)
    assert right.returncode == 0 and key_id(OLD.encode()) in right.stdout


def test_rotation_hands_the_chain_to_the_new_key(
    database: Database, audit: AuditLog, tmp_path: Path
) -> None:
    _write(database, audit, 3)
    env = {"DATABASE_URL": database.url, "LATCHKEY_AUDIT_KEY": OLD}
    short = latchkey(["audit", "rotate-key"], {**env, "LATCHKEY_NEW_AUDIT_KEY": "short"}, tmp_path)
    assert short.returncode == 2 and "at least 16" in short.stderr
    done = latchkey(["audit", "rotate-key"], {**env, "LATCHKEY_NEW_AUDIT_KEY": NEW}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "LATCHKEY_AUDIT_KEY=<the new key>" in done.stdout
    assert "LATCHKEY_AUDIT_PREVIOUS_KEYS" in done.stdout and NEW not in done.stdout

    # A process still on the old key may neither start nor write; one on the new key may.
    with pytest.raises(ConfigError, match="rotated at event 4"):
        require_matching_key(database, OLD.encode())
    with pytest.raises(AuditKeyMismatch), database.session() as session:
        audit.append(session, event="granted", actor="stale")
    require_matching_key(database, NEW.encode())
    _write(database, AuditLog(NEW.encode()), 2)
    require_matching_key(database, NEW.encode())
    with pytest.raises(AuditKeyMismatch), database.session() as session:
        audit.append(session, event="granted", actor="stale")

    with database.session() as session:
        rotation = session.execute(
            text("SELECT event, details FROM audit_event WHERE seq = 4")
        ).one()
    assert rotation[0] == ROTATED

    new_env = {"DATABASE_URL": database.url, "LATCHKEY_AUDIT_KEY": NEW}
    ok = latchkey(["audit", "verify"], {**new_env, "LATCHKEY_AUDIT_PREVIOUS_KEYS": OLD}, tmp_path)
    assert ok.returncode == 0 and "6 events, chain intact" in ok.stdout, ok.stdout + ok.stderr
    without = latchkey(["audit", "verify"], new_env, tmp_path)
    assert without.returncode == 1 and "event 1 was altered" in without.stdout
    assert "a key not given to verify" in without.stdout
    old_only = latchkey(["audit", "verify"], env, tmp_path)
    assert old_only.returncode == 1
    assert "rotated the audit key to key id" in old_only.stdout
    started = latchkey(["audit", "check-key"], new_env, tmp_path)
    assert started.returncode == 0, started.stderr


def test_a_tail_rewritten_with_a_leaked_old_key_fails_verify(
    database: Database, audit: AuditLog
) -> None:
    _write(database, audit, 2)
    with database.session() as session:
        audit.append(
            session,
            event=ROTATED,
            actor="latchkey",
            details={"old_key_id": key_id(OLD.encode()), "new_key_id": key_id(NEW.encode())},
        )
    new = AuditLog(NEW.encode())
    _write(database, new, 2)
    with database.session() as session:
        assert new.verify(session, [OLD.encode()]).ok
        # The attacker holds the old key: cuts the rotation and all after it, writes on.
        _as_attacker(session)
        session.execute(text("DELETE FROM audit_event WHERE seq >= 3"))
    _write(database, audit, 2)
    with database.session() as session:
        result = new.verify(session, [OLD.encode()])
    assert not result.ok and "rotation to the current key is missing" in result.message


def _as_attacker(session) -> None:  # type: ignore[no-untyped-def]
    """Someone with full DB access first switches off the append-only triggers."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL session_replication_role = replica"))
    else:
        session.execute(text("DROP TRIGGER IF EXISTS audit_event_no_update"))
        session.execute(text("DROP TRIGGER IF EXISTS audit_event_no_delete"))


def test_a_log_given_previous_keys_vouches_for_old_events_and_verifies(
    database: Database, audit: AuditLog
) -> None:
    _write(database, audit, 1)
    with database.session() as session:
        audit.append(
            session,
            event=ROTATED,
            actor="latchkey",
            details={"old_key_id": key_id(OLD.encode()), "new_key_id": key_id(NEW.encode())},
        )
    rotated = AuditLog(NEW.encode(), previous_keys=[OLD.encode()])
    _write(database, rotated, 1)
    with database.session() as session:
        first, last = session.get(AuditEvent, 1), session.get(AuditEvent, 3)
        assert first is not None and last is not None
        assert rotated.authentic(first) and rotated.authentic(last)
        assert not AuditLog(NEW.encode()).authentic(first)
        assert rotated.verify(session).ok
        assert not AuditLog(NEW.encode()).verify(session).ok
