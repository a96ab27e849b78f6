"""The promise under broker faults: Redis stopped or emptied, a slow provider racing a
failure, a forged task. The real web, worker and beat run on a Redis of their own, which the
tests take away; nobody restarts a process by hand."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import psycopg
import pytest
import redis
from celery import Celery
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.db import utcnow
from app.models import AccessRequest, AuditEvent, RequestStatus
from app.providers.databases.credentials import login_name, parse_comment
from app.providers.databases.pg_admin import comment
from app.queries import grant_of
from app.slack import ids
from app.testing.redis_server import RedisServer
from app.testing.scenes import (
    Person,
    approval_card_for,
    click,
    click_in_dm,
    dm_to,
    group_members,
    new_person,
    request_id_on,
    said_to,
    submit_request,
)
from app.testing.stack import LocalStack, wait_until
from tests.conftest import BACKENDS, POSTGRES_URL, migrated_database_for
from tests.e2e.conftest import CREDENTIALS_KEY, DB_ROLE, _people
from tests.factories import APPROVER, GROUP_NAME, write_flow

S = RequestStatus
SWEEP = 1.0
OUTAGE = 20.0
LEASE = 3.0


# Each fault scenario runs once (they take a minute each): the Redis outage on the
# production backend (PostgreSQL when configured, as in CI), the rest on SQLite.
PRODUCTION = BACKENDS[-1]


@pytest.fixture(scope="module")
def faulty(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalStack, RedisServer]]:
    workdir = tmp_path_factory.mktemp("faults")
    flows_dir = workdir / "flows"
    flows_dir.mkdir()
    write_flow(
        flows_dir,
        durations="timedelta(seconds=20), timedelta(seconds=40), timedelta(hours=1)",
    )
    if POSTGRES_URL:  # ephemeral logins, for a worker killed in the middle of making one
        write_flow(
            flows_dir,
            name="ephemeral-db",
            targets=(
                f'(PostgresLoginTarget(name="warehouse", '
                f'database="{make_url(POSTGRES_URL).database}", roles=("{DB_ROLE}",)),)'
            ),
        )
    broker = RedisServer(workdir / "redis").start()
    for database_url in migrated_database_for(request, request.param, workdir):
        local = LocalStack(
            workdir=workdir,
            flows_dir=flows_dir,
            redis_url=broker.url,
            # A slow provider's task and the one racing it run at once: two per pool.
            worker_concurrency=2,
            database_url=database_url,
            migrated=True,
            sweep_seconds=SWEEP,
            # A short lease, so a slow provider call outlives it within a test.
            extra_env={
                "LATCHKEY_GRANT_LEASE_SECONDS": str(LEASE),
                "LATCHKEY_POSTGRES_LOGIN_URL": POSTGRES_URL or "",
                "LATCHKEY_CREDENTIALS_KEY": f"{CREDENTIALS_KEY}-{uuid.uuid4().hex}",
            },
        )
        try:
            local.start()
            _people(local)
            yield local, broker
        except BaseException:
            print(local.all_logs())
            raise
        finally:
            local.stop(kill=True)
    broker.stop()


def _status(stack: LocalStack, request_id: uuid.UUID) -> RequestStatus:
    with stack.database().session() as session:
        return session.get(AccessRequest, request_id).status


def _events(stack: LocalStack, request_id: uuid.UUID) -> list[AuditEvent]:
    with stack.database().session() as session:
        return list(
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.request_id == request_id)
                .order_by(AuditEvent.seq)
            ).scalars()
        )


def _active(stack: LocalStack, person: Person, seconds: int, reason: str) -> uuid.UUID:
    submit_request(
        stack, person, flow="test-admin", target="admins", seconds=seconds, reason=reason
    )
    card = approval_card_for(stack, person)
    click(stack, APPROVER, ids.APPROVE_ACTION, card)
    dm_to(stack, person, "You now have")
    return uuid.UUID(request_id_on(card))


def _through_a_broker_fault(stack: LocalStack, fault: Callable[[str], None]) -> None:
    """Live grant, pending approval and a submission in flight across a broker fault."""
    holder, waiting, newcomer = (new_person(stack) for _ in range(3))
    held = _active(stack, holder, 20, "holding through the outage")
    with stack.database().session() as session:
        ends = grant_of(session, held).expires_at
    submit_request(stack, waiting, flow="test-admin", target="admins", seconds=40, reason="wait")
    pending_card = approval_card_for(stack, waiting)
    pending = uuid.UUID(request_id_on(pending_card))
    before = stack.pids()

    down_at = time.monotonic()
    fault("down")
    # While the broker is away: a submission and an approval are stored, and the people
    # who acted are told so in words, not "something went wrong".
    submitted = submit_request(
        stack, newcomer, flow="test-admin", target="admins", seconds=40, reason="during outage"
    )
    assert submitted.status == 200
    said_to(stack, newcomer.user_id, "Your request is recorded")
    mark = stack.slack.mark()
    click(stack, APPROVER, ids.APPROVE_ACTION, pending_card)
    said_to(stack, APPROVER, "Your approval is recorded", since=mark)
    # The click is kept, keyed, in the DB; the worker decides it once the broker is back.
    assert "decision_deferred" in [e.event for e in _events(stack, pending)]
    assert _status(stack, pending) == S.PENDING
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
    fault("up")
    back_at = utcnow()

    # The request stored during the outage reaches its channel from the DB alone: within one
    # sweep, plus the Slack calls, plus the messages pool working off what the outage held
    # up. (Locks a message held when Redis went away stay for up to 60 s; before message
    # tasks gave their process back while waiting, two of them stalled the pool for 40 s
    # here: tests/e2e/test_queues.py, the left-behind lock.)
    approval_card_for(stack, newcomer, timeout=SWEEP + 45)
    # The approval recorded during the outage is granted, and the requester told so.
    wait_until(lambda: _status(stack, pending) == S.ACTIVE, 45, "the approved request's grant")
    assert waiting.email in group_members(stack, GROUP_NAME)
    dm_to(stack, waiting, "You now have", timeout=60)
    # The live grant ends within its end + outage + sweep + 30 s.
    bound = max(ends, back_at) + timedelta(seconds=SWEEP + 30)
    wait_until(
        lambda: _status(stack, held) == S.EXPIRED,
        (bound - utcnow()).total_seconds(),
        "the held grant to end after the outage",
    )
    assert holder.email not in group_members(stack, GROUP_NAME)
    with stack.database().session() as session:
        assert grant_of(session, held).ended_at <= bound
    # Nobody restarted anything: the same processes are still running.
    assert stack.pids() == before
    assert "Unrecoverable error" not in stack.log("worker")


@pytest.mark.parametrize("faulty", [PRODUCTION], indirect=True)
def test_redis_stopped_for_20s_loses_nothing(faulty: tuple[LocalStack, RedisServer]) -> None:
    stack, broker = faulty
    _through_a_broker_fault(stack, lambda step: broker.stop() if step == "down" else broker.start())


@pytest.mark.parametrize("faulty", ["sqlite"], indirect=True)
def test_redis_restarted_empty_loses_nothing(faulty: tuple[LocalStack, RedisServer]) -> None:
    stack, broker = faulty

    # Down with whatever it held lost, then back empty after the outage.
    _through_a_broker_fault(
        stack, lambda step: broker.kill_and_forget() if step == "down" else broker.start()
    )


@pytest.mark.parametrize("faulty", ["sqlite"], indirect=True)
def test_a_slow_provider_racing_a_failure_leaves_no_access(
    faulty: tuple[LocalStack, RedisServer],
) -> None:
    """The first grant call outlives its lease; the second claimant is refused by AWS and
    fails the request; the first call's late success must then be taken back."""
    stack, _ = faulty
    person = new_person(stack)
    submit_request(stack, person, flow="test-admin", target="admins", seconds=40, reason="race")
    card = approval_card_for(stack, person)
    request_id = uuid.UUID(request_id_on(card))
    seen = stack.aws_faults.seen("AddUserToGroup")
    stack.aws_faults.delay("AddUserToGroup", LEASE + 4)
    try:
        click(stack, APPROVER, ids.APPROVE_ACTION, card)
        wait_until(
            lambda: stack.aws_faults.seen("AddUserToGroup") > seen, 15, "the first, slow call"
        )
        # Every later call is refused for good, as AWS would for a user deleted meanwhile.
        stack.aws_faults.refuse("AddUserToGroup", code="NoSuchEntity", status=404)
        wait_until(lambda: _status(stack, request_id) == S.FAILED, 30, "the second claimant")
        wait_until(
            lambda: "grant_taken_back" in [e.event for e in _events(stack, request_id)],
            30,
            "the first call to take its access back",
        )
    finally:
        stack.aws_faults.heal()
    assert person.email not in group_members(stack, GROUP_NAME)
    assert _status(stack, request_id) == S.FAILED
    claims = [e for e in _events(stack, request_id) if e.event == "granting"]
    assert len(claims) == 2, "the lapsed claim was taken over exactly once"
    assert claims[0].details["lease_owner"] != claims[1].details["lease_owner"]


