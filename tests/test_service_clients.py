"""Service clients (app.clients, app.api): tokens, the keyed record, scope, input, the
card, proof of a client's approval, and `latchkey request`'s waiting. The real stack's
story is tests/e2e/test_service_clients.py."""

from __future__ import annotations

import argparse
import itertools
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import update

from app import lifecycle, proof
from app.api.client import EXIT, Unreachable, run, wait_for_decision
from app.api.requests import ApiError, parse_duration, read_ask
from app.audit import AuditLog
from app.clients import mention, name_problem
from app.clients.store import ClientError, authenticate, create, find, revoke, scope_problem
from app.clients.tokens import bearer_token, new_token, token_hash
from app.db import Database
from app.flows.policy import RequestInput, allow
from app.logs import redact
from app.models import AccessRequest, Decision, RequestStatus, ServiceClient
from app.slack.blocks.cards import CardContext, approval_card, fallback_text
from tests.factories import APPROVER, make_flow

FLOW = make_flow(name="migrations", service_clients=("ci",))


def _make(database: Database, audit: AuditLog, name: str = "ci", flows: list[str] | None = None):  # type: ignore[no-untyped-def]
    with database.session() as session:
        return create(
            session,
            audit,
            name=name,
            flows=flows or ["migrations"],
            principal="ci@example.com",
            actor="cli:U0ADMIN",
        )


# -- tokens and names -------------------------------------------------------------------


def test_tokens_are_random_prefixed_and_kept_only_as_their_hash() -> None:
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50 and all(t.startswith("lkc_") and len(t) > 40 for t in tokens)
    token = tokens.pop()
    assert len(token_hash(token)) == 64 and token not in token_hash(token)
    # Logs redact one wherever it appears.
    assert token not in redact(f"header was Bearer {token}")


@pytest.mark.parametrize(
    ("header", "wanted"),
    [
        (None, "no token"),
        ("", "no token"),
        ("Basic dXNlcjpwYXNz", "not 'Bearer <token>'"),
        ("Bearer", "not 'Bearer <token>'"),
        ("Bearer xoxb-123-slack-token", "not a Latchkey client token"),
        ("Bearer lkc_" + "a" * 200, "not a Latchkey client token"),
    ],
)
def test_a_header_that_carries_no_client_token_says_why(header: str | None, wanted: str) -> None:
    token, problem = bearer_token(header)
    assert token is None and problem is not None and wanted in problem


def test_a_bearer_header_yields_its_token() -> None:
    token = new_token()
    assert bearer_token(f"Bearer {token}") == (token, None)
    assert bearer_token(f"bearer  {token} ") == (token, None)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        *[("ci", True), ("ci-deploy-2", True), ("c", False), ("CI", False), ("2ci", False)],
        *[("ci_deploy", False), ("x" * 29, False), ("svc:ci", False)],
    ],
)
def test_client_names(name: str, ok: bool) -> None:
    assert (name_problem(name) is None) is ok


def test_a_flow_names_only_valid_clients() -> None:
    with pytest.raises(ValidationError, match="is not a client name"):
        make_flow(service_clients=("Deploy Bot",))


# -- the keyed record ---------------------------------------------------------------------


def test_a_token_authenticates_its_client_and_no_other(database: Database, audit: AuditLog) -> None:
    client, token = _make(database, audit)
    _, other = _make(database, audit, name="ci-two")
    with database.session() as session:
        assert authenticate(session, audit, token) == client
        assert authenticate(session, audit, other).name == "ci-two"  # type: ignore[union-attr]
        assert authenticate(session, audit, new_token()) is None
        stored = session.get(ServiceClient, "ci")
        assert stored is not None and token not in json.dumps(stored.model_dump(mode="json"))


@pytest.mark.parametrize(
    "edit",
    [
        {"principal": "attacker@example.com"},
        {"flows": ["migrations", "prod-admin"]},
        {"token_hash": token_hash("lkc_the-insiders-own-token")},
    ],
)
def test_a_row_edited_without_the_key_is_no_client(
    database: Database, audit: AuditLog, edit: dict[str, Any]
) -> None:
    _, token = _make(database, audit)
    with database.session() as session:
        session.execute(update(ServiceClient).where(ServiceClient.name == "ci").values(**edit))
    with database.session() as session:
        assert find(session, audit, "ci") is None
        assert authenticate(session, audit, token) is None
        assert authenticate(session, audit, "lkc_the-insiders-own-token") is None


