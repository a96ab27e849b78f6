"""Signed checkpoints of the chain's head: published to the log and the SIEM, and the
witness `verify --checkpoint` uses to find a cut tail; a forged one is refused."""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.audit import AuditLog
from app.audit.checkpoint import (
    Checkpoint,
    checkpoint_mac,
    load_checkpoint,
    make_checkpoint,
    run_checkpoint,
    verify_checkpoint,
)
from app.audit.sink import sign
from app.config import Settings
from app.db import Database
from tests.factories import AUDIT_KEY
from tests.test_audit_keys import _as_attacker, _write, latchkey

SECRET = "siem-shared-secret-0123456789"
KEY = AUDIT_KEY.encode()


class Siem:
    """A local SIEM endpoint that keeps every body whose signature is right."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.bad_signatures = 0
        siem = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = sign(SECRET.encode(), self.headers["X-Latchkey-Timestamp"], body)
                if hmac.compare_digest(expected, self.headers["X-Latchkey-Signature"]):
                    siem.bodies.append(json.loads(body))
                else:
                    siem.bad_signatures += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/audit"


@pytest.fixture
def siem() -> Iterator[Siem]:
    local = Siem()
    yield local
    local.server.shutdown()
    local.server.server_close()


def test_a_checkpoint_is_logged_and_posted_signed(
    database: Database, audit: AuditLog, siem: Siem, caplog: pytest.LogCaptureFixture
) -> None:
    _write(database, audit, 3)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        LATCHKEY_AUDIT_WEBHOOK_URL=siem.url,
        LATCHKEY_AUDIT_WEBHOOK_SECRET=SECRET,
    )
    with caplog.at_level(logging.INFO, logger="app.audit.checkpoint"):
        checkpoint = run_checkpoint(database, KEY, settings)
    with database.session() as session:
        head = session.execute(text("SELECT seq, hash FROM audit_event WHERE seq = 3")).one()
    assert (checkpoint.seq, checkpoint.hash) == (head[0], head[1])
    assert checkpoint.mac == checkpoint_mac(KEY, 3, head[1], checkpoint.at)
    line = next(r.getMessage() for r in caplog.records if "audit checkpoint" in r.getMessage())
    assert load_checkpoint(line) == checkpoint  # the log line as printed
    assert siem.bad_signatures == 0
    assert siem.bodies == [
        {
            "latchkey_checkpoint": {
                "seq": 3,
                "hash": head[1],
                "at": checkpoint.at,
                "mac": checkpoint.mac,
            }
        }
    ]


def test_verify_with_a_checkpoint_names_the_cut_tail(
    database: Database, audit: AuditLog, tmp_path: Path
) -> None:
    _write(database, audit, 2)
    with database.session() as session:
        older = make_checkpoint(session, KEY)
    _write(database, audit, 3)
    with database.session() as session:
        newest = make_checkpoint(session, KEY)
    # What a log shipper or the SIEM kept: other lines, an older checkpoint, the newest last.
    kept = tmp_path / "siem.jsonl"
    kept.write_text(
        "2026-03-01 09:00:00 INFO app.audit.checkpoint audit checkpoint "
        + older.as_json()
        + '\n{"events": []}\nnot json at all\n'
        + json.dumps({"latchkey_checkpoint": json.loads(newest.as_json())})
        + "\n"
    )
    env = {"DATABASE_URL": database.url, "LATCHKEY_AUDIT_KEY": AUDIT_KEY}
    intact = latchkey(["audit", "verify", "--checkpoint", str(kept)], env, tmp_path)
    assert intact.returncode == 0 and "event 5 matches the checkpoint" in intact.stdout

    with database.session() as session:
        _as_attacker(session)
        session.execute(text("DELETE FROM audit_event WHERE seq >= 4"))
    with database.session() as session:
        assert audit.verify(session).ok  # the shorter chain alone still verifies
    cut = latchkey(["audit", "verify", "--checkpoint", str(kept)], env, tmp_path)
    assert cut.returncode == 1, cut.stdout + cut.stderr
    assert "FAIL events 4..5 are missing: the tail was cut" in cut.stdout


def test_a_forged_checkpoint_is_refused(
    database: Database, audit: AuditLog, tmp_path: Path
) -> None:
    _write(database, audit, 4)
    with database.session() as session:
        real = make_checkpoint(session, KEY)
    lowered = Checkpoint(2, real.hash, real.at, real.mac)  # "the chain only ever had 2 events"
    guessed = b"a-key-guessed-by-the-forger-00"
    own = Checkpoint(2, real.hash, real.at, checkpoint_mac(guessed, 2, real.hash, real.at))
    with database.session() as session:
        assert verify_checkpoint(session, real, [KEY]).ok
        for forged in (lowered, own):
            result = verify_checkpoint(session, forged, [KEY])
            assert not result.ok and "forged or altered" in result.message
    env = {"DATABASE_URL": database.url, "LATCHKEY_AUDIT_KEY": AUDIT_KEY}
    done = latchkey(["audit", "verify", "--checkpoint", lowered.as_json()], env, tmp_path)
    assert done.returncode == 1 and "FAIL the checkpoint's MAC" in done.stdout
    junk = latchkey(["audit", "verify", "--checkpoint", '{"seq": 1}'], env, tmp_path)
    assert junk.returncode == 2 and "--checkpoint: not a checkpoint" in junk.stderr


def test_a_checkpoint_signed_before_a_rotation_still_verifies(
    database: Database, audit: AuditLog
) -> None:
    _write(database, audit, 2)
    with database.session() as session:
        before = make_checkpoint(session, KEY)
        assert not verify_checkpoint(session, before, [b"the-new-audit-key-0123456"]).ok
        assert verify_checkpoint(session, before, [b"the-new-audit-key-0123456", KEY]).ok
