"""Ephemeral PostgreSQL and MariaDB logins through the real processes (issue 18): made at
approval, shown only to its holder in a modal, dropped at the end; the password in no log
line, audit row or task message of the stack."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pymysql
import pytest
import redis
from sqlalchemy import select

from app.db import utcnow
from app.flows.db_targets import MariaDBLoginTarget, PostgresLoginTarget
from app.models import AuditEvent
from app.providers.base import GrantSpec
from app.providers.databases.credentials import login_name
from app.providers.databases.mariadb import MariaDBLoginProvider
from app.providers.databases.postgres import PostgresLoginProvider
from app.slack import ids
from app.testing.mariadb_server import MariaDBCorner
from app.testing.scenes import (
    approval_card_for,
    click,
    click_in_dm,
    dm_to,
    new_person,
    request_id_on,
    said_to,
    submit_request,
)
from app.testing.stack import LocalStack, wait_until
from tests.conftest import POSTGRES_URL
from tests.e2e.conftest import DB_ROLE
from tests.factories import APPROVER, OUTSIDER


def _key(stack: LocalStack) -> bytes:
    return stack.extra_env["LATCHKEY_CREDENTIALS_KEY"].encode()


def _login_of(stack: LocalStack, conn: psycopg.Connection, email: str) -> tuple[str, bool] | None:
    """(login, can log in) of the Latchkey login made for this person. Its name is derived
    from the stack's key, the target and the person: the test workers count people alike,
    so another stack's person17@example.com has a login of their own."""
    database = conn.info.dbname
    name = login_name(_key(stack), f"postgres/{database}/{DB_ROLE}", email)
    row = conn.execute(
        "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = %s", (name,)
    ).fetchone()
    return (row[0], row[1]) if row else None


def _shown(stack: LocalStack, since: int) -> dict[str, str]:
    """The login, password and connection string of the credentials modal opened since."""
    wait_until(
        lambda: [
            c for c in stack.slack.calls("views.open", since=since) if "Credentials" in str(c.args)
        ],
        10,
        "the credentials modal",
    )
    call = next(
        c for c in stack.slack.calls("views.open", since=since) if "Credentials" in str(c.args)
    )
    fields = call.args["view"]["blocks"][1]["fields"]
    login = fields[0]["text"].split("`")[1]
    password = fields[1]["text"].split("`")[1]
    connection = call.args["view"]["blocks"][2]["text"]["text"].split("```")[1]
    return {"login": login, "password": password, "connection": connection}


def test_an_ephemeral_login_is_shown_only_to_its_holder_while_live_and_dropped_at_the_end(
    stack: LocalStack, db_role_server: psycopg.Connection
) -> None:
    person = new_person(stack, iam_user=False)
    response = submit_request(
        stack, person, flow="ephemeral-db", target="warehouse", seconds=8, reason="vendor audit"
    )
    assert response.status == 200, response.body
    card = approval_card_for(stack, person)
    request_id = uuid.UUID(request_id_on(card))
    assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
    granted = dm_to(stack, person, "You now have", timeout=30)
    assert "Show credentials" in json.dumps(granted.args.get("blocks"))
    made = _login_of(stack, db_role_server, person.email)
    assert made is not None and made[1] is True

    mark = stack.slack.mark()
    assert click_in_dm(stack, person, ids.SHOW_CREDENTIALS_ACTION, request_id).status == 200
    shown = _shown(stack, mark)
    assert shown["login"] == made[0]
    with psycopg.connect(shown["connection"], connect_timeout=5) as held:
        row = held.execute("SELECT current_user").fetchone()
        assert row is not None and row[0] == made[0]

    # Someone else pressing the holder's button sees nothing but a refusal.
    mark = stack.slack.mark()
    forged = stack.driver.block_action(
        OUTSIDER,
        ids.SHOW_CREDENTIALS_ACTION,
        str(request_id),
        channel_id=f"D0{person.user_id[1:]}",
        message_ts="1.000001",
    )
    assert forged.status == 200
    said_to(stack, OUTSIDER, "Only the person who holds this access", since=mark)
    assert not [
        c
        for c in stack.slack.calls("views.open", since=mark)
        if "Credentials" in json.dumps(c.args)
    ]

    dm_to(stack, person, "expired", timeout=30)
    wait_until(
        lambda: _login_of(stack, db_role_server, person.email) is None,
        15,
        "the login to be dropped",
    )
    mark = stack.slack.mark()
    assert click_in_dm(stack, person, ids.SHOW_CREDENTIALS_ACTION, request_id).status == 200
    said_to(stack, person.user_id, "This access has ended", since=mark)

    with stack.database().session() as session:
        events = session.execute(
            select(AuditEvent.event, AuditEvent.actor, AuditEvent.details).where(
                AuditEvent.request_id == request_id  # type: ignore[arg-type]
            )
        ).all()
    names = [e for e, _, _ in events]
    viewed = [(a, d) for e, a, d in events if e == "credentials_viewed"]
    assert viewed == [(person.user_id, {"login": made[0]})]
    assert names.count("show_credentials_refused") == 2
    revoked = next(d for e, _, d in events if e in ("revoked", "expired") and "login" in d)
    assert revoked["login"] == made[0] and revoked.get("dropped") is True

    # The password: in the modal only. Not in any process's log, any audit row, any
    # message on the broker.
    secret = shown["password"]
    assert secret not in stack.all_logs()
    assert all(secret not in json.dumps(d) for _, _, d in events)
    broker = redis.Redis.from_url(stack.redis_url)
    for key in broker.keys("*"):
        if broker.type(key) == b"list":
            assert all(secret.encode() not in item for item in broker.lrange(key, 0, -1))