@pytest.mark.parametrize("faulty", ["sqlite"], indirect=True)
def test_an_injected_revoke_task_names_no_actor_and_ends_nothing_early(
    faulty: tuple[LocalStack, RedisServer],
) -> None:
    stack, _ = faulty
    person = new_person(stack)
    request_id = _active(stack, person, 3600, "long job")
    forger = Celery("forger", broker=stack.redis_url)
    forger.send_task(
        "latchkey.revoke_access", args=[str(request_id), "revoked", "U0MALLORY", "because"]
    )
    wait_until(
        lambda: "ignored 3 extra arguments" in stack.log("worker"), 15, "the worker to take it"
    )
    time.sleep(SWEEP * 2)
    assert _status(stack, request_id) == S.ACTIVE
    assert person.email in group_members(stack, GROUP_NAME)
    with stack.database().session() as session:
        actors = set(session.execute(select(AuditEvent.actor)).scalars())
    assert "U0MALLORY" not in actors


@pytest.mark.parametrize("faulty", ["sqlite"], indirect=True)
def test_no_message_waits_in_the_broker_for_a_far_end(
    faulty: tuple[LocalStack, RedisServer],
) -> None:
    """An hour-long grant leaves no timed message in Redis: its revoke is the DB's; the
    sweep hands it over with a short countdown when it is near."""
    stack, broker = faulty
    person = new_person(stack)
    _active(stack, person, 3600, "an hour")
    time.sleep(SWEEP * 3)
    client = redis.Redis.from_url(broker.url)
    held = [json.loads(m)[0] for m in client.hvals("unacked")]
    queued = [json.loads(m) for m in client.lrange("celery", 0, -1)]
    etas = [
        datetime.fromisoformat(m["headers"]["eta"])
        for m in held + queued
        if m["headers"].get("eta")
    ]
    horizon = utcnow() + timedelta(seconds=SWEEP + 10)
    assert all(eta <= horizon for eta in etas), f"timed messages far ahead: {etas}"


