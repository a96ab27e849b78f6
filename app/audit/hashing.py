"""What the chain hashes and how: the canonical form of an event and its keyed hash.

Kept apart from the writer (chain.py) so that key handling (keys.py) and the writer
can both build on it without importing each other.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from app.models import AuditEvent

GENESIS = "0" * 64


def hashed_fields(event: AuditEvent) -> dict[str, Any]:
    """Every field but the hashes, as plain JSON types: what the chain covers."""
    return {
        "seq": event.seq,
        "at": event.at.isoformat(),
        "event": event.event,
        "actor": event.actor,
        "request_id": str(event.request_id) if event.request_id else None,
        "flow": event.flow,
        "target": event.target,
        "subject": event.subject,
        "details": event.details,
    }


def as_record(event: AuditEvent) -> dict[str, Any]:
    """One event as plain JSON types, the shape of a JSON line and of a webhook delivery:
    the fields the chain covers, then the chain's own two hashes."""
    return {**hashed_fields(event), "prev_hash": event.prev_hash, "hash": event.hash}


def canonical(event: AuditEvent) -> str:
    """The exact bytes that are hashed: the hashed fields, sorted keys, UTC ISO time."""
    body = hashed_fields(event)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def chain_hash(key: bytes, prev_hash: str, event: AuditEvent) -> str:
    return hmac.new(key, (prev_hash + canonical(event)).encode(), hashlib.sha256).hexdigest()


def signed_by(key: bytes, prev_hash: str, event: AuditEvent) -> bool:
    """Whether `key` made this event's hash (constant-time comparison)."""
    return hmac.compare_digest(event.hash, chain_hash(key, prev_hash, event))