def test_a_latchkey_login_that_no_grant_holds_is_dropped_by_reconciliation(
    stack: LocalStack, db_role_server: psycopg.Connection
) -> None:
    """A revoke lost for good (the database was restored from a backup taken during a
    grant, say): the login is Latchkey's, no grant holds it, reconciliation drops it."""
    person = new_person(stack, iam_user=False)
    database = db_role_server.info.dbname
    target = PostgresLoginTarget(name="warehouse", database=database, roles=(DB_ROLE,))
    left = PostgresLoginProvider(POSTGRES_URL or "", _key(stack))
    spec = GrantSpec(person.email, target, utcnow() + timedelta(hours=1))
    login = left.grant(spec)["login"]
    assert _login_of(stack, db_role_server, person.email) == (login, True)

    stack.reconcile_until(
        lambda: _login_of(stack, db_role_server, person.email) is None,
        60,
        "the orphaned login to be dropped",
    )
    assert [d["result"]["login"] for d in _repaired(stack, person.email)] == [login]


def _mariadb_login_of(stack: LocalStack, email: str) -> tuple[str, bool] | None:
    """(login, locked) of the Latchkey MariaDB login made for this person, as root sees it."""
    corner: MariaDBCorner = stack.mariadb  # type: ignore[attr-defined]
    name = login_name(_key(stack), f"mariadb/{corner.data}/{corner.role}", email)
    with corner.root() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT User, IFNULL(JSON_VALUE(Priv, '$.account_locked'), 0) IN ('1', 'true')"
            " FROM mysql.global_priv WHERE User = %s",
            (name,),
        )
        row = cur.fetchone()
    return (row[0], bool(row[1])) if row else None


def test_an_ephemeral_mariadb_login_reads_while_live_and_is_dropped_at_the_end(
    stack: LocalStack,
) -> None:
    person = new_person(stack, iam_user=False)
    response = submit_request(
        stack, person, flow="ephemeral-mariadb", target="shop", seconds=8, reason="vendor audit"
    )
    assert response.status == 200, response.body
    card = approval_card_for(stack, person)
    request_id = uuid.UUID(request_id_on(card))
    assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
    granted = dm_to(stack, person, "You now have", timeout=30)
    assert "Show credentials" in json.dumps(granted.args.get("blocks"))
    made = _mariadb_login_of(stack, person.email)
    assert made is not None and made[1] is False

    mark = stack.slack.mark()
    assert click_in_dm(stack, person, ids.SHOW_CREDENTIALS_ACTION, request_id).status == 200
    shown = _shown(stack, mark)
    assert shown["login"] == made[0]
    # What the holder pastes opens the database with the role's privileges.
    url = urlsplit(shown["connection"])
    held = pymysql.connect(
        host=url.hostname,
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        database=url.path.strip("/"),
        connect_timeout=5,
    )
    with held.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders")
        assert cur.fetchone() == (2,)

    dm_to(stack, person, "expired", timeout=30)
    wait_until(
        lambda: _mariadb_login_of(stack, person.email) is None, 15, "the login to be dropped"
    )
    # The session held open through the end was killed with it.
    with pytest.raises(pymysql.MySQLError), held.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders")
    held.close()
    with stack.database().session() as session:
        events = session.execute(
            select(AuditEvent.event, AuditEvent.details).where(
                AuditEvent.request_id == request_id  # type: ignore[arg-type]
            )
        ).all()
    revoked = next(d for e, d in events if e in ("revoked", "expired") and "login" in d)
    assert revoked["login"] == made[0] and revoked["dropped"] is True
    assert revoked["sessions_terminated"] == 1
    secret = shown["password"]
    assert secret not in stack.all_logs()
    assert all(secret not in json.dumps(d) for _, d in events)


def test_a_mariadb_login_that_no_grant_holds_is_dropped_by_reconciliation(
    stack: LocalStack,
) -> None:
    person = new_person(stack, iam_user=False)
    corner: MariaDBCorner = stack.mariadb  # type: ignore[attr-defined]
    target = MariaDBLoginTarget(name="shop", database=corner.data, role=corner.role)
    left = MariaDBLoginProvider(corner.admin_url, _key(stack))
    login = left.grant(GrantSpec(person.email, target, utcnow() + timedelta(hours=1)))["login"]
    assert _mariadb_login_of(stack, person.email) == (login, False)

    stack.reconcile_until(
        lambda: _mariadb_login_of(stack, person.email) is None,
        60,
        "the orphaned login to be dropped",
    )
    assert [d["result"]["login"] for d in _repaired(stack, person.email)] == [login]


def _repaired(stack: LocalStack, email: str) -> list[dict[str, Any]]:
    """What reconciliation's drift repairs of this person's access say."""
    with stack.database().session() as session:
        return [
            e.details
            for e in session.execute(
                select(AuditEvent).where(AuditEvent.event == "drift_repaired")  # type: ignore[arg-type]
            ).scalars()
            if e.details.get("principal") == email
        ]