@pytest.mark.parametrize("faulty", [PRODUCTION], indirect=True)
def test_a_worker_killed_between_making_a_login_and_recording_it_grants_it_once(
    faulty: tuple[LocalStack, RedisServer], db_role_server: psycopg.Connection
) -> None:
    """The login is made and committed in PostgreSQL, the worker dies before its grant is
    recorded: the next claim finds Latchkey's login for that person, keeps it (and its
    password) and records the grant. Nothing is made twice; nothing is left behind."""
    stack, _ = faulty
    if not stack.database_url.startswith("postgresql"):
        pytest.skip("holds a row lock of the stack's own PostgreSQL database")
    person = new_person(stack, iam_user=False)
    key = stack.extra_env["LATCHKEY_CREDENTIALS_KEY"].encode()
    database = make_url(POSTGRES_URL or "").database
    login = login_name(key, f"postgres/{database}/{DB_ROLE}", person.email)
    stack_db = make_url(stack.database_url).set(drivername="postgresql")
    with (
        psycopg.connect(POSTGRES_URL or "", autocommit=True) as gate,
        psycopg.connect(stack_db.render_as_string(hide_password=False)) as rows,
    ):
        # The provider waits at its advisory lock: the worker has claimed, not yet made it.
        gate.execute("SELECT pg_advisory_lock(hashtext(%s))", (login,))
        submit_request(
            stack, person, flow="ephemeral-db", target="warehouse", seconds=3600, reason="fault"
        )
        card = approval_card_for(stack, person)
        request_id = uuid.UUID(request_id_on(card))
        click(stack, APPROVER, ids.APPROVE_ACTION, card)
        wait_until(lambda: _status(stack, request_id) == S.GRANTING, 20, "the claim")
        # Its activation will wait for this row; the login is made and committed meanwhile.
        rows.execute("SELECT 1 FROM access_request WHERE id = %s FOR UPDATE", (request_id,))
        gate.execute("SELECT pg_advisory_unlock(hashtext(%s))", (login,))
        wait_until(lambda: comment(gate, login) is not None, 20, "the login to be made")
        made = parse_comment(comment(gate, login))
        stack.kill_process("worker")
        rows.rollback()
    assert made is not None and made[1] == person.email
    assert _status(stack, request_id) == S.GRANTING

    stack.start_process("worker")
    dm_to(stack, person, "You now have", timeout=60)
    with psycopg.connect(POSTGRES_URL or "", autocommit=True) as conn:
        assert parse_comment(comment(conn, login)) == made  # the same login, same nonce
        others = conn.execute(
            "SELECT count(*) FROM pg_roles WHERE shobj_description(oid, 'pg_authid') LIKE %s",
            (f"latchkey login % for {person.email}",),
        ).fetchone()
    assert others == (1,)
    events = _events(stack, request_id)
    granted = [e for e in events if e.event == "granted"]
    assert len(granted) == 1 and granted[0].details["created"] is False
    assert [e.event for e in events].count("granting") >= 2
    # Given back: dropped, so no login outlives the test.
    assert click_in_dm(stack, person, ids.RELEASE_ACTION, request_id).status == 200
    with psycopg.connect(POSTGRES_URL or "", autocommit=True) as conn:
        wait_until(lambda: comment(conn, login) is None, 30, "the login to be dropped")