def test_a_revocation_holds_whatever_the_row_says_later(
    database: Database, audit: AuditLog
) -> None:
    _, token = _make(database, audit)
    with database.session() as session:
        revoke(session, audit, "ci", actor="cli:U0ADMIN")
    with database.session() as session, pytest.raises(ClientError, match="already revoked"):
        revoke(session, audit, "ci", actor="cli:U0ADMIN")
    with database.session() as session:
        session.execute(
            update(ServiceClient).where(ServiceClient.name == "ci").values(revoked_at=None)
        )
    with database.session() as session:
        client = authenticate(session, audit, token)
        assert client is not None and client.revoked_at is not None
        assert scope_problem(client, "ci", FLOW) == "service client ci was revoked"


def test_names_are_never_reused(database: Database, audit: AuditLog) -> None:
    _make(database, audit)
    with pytest.raises(ClientError, match="exists"):
        _make(database, audit)


def test_scope_needs_the_token_and_the_flow_to_agree(database: Database, audit: AuditLog) -> None:
    client, _ = _make(database, audit)
    assert scope_problem(client, "ci", FLOW) is None
    assert "not scoped to the test-admin flow" in str(scope_problem(client, "ci", make_flow()))
    closed = make_flow(name="migrations")
    assert "does not admit service client ci" in str(scope_problem(client, "ci", closed))
    assert "does not exist" in str(scope_problem(None, "ci", FLOW))


# -- proof: a client's request is granted only on a keyed approval (invariant 4) ----------


def _client_request(database: Database, audit: AuditLog) -> uuid.UUID:
    ask = RequestInput(flow=FLOW.name, target="admins", duration=timedelta(hours=1), reason="x")
    with database.session() as session:
        return lifecycle.submit(
            session=session, audit=audit, flow=FLOW, requester_id="svc:ci", ask=ask
        ).id


def _proof(database: Database, audit: AuditLog, request_id: uuid.UUID) -> str | None:
    with database.session() as session:
        request = session.get(AccessRequest, request_id)
        return proof.decision_problem(session=session, audit=audit, flow=FLOW, request=request)


def test_a_client_request_set_to_approved_in_the_db_is_not_proof(
    database: Database, audit: AuditLog
) -> None:
    request_id = _client_request(database, audit)
    with database.session() as session:
        session.execute(
            update(AccessRequest)
            .where(AccessRequest.id == request_id)
            .values(status=RequestStatus.APPROVED)
        )
    assert "no keyed approval" in str(_proof(database, audit, request_id))


def test_a_client_request_approved_by_a_person_is_proof(
    database: Database, audit: AuditLog
) -> None:
    request_id = _client_request(database, audit)
    with database.session() as session:
        outcome = lifecycle.decide(
            session=session,
            audit=audit,
            flow=FLOW,
            request_id=request_id,
            decider_id=APPROVER,
            verdict=allow("listed"),
            decision=Decision.APPROVE,
        )
    assert outcome.won and _proof(database, audit, request_id) is None


# -- the API's input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("1h 30m", 5400), ("45s", 45), ("2d", 172800), (" 1h ", 3600)],
)
def test_durations_read_as_latchkey_prints_them(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0m", "30", "thirty minutes", "1w", 30, None, "-5m"])
def test_anything_else_is_no_duration(text: object) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"target": "t", "duration": "1h", "reason": "r"}, {"flow"}),
        ({"flow": "f", "target": 5, "minutes": 30, "reason": "r"}, {"target"}),
        ({"flow": "f", "target": "t", "reason": "r"}, {"duration"}),
        (
            {"flow": "f", "target": "t", "duration": "1h", "minutes": 60, "reason": "r"},
            {"duration"},
        ),
        ({"flow": "f", "target": "t", "minutes": True, "reason": "r"}, {"minutes"}),
        ({"flow": "f", "target": "t", "minutes": 0, "reason": "r"}, {"minutes"}),
        ({"flow": "f", "target": "t", "minutes": 5}, {"reason"}),
        ({"flow": "f", "target": "t", "minutes": 5, "reason": "r", "minute": 5}, {"minute"}),
    ],
)
def test_bad_input_is_refused_naming_each_field(body: dict[str, Any], fields: set[str]) -> None:
    with pytest.raises(ApiError) as refused:
        read_ask(body)
    assert refused.value.status == 400 and set(refused.value.fields) == fields
    assert all(f in refused.value.error for f in fields)


