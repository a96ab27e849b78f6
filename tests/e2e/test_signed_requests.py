"""Only requests signed by Slack are served: anything else is 401 and changes nothing."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from app.models import AccessRequest, AuditEvent
from app.testing.scenes import new_person
from app.testing.slack_driver import sign
from app.testing.stack import SIGNING_SECRET, LocalStack


@pytest.fixture(scope="module")
def stack(module_stack: LocalStack) -> LocalStack:
    """A stack of this module's own: a forged request must change nothing at all, which is
    counted across the whole database, so nothing else may be running on it."""
    return module_stack


def _counts(stack: LocalStack) -> tuple[int, int, int]:
    with stack.database().session() as session:
        requests = session.execute(select(func.count()).select_from(AccessRequest)).scalar_one()
        events = session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    return requests, events, len(stack.slack.calls("views.open"))


def _body(user_id: str) -> str:
    return urlencode(
        {
            "command": "/access",
            "text": "",
            "user_id": user_id,
            "trigger_id": "tr-forged",
            "team_id": "T0LATCHKEY",
            "channel_id": "C0REQUESTS",
            "response_url": "https://x",
        }
    )


@pytest.mark.parametrize(
    "tamper",
    ["wrong_secret", "stale_timestamp", "missing_signature", "missing_timestamp", "body_changed"],
)
def test_unsigned_or_tampered_requests_get_401(stack: LocalStack, tamper: str) -> None:
    person = new_person(stack, iam_user=False)
    before = _counts(stack)
    body = _body(person.user_id)
    if tamper == "wrong_secret":
        response = stack.driver.post(body, secret="not-the-signing-secret")
    elif tamper == "stale_timestamp":
        response = stack.driver.post(body, timestamp=int(time.time()) - 6 * 60)
    elif tamper == "missing_signature":
        response = stack.driver.post(body, headers_override={"X-Slack-Signature": None})
    elif tamper == "missing_timestamp":
        response = stack.driver.post(body, headers_override={"X-Slack-Request-Timestamp": None})
    else:
        headers = sign(body, SIGNING_SECRET)
        response = stack.driver.send_raw(body.replace("tr-forged", "tr-forged2"), headers)
    assert response.status == 401
    time.sleep(0.3)  # a handler that (wrongly) ran would have called Slack by now
    assert _counts(stack) == before


def test_correctly_signed_request_is_served(stack: LocalStack) -> None:
    person = new_person(stack, iam_user=False)
    response = stack.driver.post(_body(person.user_id))
    assert response.status == 200
    stack.slack.wait_for("views.open", lambda a: a.get("trigger_id") == "tr-forged")


def test_healthz_reports_database_and_broker(stack: LocalStack) -> None:
    body = stack.health()
    assert (body["status"], body["database"], body["broker"]) == ("ok", "ok", "ok")
