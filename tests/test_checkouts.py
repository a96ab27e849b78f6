"""One holder at a time for a shared account, decided by the database (app.checkouts):
two workers checking the same account out at the same moment, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from app import checkouts
from app.db import Database
from app.models import AccessRequest, RequestStatus

RESOURCE = "postgres-account/dba_breakglass"


def _approved(database: Database, minutes_ago: int) -> uuid.UUID:
    with database.session() as session:
        request = AccessRequest(
            flow="checkout-dba",
            target="dba",
            requester_id=f"U{uuid.uuid4().hex[:8].upper()}",
            reason="incident",
            requested_seconds=3600,
            status=RequestStatus.APPROVED,
            created_at=datetime.now(UTC) - timedelta(minutes=minutes_ago),
        )
        session.add(request)
    return request.id


def test_two_workers_checking_out_at_once_one_wins_and_the_other_waits(
    database: Database,
) -> None:
    first, second = _approved(database, 2), _approved(database, 1)
    inside = threading.Event()
    outcomes: dict[uuid.UUID, str] = {}

    def check_out(request_id: uuid.UUID, hold: bool) -> None:
        try:
            with database.session() as session:
                checkouts.take(session, request_id, RESOURCE)
                if hold:  # the winner's transaction stays open while the other tries
                    inside.set()
                    threading.Event().wait(0.5)
            outcomes[request_id] = "holds"
        except (checkouts.Busy, IntegrityError):
            outcomes[request_id] = "waits"
        except OperationalError as exc:  # SQLite: the writer lock, held by the winner
            outcomes[request_id] = f"locked: {exc}"

    winner = threading.Thread(target=check_out, args=(first, True))
    winner.start()
    assert inside.wait(5)
    loser = threading.Thread(target=check_out, args=(second, False))
    loser.start()
    winner.join(10)
    loser.join(10)
    assert outcomes[first] == "holds"
    assert outcomes[second] == "waits"
    with database.session() as session:
        request = session.get(AccessRequest, second)
        assert request is not None
        spot = checkouts.place(session, request, RESOURCE)
        holder = session.get(AccessRequest, first)
    assert spot is not None and holder is not None
    assert spot.holder == holder.requester_id and spot.holder_request == first
    assert spot.ahead == 0


def test_first_asked_first_served_and_the_account_goes_back_at_the_end(
    database: Database,
) -> None:
    earlier, later = _approved(database, 5), _approved(database, 1)
    with database.session() as session:
        late = session.get(AccessRequest, later)
        assert late is not None
        # Free, but an earlier approved request waits: the later one goes after it.
        spot = checkouts.place(session, late, RESOURCE)
        assert spot is not None and spot.holder is None and spot.ahead == 1
        early = session.get(AccessRequest, earlier)
        assert early is not None and checkouts.place(session, early, RESOURCE) is None
        checkouts.take(session, earlier, RESOURCE)
        checkouts.take(session, earlier, RESOURCE)  # a retry of its own: still its
    with database.session() as session, pytest.raises(checkouts.Busy):
        checkouts.take(session, later, RESOURCE)
    with database.session() as session:
        assert checkouts.release(session, earlier) is True
        assert checkouts.release(session, earlier) is False
        checkouts.take(session, later, RESOURCE)
