"""The sweep's questions (what is due, on both backends) and its backoff for revokes a
provider keeps refusing."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

from app import queries
from app.db import Database
from app.models import RequestStatus
from app.sweeps import revoke_retry_delay
from app.testing.grant_history import add_grants
from tests.factories import grant_row

S = RequestStatus


def test_failed_revokes_are_retried_with_doubling_waits_capped_at_an_hour() -> None:
    base = timedelta(seconds=60)
    waits = [revoke_retry_delay(base, n) for n in range(1, 9)]
    assert waits[:4] == [timedelta(seconds=s) for s in (60, 120, 240, 480)]
    assert waits[-1] == timedelta(hours=1)
    assert all(a <= b for a, b in itertools.pairwise(waits))


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _grant(
    db: Database,
    status: RequestStatus,
    ends_in: float,
    *,
    ended: bool = False,
    noticed_for: datetime | None = None,
) -> uuid.UUID:
    ends = NOW + timedelta(seconds=ends_in)
    with db.session() as session:
        return grant_row(
            session,
            status=status,
            expires_at=ends,
            principal="p@example.com",
            reason="r",
            granted_at=ends - timedelta(hours=1),
            ended_at=ends if ended else None,
            notice_sent_for=noticed_for,
        )


def test_the_sweep_questions_find_exactly_the_due_open_grants(database: Database) -> None:
    add_grants(database, live=50, ended=200, now=NOW)  # history and later ends: never due
    due = _grant(database, S.ACTIVE, -30)
    _grant(database, S.REVOKING, -30)  # being revoked: not due again, but overdue
    _grant(database, S.REVOKE_FAILED, -600)  # the provider refused: overdue, retried apart
    just_ended = _grant(database, S.EXPIRED, -5, ended=True)
    soon = _grant(database, S.ACTIVE, 20)
    noticed = _grant(database, S.ACTIVE, 40, noticed_for=NOW + timedelta(seconds=40))
    # Extended after its notice: the notice was for an earlier end, so it is due again.
    extended = _grant(database, S.ACTIVE, 50, noticed_for=NOW + timedelta(seconds=10))

    with database.session() as session:
        assert queries.due_for_expiry(session, NOW) == [due]
        assert [
            i for i, _ in queries.ending_between(session, NOW, NOW + timedelta(seconds=45))
        ] == [
            soon,
            noticed,
        ]
        warned = [
            g.request_id
            for g, _ in queries.unnoticed_ending(session, NOW, NOW + timedelta(minutes=1))
        ]
        assert warned == [soon, extended]
        assert all(
            flow == "test-admin"
            for _, flow in queries.unnoticed_ending(session, NOW, NOW + timedelta(minutes=1))
        )
        count, oldest = queries.overdue(session, NOW)
        assert count == 3 and oldest == NOW - timedelta(seconds=600)
        ended = queries.recently_ended(session, NOW - timedelta(seconds=60))
        assert [g.request_id for g in ended] == [just_ended]  # not the older history
