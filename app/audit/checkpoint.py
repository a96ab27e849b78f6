"""Signed checkpoints of the chain's head, published outside the database.

`verify` cannot see the newest events deleted: a shorter chain still verifies. A
checkpoint — the head's seq and hash, a time, and an HMAC over them with the audit key —
logged and POSTed to the SIEM on a schedule is the outside witness: `latchkey audit
verify --checkpoint` finds the tail cut or rewritten since. The MAC stops someone from
passing off a checkpoint of their own (say, one with a lower seq) as ours.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import Session

from app.audit.chain import VerifyResult
from app.audit.hashing import GENESIS
from app.audit.keys import head_event
from app.audit.sink import Webhook
from app.config import Settings
from app.db import Database, utcnow
from app.models import AuditEvent

log = logging.getLogger(__name__)

# How often the beat publishes one: the longest stretch of newest events a cut can hide.
CHECKPOINT_EVERY = timedelta(minutes=5)
MARKER = "audit checkpoint "
# Domain separation: a checkpoint MAC can never be mistaken for a chain hash (those
# hash 64 hex characters first) or a key id, though all three use the audit key.
_DOMAIN = b"latchkey-checkpoint:"


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    at: str
    mac: str

    def as_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


def checkpoint_mac(key: bytes, seq: int, hash_: str, at: str) -> str:
    message = json.dumps(
        {"at": at, "hash": hash_, "seq": seq}, sort_keys=True, separators=(",", ":")
    )
    return hmac.new(key, _DOMAIN + message.encode(), hashlib.sha256).hexdigest()


def make_checkpoint(session: Session, key: bytes, now: datetime | None = None) -> Checkpoint:
    """The committed head of the chain, signed (seq 0 for an empty chain)."""
    head = head_event(session)
    seq, hash_ = (head.seq, head.hash) if head else (0, GENESIS)
    at = (now or utcnow()).isoformat()
    return Checkpoint(seq, hash_, at, checkpoint_mac(key, seq, hash_, at))


def publish_checkpoint(checkpoint: Checkpoint, webhook: Webhook | None) -> None:
    """Log it, and POST it to the SIEM when there is one (signed like event batches).

    A failed POST is only logged: the log line is already out, and the next checkpoint
    comes one schedule later; nothing retries an old head.
    """
    log.info("%s%s", MARKER, checkpoint.as_json())
    if webhook is None:
        return
    try:
        webhook.post_json({"latchkey_checkpoint": asdict(checkpoint)})
    except (OSError, urllib.error.URLError, ValueError) as exc:
        log.warning("audit checkpoint: webhook failed (%s)", exc)


def run_checkpoint(db: Database, key: bytes, settings: Settings) -> Checkpoint:
    """The beat's periodic task body: take the head, sign it, publish it."""
    with db.session() as session:
        checkpoint = make_checkpoint(session, key)
    publish_checkpoint(checkpoint, Webhook.from_settings(settings))
    return checkpoint


def load_checkpoint(source: str) -> Checkpoint:
    """A checkpoint from a literal JSON object (or log line), or the last one in a file of
    lines (the log, or the SIEM receiver's JSON lines). Raises ValueError when there is none."""
    if source.lstrip().startswith("{") or MARKER in source:
        found = _from_line(source)
        if found is None:
            raise ValueError('not a checkpoint: expected {"seq", "hash", "at", "mac"}')
        return found
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"{source}: no such file (nor a JSON object)")
    last = None
    for line in path.read_text(encoding="utf-8").splitlines():
        last = _from_line(line) or last
    if last is None:
        raise ValueError(f"{source}: holds no checkpoint")
    return last


def _from_line(line: str) -> Checkpoint | None:
    line = line.strip()
    if MARKER in line:  # a log line: the JSON follows the marker
        line = line.split(MARKER, 1)[1]
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("latchkey_checkpoint"), dict):
        data = data["latchkey_checkpoint"]  # as POSTed to the SIEM
    if not isinstance(data, dict) or not {"seq", "hash", "at", "mac"} <= set(data):
        return None
    try:
        return Checkpoint(int(data["seq"]), str(data["hash"]), str(data["at"]), str(data["mac"]))
    except (TypeError, ValueError):
        return None


def verify_checkpoint(
    session: Session, checkpoint: Checkpoint, keys: Sequence[bytes]
) -> VerifyResult:
    """Check the checkpoint is ours (its MAC, under any known key), then that the chain
    still holds the event it saw, with the same hash."""
    cp = checkpoint
    if not any(
        hmac.compare_digest(cp.mac, checkpoint_mac(k, cp.seq, cp.hash, cp.at)) for k in keys
    ):
        return VerifyResult(
            False,
            0,
            None,
            "the checkpoint's MAC matches neither LATCHKEY_AUDIT_KEY nor any of "
            "LATCHKEY_AUDIT_PREVIOUS_KEYS: forged or altered, not used",
        )
    if cp.seq == 0:
        return VerifyResult(True, 0, None, f"checkpoint of {cp.at} saw an empty chain")
    last = session.execute(select(func.max(AuditEvent.seq))).scalar_one() or 0
    event = session.get(AuditEvent, cp.seq)
    if event is None and last < cp.seq:
        missing = f"event {cp.seq} is" if last + 1 == cp.seq else f"events {last + 1}..{cp.seq} are"
        return VerifyResult(
            False,
            last,
            last + 1,
            f"{missing} missing: the tail was cut (the checkpoint of {cp.at} saw event {cp.seq})",
        )
    if event is None:
        return VerifyResult(
            False, last, cp.seq, f"event {cp.seq}, seen by the checkpoint of {cp.at}, is missing"
        )
    if not hmac.compare_digest(event.hash, cp.hash):
        return VerifyResult(
            False,
            last,
            cp.seq,
            f"event {cp.seq} does not match the checkpoint of {cp.at}: the chain was rewritten",
        )
    return VerifyResult(True, last, None, f"event {cp.seq} matches the checkpoint of {cp.at}")
