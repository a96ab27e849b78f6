"""Fill a database with many grants fast: live ones ending later and a long ended history.

For the sweep-cost bench and the query-plan tests: rows are written in bulk (multi-row
INSERTs), not through the state machine, so they carry no audit events. Never point this
at a database someone uses.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert

from app.db import Database, utcnow
from app.models import AccessRequest, Grant, RequestStatus

CHUNK = 5000
REQUESTS = AccessRequest.__table__  # type: ignore[attr-defined]
GRANTS = Grant.__table__  # type: ignore[attr-defined]


def add_grants(
    db: Database,
    *,
    live: int = 0,
    ended: int = 0,
    flow: str = "test-admin",
    now: datetime | None = None,
) -> None:
    """Add `live` active grants ending 1 to 9 hours from now and `ended` grants that ended
    over the last 30 days (expired or revoked), each with its request."""
    now = now or utcnow()
    rows = [*_live_rows(live, flow, now), *_ended_rows(ended, flow, now)]
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        # Core executemany, past the ORM: the bench fills hundreds of thousands of rows.
        with db.engine.begin() as connection:
            connection.execute(insert(REQUESTS), [request for request, _ in chunk])
            connection.execute(insert(GRANTS), [grant for _, grant in chunk])


def _row(
    n: int, flow: str, status: RequestStatus, granted: datetime, ends: datetime, ended: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    request_id = uuid.uuid4()
    request = {
        "id": request_id,
        "flow": flow,
        "target": "admins",
        "requester_id": f"U{n % 5000:08d}",
        "reason": "history",
        "requested_seconds": int((ends - granted).total_seconds()),
        "status": status,
        "created_at": granted,
        "updated_at": ends if ended else granted,
    }
    grant = {
        "id": uuid.uuid4(),
        "request_id": request_id,
        "provider": "aws_iam_group",
        "target": "admins",
        "resource": "latchkey-test-admins",
        "principal": f"person{n % 5000}@example.com",
        "granted_at": granted,
        "expires_at": ends,
        "ended_at": ends if ended else None,
        "end_cause": ("expired" if status is RequestStatus.EXPIRED else "revoked")
        if ended
        else None,
        "details": {},
    }
    return request, grant


def _live_rows(count: int, flow: str, now: datetime) -> Iterator[tuple[dict, dict]]:
    for n in range(count):
        ends = now + timedelta(hours=1) + timedelta(seconds=(n * 7919) % (8 * 3600))
        yield _row(n, flow, RequestStatus.ACTIVE, now - timedelta(minutes=5), ends, ended=False)


def _ended_rows(count: int, flow: str, now: datetime) -> Iterator[tuple[dict, dict]]:
    for n in range(count):
        ends = now - timedelta(minutes=5) - timedelta(seconds=(n * 7919) % (30 * 86400))
        status = RequestStatus.EXPIRED if n % 4 else RequestStatus.REVOKED
        yield _row(n, flow, status, ends - timedelta(hours=1), ends, ended=True)
