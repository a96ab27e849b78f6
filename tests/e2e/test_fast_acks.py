"""Approve acks at once and the worker decides: a click is kept, keyed, whatever the worker
is doing, and the approver hears how it ends (issue 14, point 1)."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from sqlalchemy import select, text

from app.models import AccessRequest, AuditEvent, RequestStatus
from app.slack import ids
from app.testing.scenes import (
    Person,
    approval_card_for,
    click,
    group_members,
    new_person,
    request_id_on,
    said_to,
    submit_request,
)
from app.testing.slack_standin import RecordedCall
from app.testing.stack import LocalStack, wait_until
from tests.factories import APPROVER, GROUP_NAME, OUTSIDER


def _pending(stack: LocalStack) -> tuple[Person, RecordedCall, uuid.UUID]:
    person = new_person(stack)
    submit_request(
        stack, person, flow="test-admin", target="admins", seconds=3600, reason="on-call fix"
    )
    card = approval_card_for(stack, person)
    return person, card, uuid.UUID(request_id_on(card))


def _trail(stack: LocalStack, request_id: uuid.UUID) -> list[AuditEvent]:
    with stack.database().session() as session:
        return list(
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.request_id == request_id)
                .order_by(AuditEvent.seq)  # type: ignore[arg-type]
            ).scalars()
        )


def _status(stack: LocalStack, request_id: uuid.UUID) -> RequestStatus:
    with stack.database().session() as session:
        request = session.get(AccessRequest, request_id)
        assert request is not None
        return request.status


def test_a_click_while_the_worker_is_stopped_is_acked_kept_and_decided_when_it_is_back(
    stack: LocalStack,
) -> None:
    person, card, request_id = _pending(stack)
    stack.stop_process("worker")
    mark = stack.slack.mark()
    try:
        assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
        # Nobody decided yet, so the approver is told it is being decided, in words.
        said_to(stack, APPROVER, "Your approval is recorded; deciding", since=mark)
        kept = [e for e in _trail(stack, request_id) if e.event == "decision_deferred"]
        assert [(e.actor, e.details["decision"]) for e in kept] == [(APPROVER, "approve")]
        assert _status(stack, request_id) == RequestStatus.PENDING
        assert person.email not in group_members(stack, GROUP_NAME)
    finally:
        stack.start_process("worker")
    wait_until(lambda: person.email in group_members(stack, GROUP_NAME), 60, "the grant")
    said_to(stack, APPROVER, "is decided: the request is", timeout=30, since=mark)
    trail = [(e.event, e.actor) for e in _trail(stack, request_id)]
    assert ("approved", APPROVER) in trail and ("decision_resumed", "latchkey") in trail


def test_a_non_approver_is_refused_in_words_and_on_the_record(stack: LocalStack) -> None:
    person, card, request_id = _pending(stack)
    mark = stack.slack.mark()
    assert click(stack, OUTSIDER, ids.APPROVE_ACTION, card).status == 200
    told = said_to(stack, OUTSIDER, "not an approver", timeout=30, since=mark)
    assert told.args["text"].startswith(":no_entry:")
    wait_until(
        lambda: any(e.event == "approve_refused" for e in _trail(stack, request_id)),
        10,
        "the refusal on the record",
    )
    resumed = [e for e in _trail(stack, request_id) if e.event == "decision_resumed"]
    assert resumed and "not an approver" in resumed[0].details["refusal"]
    assert _status(stack, request_id) == RequestStatus.PENDING
    assert person.email not in group_members(stack, GROUP_NAME)


def test_a_burst_of_clicks_is_kept_click_by_click_and_each_request_granted_once(
    stack: LocalStack,
) -> None:
    # Twelve cards, each clicked twice at the same moment (a double click, or two tabs):
    # the web keeps the burst's clicks together, but every click is its own keyed event
    # and each request is approved and granted exactly once.
    pending = [_pending(stack) for _ in range(12)]
    cards = [card for _, card, _ in pending] * 2
    barrier = threading.Barrier(len(cards))

    def fire(card: RecordedCall) -> int:
        barrier.wait()
        return click(stack, APPROVER, ids.APPROVE_ACTION, card).status

    with ThreadPoolExecutor(max_workers=len(cards)) as pool:
        assert set(pool.map(fire, cards)) == {200}
    for person, _, request_id in pending:
        # Active is recorded (with `granted`) just after the provider call: wait for both.
        wait_until(
            lambda r=request_id: _status(stack, r) == RequestStatus.ACTIVE, 60, "every grant"
        )
        assert person.email in group_members(stack, GROUP_NAME)
        trail = [(e.event, e.actor) for e in _trail(stack, request_id)]
        assert trail.count(("decision_deferred", APPROVER)) == 2, trail
        assert trail.count(("approved", APPROVER)) == 1, trail
        assert trail.count(("granted", "latchkey")) == 1, trail


# The database refuses to keep approvers' clicks: an injected fault, the same on both
# backends (a trigger that fails every `decision_deferred` insert, as a full disk would).
REFUSE_CLICKS = {
    "sqlite": [
        "CREATE TRIGGER refuse_clicks BEFORE INSERT ON audit_event "
        "WHEN NEW.event = 'decision_deferred' "
        "BEGIN SELECT RAISE(ABORT, 'no space left on device (injected)'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_clicks() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'no space left on device (injected)'; END $$",
        "CREATE TRIGGER refuse_clicks BEFORE INSERT ON audit_event FOR EACH ROW "
        "WHEN (NEW.event = 'decision_deferred') EXECUTE FUNCTION refuse_clicks()",
    ],
}
ALLOW_CLICKS = {
    "sqlite": ["DROP TRIGGER refuse_clicks"],
    "postgresql": ["DROP TRIGGER refuse_clicks ON audit_event", "DROP FUNCTION refuse_clicks"],
}


def _run_sql(stack: LocalStack, statements: list[str]) -> None:
    with stack.database().session() as session:
        for statement in statements:
            session.execute(text(statement))


def test_a_click_the_database_cannot_keep_is_told_so_and_grants_nothing(
    stack: LocalStack,
) -> None:
    person, card, request_id = _pending(stack)
    backend = stack.database().engine.dialect.name
    _run_sql(stack, REFUSE_CLICKS[backend])
    mark = stack.slack.mark()
    try:
        assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
        told = said_to(stack, APPROVER, "Something went wrong on our side", timeout=30, since=mark)
        assert "Try again" in told.args["text"]
    finally:
        _run_sql(stack, ALLOW_CLICKS[backend])
    assert not [e for e in _trail(stack, request_id) if e.event == "decision_deferred"]
    assert _status(stack, request_id) == RequestStatus.PENDING
    assert person.email not in group_members(stack, GROUP_NAME)

    # Told to try again, the approver does, and that click is kept and decided.
    assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
    wait_until(lambda: _status(stack, request_id) == RequestStatus.ACTIVE, 60, "the grant")
    assert person.email in group_members(stack, GROUP_NAME)


@contextmanager
def _writes_held(stack: LocalStack) -> Iterator[None]:
    """Nobody else writes an audit event while this is open: a database stalled (a long
    migration, a slow disk) at the moment a click is being kept."""
    engine = stack.database().engine
    if engine.dialect.name == "sqlite":
        held = sqlite3.connect(str(engine.url.database), isolation_level=None)
        held.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            held.execute("ROLLBACK")
            held.close()
        return
    with engine.connect() as connection, connection.begin():
        connection.execute(text("LOCK TABLE audit_event IN SHARE ROW EXCLUSIVE MODE"))
        yield


def test_a_web_stopped_right_after_a_click_keeps_the_click_before_it_exits(
    stack: LocalStack,
) -> None:
    # A deploy stops the web process the moment after it acked a click, while the click
    # is still being kept (the database is slow). The process finishes keeping it and
    # rings the worker before it exits: the approval is not lost, and it is not left to
    # the sweep minutes later either.
    person, card, request_id = _pending(stack)
    with _writes_held(stack):
        assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
        stopping = threading.Thread(target=stack.stop_process, args=("web",))
        stopping.start()
        time.sleep(2)  # the stop is under way while the click still waits for the DB
    stopping.join()
    stack.start_process("web")
    wait_until(lambda: _status(stack, request_id) == RequestStatus.ACTIVE, 60, "the grant")
    assert person.email in group_members(stack, GROUP_NAME)
    trail = [(e.event, e.actor) for e in _trail(stack, request_id)]
    assert trail.count(("decision_deferred", APPROVER)) == 1, trail
    assert trail.count(("approved", APPROVER)) == 1, trail


def test_a_grant_the_provider_refuses_for_now_is_retried_under_the_deciders_claim(
    stack: LocalStack,
) -> None:
    # The worker grants in the task that decided the click. AWS answers 503 to that first
    # attempt: the grant task takes over with the same claim and grants once AWS is back,
    # long before the claim's lease (120 s) would have let anyone else try.
    person, card, request_id = _pending(stack)
    refused = stack.aws_faults.refused("AddUserToGroup")
    mark = stack.log_mark()
    stack.aws_faults.refuse("AddUserToGroup", code="ServiceUnavailable", status=503)
    try:
        assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
        wait_until(
            lambda: stack.aws_faults.refused("AddUserToGroup") > refused, 30, "the refused call"
        )
        wait_until(
            lambda: "handed to the grant task" in stack.log("worker", mark), 30, "the hand-over"
        )
        assert person.email not in group_members(stack, GROUP_NAME)
    finally:
        stack.aws_faults.heal("AddUserToGroup")
    wait_until(lambda: _status(stack, request_id) == RequestStatus.ACTIVE, 40, "the grant")
    assert person.email in group_members(stack, GROUP_NAME)
    trail = [e.event for e in _trail(stack, request_id)]
    assert trail.count("approved") == 1 and trail.count("granted") == 1, trail
    assert "grant_failed" not in trail, trail