def test_good_input_is_the_request() -> None:
    ask = read_ask({"flow": "f", "target": " t ", "minutes": 30, "reason": "why"})
    assert ask == RequestInput("f", "t", timedelta(minutes=30), "why")


# -- the card -----------------------------------------------------------------------------


def test_the_card_says_a_service_client_asks_and_never_mentions_it() -> None:
    request = AccessRequest(
        id=uuid.uuid4(),
        flow="migrations",
        target="admins",
        requester_id="svc:ci-deploy",
        reason="deploy",
        requested_seconds=1800,
    )
    blocks = json.dumps(approval_card(CardContext(request=request, approvals=[], grant=None)))
    assert "Service client *ci-deploy*" in blocks and "<@svc:" not in blocks
    assert "service client *ci-deploy*" in fallback_text(request)
    assert mention("svc:ci-deploy") == "service client *ci-deploy*"
    assert mention("U0PERSON") == "<@U0PERSON>"


# -- latchkey request ---------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _polls(*answers: Any):  # type: ignore[no-untyped-def]
    left = list(answers)

    def poll() -> tuple[int, dict[str, Any]]:
        answer = left.pop(0) if len(left) > 1 else left[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return poll


PENDING = (200, {"status": "pending"})


@pytest.mark.parametrize(
    ("answers", "outcome"),
    [
        ([PENDING, (200, {"status": "approved"}), (200, {"status": "active"})], "active"),
        ([PENDING, (200, {"status": "denied"})], "denied"),
        ([PENDING, (200, {"status": "timed_out"})], "timed_out"),
        ([(200, {"status": "failed", "failure": "no such IAM user"})], "failed"),
        ([(200, {"status": "expired"})], "ended"),
        ([PENDING, (401, {"error": "this token was revoked"})], "refused"),
        ([Unreachable("refused"), PENDING, (200, {"status": "active"})], "active"),
        ([PENDING], "timeout"),
        ([Unreachable("connection refused")], "unreachable"),
    ],
)
def test_waiting_ends_with_the_outcome(answers: list[Any], outcome: str) -> None:
    clock = _Clock()
    got, _ = wait_for_decision(_polls(*answers), timeout=120, sleep=clock.sleep, clock=clock)
    assert got == outcome
    assert clock.now <= 120


def test_polls_back_off() -> None:
    clock, asked = _Clock(), []

    def poll() -> tuple[int, dict[str, Any]]:
        asked.append(clock.now)
        return PENDING

    wait_for_decision(poll, timeout=300, sleep=clock.sleep, clock=clock)
    gaps = [b - a for a, b in itertools.pairwise(asked)]
    assert gaps[0] == 1.0 and gaps == sorted(gaps) and max(gaps) == 15.0


def test_latchkey_request_needs_its_token_from_the_environment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = argparse.Namespace(
        url="http://127.0.0.1:9", flow="f", target="t", reason="r", minutes=5, duration=None
    )
    assert run(args, env={}) == EXIT["usage"]
    assert "LATCHKEY_CLIENT_TOKEN" in capsys.readouterr().err
    # Nothing listens on port 9 (discard): unreachable, with its own exit code.
    assert run(args, env={"LATCHKEY_CLIENT_TOKEN": new_token()}) == EXIT["unreachable"]
    assert len(set(EXIT.values())) == len(EXIT)


def test_latchkey_request_sends_a_post_again_with_the_same_key_until_it_is_answered() -> None:
    """A real HTTP server that fails the first two POSTs (502, as a proxy in front of a
    restarting web would): the third carries the same Idempotency-Key, so Latchkey can tell
    a retry from a new request."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from app.api.client import submit

    keys: list[str | None] = []

    class Flaky(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            keys.append(self.headers.get("Idempotency-Key"))
            status = 502 if len(keys) < 3 else 202
            body = json.dumps({"id": "r1", "status": "pending"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/api/requests"
        slept: list[float] = []
        code, body = submit(url, "lkc_x", {"flow": "f"}, sleep=slept.append)
        assert (code, body["id"]) == (202, "r1")
        assert len(keys) == 3 and keys[0] is not None and len(set(keys)) == 1
        assert slept == [1.0, 2.0]
        # Never answered: it gives up after its tries, and says so.
        keys.clear()
        with pytest.raises(Unreachable):
            submit(url, "lkc_x", {"flow": "f"}, tries=2, sleep=slept.append)
        assert len(keys) == 2 and len(set(keys)) == 1
    finally:
        server.shutdown()
        server.server_close()
