"""Stream the audit trail to a SIEM: a signed webhook fed from the chain, at least once.

The sink keeps a cursor (`audit_delivery.last_seq`) and POSTs the events after it in
chain order, in batches, from a Celery task the beat runs. The cursor moves only after a
2xx, so a failure or crash sends the same events again (receivers dedupe on `seq` or
`hash`); failures back off (2 s doubling, at most 5 min). Nothing here is on the path of a
grant or a revoke: the sink only reads events that were already committed.

Each POST carries `X-Latchkey-Timestamp` and `X-Latchkey-Signature: sha256=<hex>`, an
HMAC-SHA256 of `<timestamp>.<body>` with LATCHKEY_AUDIT_WEBHOOK_SECRET.

Redirects are never followed: a 3xx is a failed delivery like any other (urllib would
otherwise turn the POST into a body-less GET to wherever the answer points, with our
headers). The URL is https, or http to this machine only (checked at start-up).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from app.audit import as_record
from app.config import Settings
from app.db import Database, utcnow
from app.models import AuditDelivery, AuditEvent
from app.outbound import NO_REDIRECTS

log = logging.getLogger(__name__)

SINK = "webhook"
BATCH = 200
MAX_BACKOFF = timedelta(minutes=5)


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return (
        "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    )


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: bytes
    headers: dict[str, str]
    timeout: float = 10

    @classmethod
    def from_settings(cls, settings: Settings) -> Webhook | None:
        if not settings.audit_webhook_url:
            return None
        return cls(
            settings.audit_webhook_url,
            settings.audit_webhook_secret.get_secret_value().encode(),
            json.loads(settings.audit_webhook_headers.get_secret_value()),
        )

    def post(self, events: list[AuditEvent]) -> None:
        """Send one batch; raises on anything but a 2xx."""
        self.post_json({"events": [as_record(e) for e in events]})

    def post_json(self, payload: dict[str, Any]) -> None:
        """POST one signed JSON body (a batch, a checkpoint); raises on anything but a 2xx."""
        body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(  # noqa: S310 - scheme checked at start-up
            self.url,
            data=body,
            method="POST",
            headers={
                **self.headers,
                "Content-Type": "application/json",
                "User-Agent": "latchkey-audit-sink",
                "X-Latchkey-Timestamp": timestamp,
                "X-Latchkey-Signature": sign(self.secret, timestamp, body),
            },
        )
        try:
            response = NO_REDIRECTS.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            note = " (redirects are not followed)" if 300 <= exc.code < 400 else ""
            raise OSError(f"webhook answered HTTP {exc.code}{note}") from None
        with response:
            if not 200 <= response.status < 300:
                raise OSError(f"webhook answered HTTP {response.status}")


def backoff(failures: int) -> timedelta:
    return min(timedelta(seconds=2 ** min(failures, 20)), MAX_BACKOFF)


def deliver(db: Database, webhook: Webhook, now: datetime | None = None) -> int:
    """Send every event after the cursor, batch by batch; returns how many were delivered.

    Stops at the first failure and records when to try again. One caller at a time (the
    task holds a Redis lock), so the cursor is never raced.
    """
    now = now or utcnow()
    with db.session() as session:
        cursor = session.get(AuditDelivery, SINK) or AuditDelivery(sink=SINK)
        if cursor.next_attempt_at is not None and cursor.next_attempt_at > now:
            return 0
        session.add(cursor)
    delivered = 0
    while True:
        with db.session() as session:
            cursor = session.get(AuditDelivery, SINK)
            assert cursor is not None
            events = list(
                session.execute(
                    select(AuditEvent)
                    .where(AuditEvent.seq > cursor.last_seq)  # type: ignore[arg-type]
                    .order_by(AuditEvent.seq)
                    .limit(BATCH)
                ).scalars()
            )
        if not events:
            return delivered
        try:
            webhook.post(events)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            with db.session() as session:
                cursor = session.get(AuditDelivery, SINK)
                assert cursor is not None
                cursor.failures += 1
                cursor.next_attempt_at = utcnow() + backoff(cursor.failures)
                cursor.last_error = str(exc)[:500]
                session.add(cursor)
            log.warning("audit webhook failed (%s); next try in %s", exc, backoff(cursor.failures))
            return delivered
        with db.session() as session:
            cursor = session.get(AuditDelivery, SINK)
            assert cursor is not None
            cursor.last_seq, cursor.failures = events[-1].seq, 0
            cursor.next_attempt_at = cursor.last_error = None
            session.add(cursor)
        delivered += len(events)
