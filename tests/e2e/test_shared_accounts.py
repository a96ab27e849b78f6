"""Shared accounts checked out to one holder at a time, through the real processes (issue
18.3): the second requester waits, told who has it and until when, and gets it when the
first gives it back; a target that does not queue refuses; leaving the queue works.

The machine's PostgreSQL trusts local connections, so whether a rotated password opens the
account is shown against a private server in tests/providers/test_postgres_account.py;
here the account's comment (its holder and nonce) and the modal say who holds it.
"""

from __future__ import annotations

import json
import uuid

import psycopg
import redis
from sqlalchemy import select

from app.models import AccessRequest, AccountCheckout, AuditEvent, RequestStatus
from app.providers.databases.credentials import CHECKED_IN, parse_checkout
from app.providers.databases.pg_admin import comment
from app.slack import ids
from app.testing.scenes import (
    Person,
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
from tests.e2e.test_ephemeral_logins import _shown
from tests.factories import APPROVER

HOUR = 3600


def _approved(stack: LocalStack, person: Person, target: str, seconds: int) -> uuid.UUID:
    response = submit_request(
        stack, person, flow="checkout-dba", target=target, seconds=seconds, reason="db incident"
    )
    assert response.status == 200, response.body
    card = approval_card_for(stack, person)
    assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
    return uuid.UUID(request_id_on(card))


def _status(stack: LocalStack, request_id: uuid.UUID) -> RequestStatus:
    with stack.database().session() as session:
        request = session.get(AccessRequest, request_id)
        assert request is not None
        return request.status


def test_the_second_requester_waits_told_who_has_it_and_gets_it_when_it_is_back(
    stack: LocalStack, db_role_server: psycopg.Connection
) -> None:
    account = stack.shared_accounts[0]  # type: ignore[attr-defined]
    ann, bob, eve = (new_person(stack, iam_user=False) for _ in range(3))

    first = _approved(stack, ann, "dba", HOUR)
    dm_to(stack, ann, "You now have", timeout=30)
    mark = stack.slack.mark()
    assert click_in_dm(stack, ann, ids.SHOW_CREDENTIALS_ACTION, first).status == 200
    anns = _shown(stack, mark)
    assert anns["login"] == account
    held = parse_checkout(comment(db_role_server, account))
    assert held is not None and held[1] == ann.email

    # Bob is approved while Ann has it: he waits, and hears who has it and until when.
    second = _approved(stack, bob, "dba", 8)
    queued = dm_to(stack, bob, "waits its turn", timeout=30)
    assert f"checked out to <@{ann.user_id}> until" in queued.args["text"]
    assert "Leave the queue" in json.dumps(queued.args["blocks"])
    assert _status(stack, second) == RequestStatus.APPROVED
    # His App Home says so too, with the same way out.
    wait_until(
        lambda: any(
            c.args.get("user_id") == bob.user_id
            and "waiting its turn" in json.dumps(c.args.get("view"))
            and "Leave the queue" in json.dumps(c.args.get("view"))
            for c in stack.slack.calls("views.publish")
        ),
        15,
        "Bob's Home to show him in the queue",
    )
    # Eve too, behind Bob, then she leaves the queue: nothing is granted to her.
    third = _approved(stack, eve, "dba", 8)
    told = dm_to(stack, eve, "waits its turn", timeout=30)
    assert "1 request before yours" in told.args["text"]
    assert click_in_dm(stack, eve, ids.CANCEL_ACTION, third).status == 200
    wait_until(lambda: _status(stack, third) == RequestStatus.CANCELLED, 15, "Eve out of the queue")

    # Ann gives it back: rotated, and Bob has it at once with a password of his own.
    assert click_in_dm(stack, ann, ids.RELEASE_ACTION, first).status == 200
    dm_to(stack, bob, "You now have", timeout=30)
    held = parse_checkout(comment(db_role_server, account))
    assert held is not None and held[1] == bob.email
    mark = stack.slack.mark()
    assert click_in_dm(stack, bob, ids.SHOW_CREDENTIALS_ACTION, second).status == 200
    bobs = _shown(stack, mark)
    assert bobs["password"] != anns["password"]
    mark = stack.slack.mark()
    assert click_in_dm(stack, ann, ids.SHOW_CREDENTIALS_ACTION, first).status == 200
    said_to(stack, ann.user_id, "This access has ended", since=mark)

    # Bob's time runs out: checked in, nobody holds it, Eve (who left) never had it.
    dm_to(stack, bob, "expired", timeout=30)
    wait_until(lambda: comment(db_role_server, account) == CHECKED_IN, 15, "the check-in")
    with stack.database().session() as session:
        assert session.get(AccountCheckout, f"postgres-account/{account}") is None
        events = session.execute(
            select(AuditEvent.event, AuditEvent.request_id, AuditEvent.details).where(
                AuditEvent.request_id.in_([first, second, third])  # type: ignore[union-attr]
            )
        ).all()
    waits = [(r, d) for e, r, d in events if e == "checkout_queued"]
    assert {r for r, _ in waits} == {second, third}
    assert all(d["holder"] == ann.user_id for _, d in waits)
    assert not [r for e, r, _ in events if e == "granted" and r == third]
    ends = [d for e, r, d in events if e in ("revoked", "expired") and r in (first, second)]
    assert len(ends) == 2 and all(d.get("rotated") is True for d in ends)
    # The passwords: in the modals only. Not in a log line, an audit row or a task message.
    logs = stack.all_logs()
    broker = redis.Redis.from_url(stack.redis_url)
    messages = [
        item
        for key in broker.keys("*")
        if broker.type(key) == b"list"
        for item in broker.lrange(key, 0, -1)
    ]
    for secret in (anns["password"], bobs["password"]):
        assert secret not in logs
        assert all(secret not in json.dumps(d) for _, _, d in events)
        assert all(secret.encode() not in item for item in messages)


def test_a_target_that_does_not_queue_refuses_while_it_is_out(
    stack: LocalStack, db_role_server: psycopg.Connection
) -> None:
    ann, bob = new_person(stack, iam_user=False), new_person(stack, iam_user=False)
    first = _approved(stack, ann, "dba-now", 8)
    dm_to(stack, ann, "You now have", timeout=30)
    _approved(stack, bob, "dba-now", 8)
    refused = dm_to(stack, bob, "Granting", timeout=30)
    text = refused.args["text"]
    assert "is checked out to" in text and "does not queue" in text
    # Ann's check-out is untouched by Bob's refusal.
    assert _status(stack, first) == RequestStatus.ACTIVE
    held = parse_checkout(comment(db_role_server, stack.shared_accounts[1]))  # type: ignore[attr-defined]
    assert held is not None and held[1] == ann.email


def test_a_custom_provider_lends_an_admin_panel_login_one_holder_at_a_time(
    stack: LocalStack,
) -> None:
    """The shipped example (flows/examples/provider_panel_account.py): a console's one admin
    login. The holder logs in with what Show credentials shows; the next one waits; at the
    holder's check-in their password and their session stop working."""
    panel = stack.panel  # type: ignore[attr-defined]
    ann, bob = new_person(stack, iam_user=False), new_person(stack, iam_user=False)

    def approved(person: Person) -> uuid.UUID:
        response = submit_request(
            stack, person, flow="console-admin", target="console-admin", seconds=HOUR,
            reason="customer escalation",
        )  # fmt: skip
        assert response.status == 200, response.body
        card = approval_card_for(stack, person)
        assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
        return uuid.UUID(request_id_on(card))

    first = approved(ann)
    granted = dm_to(stack, ann, "You now have", timeout=30)
    assert "Show credentials" in json.dumps(granted.args["blocks"])
    mark = stack.slack.mark()
    assert click_in_dm(stack, ann, ids.SHOW_CREDENTIALS_ACTION, first).status == 200
    anns = _shown(stack, mark)
    assert anns["login"] == "admin" and anns["connection"] == f"{panel.url}/login"
    session = panel.log_in("admin", anns["password"])
    assert session is not None and panel.session_works(session)

    second = approved(bob)
    told = dm_to(stack, bob, "waits its turn", timeout=30)
    assert f"*console-admin* is checked out to <@{ann.user_id}>" in told.args["text"]

    assert click_in_dm(stack, ann, ids.RELEASE_ACTION, first).status == 200
    dm_to(stack, bob, "You now have", timeout=30)
    assert not panel.session_works(session)
    assert panel.log_in("admin", anns["password"]) is None
    mark = stack.slack.mark()
    assert click_in_dm(stack, bob, ids.SHOW_CREDENTIALS_ACTION, second).status == 200
    bobs = _shown(stack, mark)
    assert panel.log_in("admin", bobs["password"]) is not None
    assert click_in_dm(stack, bob, ids.RELEASE_ACTION, second).status == 200
    wait_until(lambda: panel.note("admin") == CHECKED_IN, 20, "the check-in")
    assert panel.log_in("admin", bobs["password"]) is None
    assert bobs["password"] not in stack.all_logs()
