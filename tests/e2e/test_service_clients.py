"""Service clients through the real processes (issue 18.4): an admin makes a client with
the CLI, a pipeline asks over the web's API, people approve in Slack, the pipeline polls
for its access; tokens scoped to another flow, revoked or missing are refused, and
credentials are shown to the holder only, only while live."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import psycopg
import pytest
import requests
from sqlalchemy import select

from app.audit import AuditLog
from app.models import AccessRequest, AuditEvent, RequestStatus
from app.slack import ids
from app.testing.scenes import card_update, click, connect, group_members
from app.testing.slack_driver import plain_text_value
from app.testing.slack_standin import RecordedCall
from app.testing.stack import AUDIT_KEY, LocalStack, wait_until
from tests.e2e.conftest import DB_CLIENT
from tests.factories import APPROVER, CHANNEL, GROUP_NAME, SECOND_APPROVER

ADMIN = "U0ADMIN"
LATCHKEY = [sys.executable, "-m", "app.cli"]


def latchkey(
    stack: LocalStack, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`latchkey …` as an admin or a pipeline runs it, against the stack's settings."""
    return subprocess.run(
        [*LATCHKEY, *args],
        env={**stack.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def new_client(stack: LocalStack, name: str, flows: str, principal: str) -> str:
    """Make a client with the CLI; its token (printed once, alone on stdout)."""
    done = latchkey(
        stack, "clients", "create", name, "--flows", flows, "--principal", principal, "--by", ADMIN
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("lkc_") and "\n" not in token
    return token


def api(
    stack: LocalStack,
    method: str,
    path: str,
    token: str | None = None,
    body: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.request(
        method, f"http://127.0.0.1:{stack.port}{path}", json=body, headers=headers, timeout=30
    )
    assert response.headers["Content-Type"] == "application/json"
    return response.status_code, response.json()


def card_of(stack: LocalStack, name: str, since: int = 0) -> RecordedCall:
    """The approval card posted for this client's latest request."""
    return stack.slack.wait_for(
        "chat.postMessage",
        lambda a: a.get("channel") == CHANNEL and f"service client *{name}*" in a.get("text", ""),
        timeout=20,
        since=since,
    )


def status_of(stack: LocalStack, token: str, request_id: str) -> dict[str, Any]:
    code, body = api(stack, "GET", f"/api/requests/{request_id}", token)
    assert code == 200, body
    return body


def events_of(stack: LocalStack, **where: Any) -> list[AuditEvent]:
    with stack.database().session() as session:
        query = select(AuditEvent).order_by(AuditEvent.seq)  # type: ignore[arg-type]
        for column, value in where.items():
            query = query.where(getattr(AuditEvent, column) == value)
        return list(session.execute(query).scalars())


def ask(flow: str = "migrations", **fields: Any) -> dict[str, Any]:
    return {
        "flow": flow,
        "target": "admins",
        "duration": "4s",
        "reason": "deploy 1234: schema migration",
        **fields,
    }


def test_a_pipeline_is_approved_in_slack_and_polls_for_its_access(stack: LocalStack) -> None:
    connect(stack)
    principal = f"ci-deploy-{uuid.uuid4().hex[:6]}@example.com"
    stack.iam().create_user(UserName=principal)
    token = new_client(stack, "ci-deploy", "migrations", principal)
    other = new_client(stack, "ci-reader", "test-admin", "ci-reader@example.com")
    mark = stack.slack.mark()

    code, made = api(stack, "POST", "/api/requests", token, ask())
    assert code == 202, made
    assert made["status"] == "pending" and made["url"] == f"/api/requests/{made['id']}"
    request_id = made["id"]

    # Approval stays in Slack: the card says a service client asks, and names it.
    card = card_of(stack, "ci-deploy", since=mark)
    shown = json.dumps(card.args["blocks"])
    assert "Service client *ci-deploy*" in shown and principal in shown
    assert status_of(stack, token, request_id)["status"] == "pending"
    # Another client cannot read it: it does not exist for them.
    assert api(stack, "GET", f"/api/requests/{request_id}", other)[0] == 404

    assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
    live = wait_until(
        lambda: (b := status_of(stack, token, request_id))["status"] == "active" and b,
        20,
        "the request to be active",
    )
    assert live["principal"] == principal and live["expires_at"] and "credentials" not in live
    assert principal in group_members(stack, GROUP_NAME)
    card_update(stack, card, "Access granted")

    ended = wait_until(
        lambda: (b := status_of(stack, token, request_id))["status"] == "expired" and b,
        30,
        "the access to expire",
    )
    assert ended["final"] is True and ended["ended_at"] and ended["end_cause"] == "expired"
    assert principal not in group_members(stack, GROUP_NAME)

    # Nothing of Slack treated the client as a person: no mention, no DM, no App Home.
    for call in stack.slack.calls(since=mark):
        text = json.dumps(call.args)
        assert "<@svc:" not in text and '"svc:' not in text, call

    events = events_of(stack, request_id=uuid.UUID(request_id))
    # The other client's look is on this request's trail too: who tried to read it.
    assert [(e.event, e.actor) for e in events][:3] == [
        ("requested", "svc:ci-deploy"),
        ("api_refused", "svc:ci-reader"),
        ("decision_deferred", APPROVER),
    ]
    assert {"granted", "expired"} <= {e.event for e in events}
    created = events_of(stack, event="service_client_created", subject="svc:ci-deploy")
    assert [(e.actor, e.details["flows"]) for e in created] == [(f"cli:{ADMIN}", ["migrations"])]
    refused = events_of(stack, event="api_refused", subject="svc:ci-reader")
    assert [e.details["reason"] for e in refused] == ["not its request"]
    with stack.database().session() as session:
        assert AuditLog(AUDIT_KEY.encode()).verify(session).ok
    # The token: printed once by the CLI, then nowhere.
    assert token not in stack.all_logs()
    assert all(token not in json.dumps(e.details) for e in events_of(stack))


def test_no_token_an_unknown_one_a_revoked_one_or_another_flow_is_refused(
    stack: LocalStack,
) -> None:
    token = new_client(stack, "ci-revoked", "migrations", "ci-revoked@example.com")
    scoped = new_client(stack, "ci-other", "test-admin", "ci-other@example.com")

    code, body = api(stack, "POST", "/api/requests", None, ask())
    assert code == 401 and "no token" in body["error"]
    code, body = api(stack, "POST", "/api/requests", "lkc_" + "x" * 43, ask())
    assert code == 401 and "unknown token" in body["error"]
    # A token of another flow: refused before anything is stored, and audited.
    code, body = api(stack, "POST", "/api/requests", scoped, ask())
    assert code == 403 and "not scoped to the migrations flow" in body["error"], body
    # Input at fault is named, field by field.
    code, body = api(stack, "POST", "/api/requests", token, ask(duration="5 weeks", reason=""))
    assert code == 400 and set(body["fields"]) == {"duration"}, body
    code, body = api(stack, "POST", "/api/requests", token, ask(duration="7s", reason=" "))
    assert code == 400 and set(body["fields"]) == {"duration", "reason"}, body
    code, body = api(stack, "POST", "/api/requests", token, ask(target="nope"))
    assert code == 400 and set(body["fields"]) == {"target"}, body
    assert api(stack, "GET", "/api/requests", token)[0] == 405
    assert api(stack, "GET", f"/api/requests/{uuid.uuid4()}", token)[0] == 404

    code, made = api(stack, "POST", "/api/requests", token, ask(duration="1h"))
    assert code == 202, made
    revoked = latchkey(stack, "clients", "revoke", "ci-revoked", "--by", ADMIN)
    assert revoked.returncode == 0, revoked.stderr
    code, body = api(stack, "GET", f"/api/requests/{made['id']}", token)
    assert code == 401 and "revoked" in body["error"]
    code, body = api(stack, "POST", "/api/requests", token, ask())
    assert code == 401 and "revoked" in body["error"]
    listed = latchkey(stack, "clients", "list").stdout
    assert "ci-revoked: revoked" in listed and "ci-other: active" in listed

    # Its pending request can no longer be approved: eligibility is asked at the click.
    card = card_of(stack, "ci-revoked")
    click(stack, APPROVER, ids.APPROVE_ACTION, card)
    wait_until(
        lambda: any(
            "was revoked" in str(e.details)
            for e in events_of(stack, request_id=uuid.UUID(made["id"]))
            if e.event == "approve_refused"
        ),
        20,
        "the approval refused",
    )
    reasons = {e.details["reason"] for e in events_of(stack, event="api_refused")}
    assert {"flow not in the token's scope", "token revoked"} <= reasons
    assert all(e.actor.startswith("svc:") for e in events_of(stack, event="api_refused"))


def test_a_revoked_clients_live_grant_ends_at_reconciliation(stack: LocalStack) -> None:
    connect(stack)
    principal = f"ci-gone-{uuid.uuid4().hex[:6]}@example.com"
    stack.iam().create_user(UserName=principal)
    token = new_client(stack, "ci-gone", "migrations", principal)
    code, made = api(stack, "POST", "/api/requests", token, ask(duration="1h"))
    assert code == 202, made
    click(stack, SECOND_APPROVER, ids.APPROVE_ACTION, card_of(stack, "ci-gone"))
    wait_until(lambda: status_of(stack, token, made["id"])["status"] == "active", 20, "active")

    assert latchkey(stack, "clients", "revoke", "ci-gone", "--by", ADMIN).returncode == 0

    def ended() -> bool:
        with stack.database().session() as session:
            request = session.get(AccessRequest, uuid.UUID(made["id"]))
            return request is not None and request.status == RequestStatus.REVOKED

    stack.reconcile_until(ended, 60, "the revoked client's grant to end")
    assert principal not in group_members(stack, GROUP_NAME)


def test_latchkey_request_waits_for_the_decision_in_slack(stack: LocalStack) -> None:
    connect(stack)
    principal = f"ci-waiter-{uuid.uuid4().hex[:6]}@example.com"
    stack.iam().create_user(UserName=principal)
    token = new_client(stack, "ci-waiter", "migrations", principal)
    url = f"http://127.0.0.1:{stack.port}"
    asked = ["--flow", "migrations", "--target", "admins", "--duration", "4s"]

    def waiting() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*LATCHKEY, "request", "--url", url, *asked, "--reason", "deploy", "--timeout", "90"],
            env={**stack.env, "LATCHKEY_CLIENT_TOKEN": token},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    mark = stack.slack.mark()
    approved = waiting()
    try:
        click(stack, APPROVER, ids.APPROVE_ACTION, card_of(stack, "ci-waiter", since=mark))
        out, err = approved.communicate(timeout=90)
    finally:
        approved.kill()
    assert approved.returncode == 0, err
    assert "waiting for approval in Slack" in err
    body = json.loads(out)
    assert body["status"] == "active" and body["principal"] == principal and body["expires_at"]

    mark = stack.slack.mark()
    denied = waiting()
    try:
        click(stack, SECOND_APPROVER, ids.DENY_ACTION, card_of(stack, "ci-waiter", since=mark))
        modal = stack.slack.wait_for(
            "views.open",
            lambda a: a.get("view", {}).get("callback_id") == ids.DENY_VIEW,
            since=mark,
        )
        values = {ids.DENY_REASON_BLOCK: {ids.DENY_REASON_ACTION: plain_text_value("not now")}}
        stack.driver.view_submission(SECOND_APPROVER, modal.response["view"], values)
        out, err = denied.communicate(timeout=90)
    finally:
        denied.kill()
    assert denied.returncode == 4, err
    assert "denied" in err and not out


def test_credentials_go_to_the_holding_client_only_while_live(
    stack: LocalStack, db_role_server: psycopg.Connection
) -> None:
    connect(stack)
    principal = f"ci-db-{uuid.uuid4().hex[:6]}@example.com"
    token = new_client(stack, DB_CLIENT, "ephemeral-db", principal)
    mark = stack.slack.mark()
    code, made = api(
        stack,
        "POST",
        "/api/requests",
        token,
        {"flow": "ephemeral-db", "target": "warehouse", "duration": "8s", "reason": "backfill"},
    )
    assert code == 202, made
    click(stack, APPROVER, ids.APPROVE_ACTION, card_of(stack, DB_CLIENT, since=mark))
    live = wait_until(
        lambda: (b := status_of(stack, token, made["id"]))["status"] == "active" and b,
        30,
        "the login to be made",
    )
    creds = live["credentials"]
    with psycopg.connect(creds["connection"], connect_timeout=5) as held:
        row = held.execute("SELECT current_user").fetchone()
        assert row is not None and row[0] == creds["login"]

    wait_until(lambda: status_of(stack, token, made["id"])["final"], 30, "the access to end")
    after = status_of(stack, token, made["id"])
    assert "credentials" not in after and "credentials_problem" not in after

    viewed = [
        (e.actor, e.details)
        for e in events_of(stack, request_id=uuid.UUID(made["id"]))
        if e.event == "credentials_viewed"
    ]
    assert viewed and all(v == (f"svc:{DB_CLIENT}", {"login": creds["login"]}) for v in viewed)
    assert creds["password"] not in stack.all_logs()
    assert all(creds["password"] not in json.dumps(e.details) for e in events_of(stack))


@pytest.mark.parametrize("flows", ["nope", "migrations,nope"])
def test_the_cli_refuses_a_client_of_an_unknown_flow(stack: LocalStack, flows: str) -> None:
    done = latchkey(
        stack, "clients", "create", "ci-typo", "--flows", flows, "--principal", "x", "--by", ADMIN
    )
    assert done.returncode == 2 and "no flow named 'nope'" in done.stderr and not done.stdout


def test_a_post_sent_again_with_its_idempotency_key_makes_one_request(stack: LocalStack) -> None:
    """A pipeline that did not hear the answer sends the same POST again: one request, one
    card; the same key for another request is a pipeline bug, refused; a bad key named."""
    token = new_client(stack, "ci-retry", "migrations", "ci-retry@example.com")
    mark = stack.slack.mark()

    def post(key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        response = requests.post(
            f"http://127.0.0.1:{stack.port}/api/requests",
            json=body,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
            timeout=30,
        )
        return response.status_code, response.json()

    key = uuid.uuid4().hex
    first_code, first = post(key, ask())
    again_code, again = post(key, ask())
    assert (first_code, again_code) == (202, 200)
    assert again["id"] == first["id"] and again["replayed"] is True
    other_code, other = post(key, ask(reason="deploy 5678: another migration"))
    assert other_code == 422 and first["id"] in other["error"]
    bad_code, bad = post("has spaces in it", ask())
    assert bad_code == 400 and "Idempotency-Key" in bad["error"]
    # A new key is a new request.
    assert post(uuid.uuid4().hex, ask())[0] == 202

    card_of(stack, "ci-retry", since=mark)
    wait_until(
        lambda: len(events_of(stack, event="requested", subject="svc:ci-retry")) == 2,
        10,
        "the two requests",
    )
    stored = [e.request_id for e in events_of(stack, event="requested", subject="svc:ci-retry")]
    assert uuid.UUID(first["id"]) in stored and len(set(stored)) == 2
    cards = [
        c
        for c in stack.slack.calls("chat.postMessage", since=mark)
        if "service client *ci-retry*" in c.args.get("text", "")
    ]
    assert len(cards) <= 2  # one per request, never one per POST
