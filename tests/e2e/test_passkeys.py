"""Approvals confirmed with a passkey (issue 16), in a real headless Chromium with a
virtual authenticator, against the running stack: set up from App Home, an approval that
counts only once the passkey signed that request, and every way to cheat refused with
nothing approved (a reused or expired link, another person's passkey on someone's link, a
replayed assertion, a POST from elsewhere)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.db import utcnow
from app.models import AccessRequest, AuditEvent, RequestStatus, WebLink
from app.slack import ids
from app.testing.browser import Browser
from app.testing.scenes import (
    BREAK_GLASS_TICKED,
    Person,
    card_update,
    click,
    group_members,
    new_person,
    open_request_modal,
    request_id_on,
    said_to,
    submit_request,
)
from app.testing.slack_driver import plain_text_value, static_select_value
from app.testing.slack_standin import RecordedCall
from app.testing.stack import LocalStack, wait_until
from app.weblinks import token_hash
from tests.factories import APPROVER, CHANNEL, GROUP_APPROVER, GROUP_NAME, SECOND_APPROVER

# An assertion made in the page without sending it: what an attacker who saw one holds.
# `arguments[0]`: drop the link's allowed credentials (any passkey of this browser answers).
ASSERT_ONLY = """
const done = arguments[arguments.length - 1];
const anyKey = arguments[0];
(async () => {
  const r = await fetch(location.pathname + "/options", {method: "POST", body: "{}",
    headers: {"Content-Type": "application/json"}});
  const o = await r.json();
  o.challenge = dec(o.challenge);
  if (anyKey) o.allowCredentials = [];
  else (o.allowCredentials || []).forEach((c) => { c.id = dec(c.id); });
  const c = await navigator.credentials.get({publicKey: o});
  done(JSON.stringify(credentialJSON(c)));
})().catch((e) => done("ERROR " + e));
"""


@pytest.fixture(scope="module")
def approver(stack: LocalStack) -> Iterator[Browser]:
    """The approver's browser, for the module: adding a passkey to someone who has one
    needs one of theirs, which a new browser would not hold."""
    browser = Browser()
    try:
        _set_up_passkey(stack, APPROVER, browser)
        yield browser
    finally:
        browser.close()


def _setup_url(stack: LocalStack, user_id: str) -> str:
    """App Home → "Set up a passkey" → the modal's link."""
    response = stack.driver.block_action(
        user_id, ids.PASSKEY_SETUP_ACTION, "setup", view={"id": "VHOME", "type": "home"}
    )
    assert response.status == 200, response.body
    modal = stack.slack.wait_for(
        "views.open", lambda a: a.get("trigger_id") == stack.driver.last_trigger_id
    )
    assert "works once, only for you" in json.dumps(modal.response["view"])
    return str(modal.response["view"]["blocks"][1]["elements"][0]["url"])


def _set_up_passkey(stack: LocalStack, user_id: str, browser: Browser) -> None:
    """App Home → "Set up a passkey" → the modal's link → the page → the authenticator."""
    url = _setup_url(stack, user_id)
    assert "Set up a passkey" in browser.open(url)
    assert "Your passkey is set up" in browser.press()
    assert "already used" in browser.open(url)  # single use


def _request(stack: LocalStack, flow: str = "passkey") -> tuple[Person, RecordedCall]:
    person = new_person(stack)
    mark = stack.slack.mark()
    submit_request(stack, person, flow=flow, target="admins", seconds=3600, reason="db fix")
    card = stack.slack.wait_for(
        "chat.postMessage",
        lambda a: a.get("channel") == CHANNEL and f"<@{person.user_id}>" in a.get("text", ""),
        since=mark,
    )
    return person, card


def _link(stack: LocalStack, user_id: str, card: RecordedCall) -> str:
    """Approve → the clicker is told, only them, where to confirm with their passkey."""
    mark = stack.slack.mark()
    assert click(stack, user_id, ids.APPROVE_ACTION, card).status == 200
    said = said_to(stack, user_id, "needs your passkey", since=mark)
    found = re.search(r"<(http[^|>]+)\|Confirm the approval>", said.args["text"])
    assert found, said.args["text"]
    return found.group(1)


def _status(stack: LocalStack, card: RecordedCall) -> RequestStatus:
    with stack.database().session() as session:
        request = session.get(AccessRequest, uuid.UUID(request_id_on(card)))
        assert request is not None
        return request.status


def _post(url: str, body: str, origin: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if origin is not None:
        headers["Origin"] = origin
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - the test's own stack
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _events(stack: LocalStack, card: RecordedCall, name: str) -> list[AuditEvent]:
    with stack.database().session() as session:
        return list(
            session.execute(
                select(AuditEvent).where(
                    AuditEvent.request_id == uuid.UUID(request_id_on(card)),
                    AuditEvent.event == name,
                )
            ).scalars()
        )


def test_an_approval_counts_once_the_approvers_passkey_confirms_that_request(
    stack: LocalStack, approver: Browser
) -> None:
    person, card = _request(stack)
    assert "each confirmed with the approver's passkey" in json.dumps(card.args["blocks"])
    url = _link(stack, APPROVER, card)
    # The click alone approves nothing.
    assert _status(stack, card) == RequestStatus.PENDING
    page = approver.open(url)
    assert "Confirm an approval" in page and "admins" in page and request_id_on(card) in page
    assert "Reason\ndb fix" in page and "For\n1h" in page
    assert "Approved with your passkey" in approver.press()
    wait_until(lambda: person.email in group_members(stack, GROUP_NAME), 20, "the grant")
    card_update(stack, card, ":key: Approved with passkey by")
    # The keyed approval names the credential, which a keyed registration vouches for.
    (credential,) = approver.credentials()
    (approved,) = _events(stack, card, "approved")
    assert approved.actor == APPROVER and approved.details["passkey"] == credential
    with stack.database().session() as session:
        registered = session.execute(
            select(AuditEvent).where(
                AuditEvent.event == "passkey_registered", AuditEvent.subject == APPROVER
            )
        ).scalars()
        assert credential in [e.details["credential_id"] for e in registered]
    assert "already used" in approver.open(url)


def test_expired_links_other_peoples_passkeys_and_replays_approve_nothing(
    stack: LocalStack, approver: Browser
) -> None:
    person, card = _request(stack, flow="passkey-two")
    origin = f"http://localhost:{stack.port}"

    # An expired link.
    url = _link(stack, APPROVER, card)
    with stack.database().session() as session:
        session.execute(
            update(WebLink)
            .where(WebLink.token_hash == token_hash(url.rsplit("/", 1)[1]))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert "This link has expired" in approver.open(url)

    # Another approver's passkey on this approver's link: the browser offers none of
    # theirs; forced to answer anyway, the server refuses it and spends the link.
    url = _link(stack, APPROVER, card)
    other = Browser()
    try:
        _set_up_passkey(stack, SECOND_APPROVER, other)
        other.open(url)
        assert "No passkey was used" in other.press()
        answer = other.script(ASSERT_ONLY, True)
        assert not answer.startswith("ERROR"), answer
        status, said = _post(f"{url}/verify", answer, origin)
        assert status == 200 and said["ok"] is False and "not one of yours" in said["message"]
    finally:
        other.close()
    assert "already used" in approver.open(url)
    refused = _events(stack, card, "approve_refused")
    assert any("not one of yours" in e.details["reason"] for e in refused)

    # A valid assertion, sent once from elsewhere (refused: not the page's origin), then
    # from the page's origin (counted), then replayed on the same link and on a new one.
    url = _link(stack, APPROVER, card)
    approver.open(url)
    answer = approver.script(ASSERT_ONLY, False)
    assert not answer.startswith("ERROR"), answer
    assert _post(f"{url}/verify", answer, "https://evil.example")[0] == 403
    status, said = _post(f"{url}/verify", answer, origin)
    assert said == {"ok": True, "message": said["message"]} and "1 of 2" in said["message"]
    assert _post(f"{url}/verify", answer, origin)[0] == 410
    url = _link(stack, APPROVER, card)
    assert _post(f"{url}/options", "{}", origin)[0] == 200
    status, said = _post(f"{url}/verify", answer, origin)
    assert said["ok"] is False and "does not verify" in said["message"]

    # One approval on record, no access: the second approver's passkey is still needed.
    assert [e.actor for e in _events(stack, card, "approval_recorded")] == [APPROVER]
    assert _status(stack, card) == RequestStatus.PENDING
    assert person.email not in group_members(stack, GROUP_NAME)


def test_a_slack_click_alone_never_grants_a_passkey_flow(stack: LocalStack) -> None:
    """An approver with no passkey is told to set one up; nothing is approved."""
    person, card = _request(stack)
    mark = stack.slack.mark()
    assert click(stack, GROUP_APPROVER, ids.APPROVE_ACTION, card).status == 200
    said = said_to(stack, GROUP_APPROVER, "needs a passkey", since=mark)
    assert "Set up a passkey" in said.args["text"]
    assert _status(stack, card) == RequestStatus.PENDING
    assert person.email not in group_members(stack, GROUP_NAME)


def _break_glass(stack: LocalStack, person: Person) -> dict:
    """The form with Break glass ticked, then "Activate now": the view Slack shows next."""
    view = open_request_modal(stack, person)
    values = {
        ids.FLOW_BLOCK: {ids.FLOW_ACTION: static_select_value("passkey-glass")},
        ids.TARGET_BLOCK: {ids.TARGET_ACTION: static_select_value("admins")},
        ids.DURATION_BLOCK: {ids.DURATION_ACTION: static_select_value("3600")},
        ids.REASON_BLOCK: {ids.REASON_ACTION: plain_text_value("prod down INC-7")},
        ids.BREAK_GLASS_BLOCK: {ids.BREAK_GLASS_ACTION: BREAK_GLASS_TICKED},
    }
    pushed = stack.driver.view_submission(person.user_id, view, values).json()
    assert pushed["view"]["callback_id"] == ids.BREAK_GLASS_VIEW
    answer = stack.driver.view_submission(person.user_id, pushed["view"], {}).json()
    assert answer["response_action"] == "update"
    return answer["view"]


def test_break_glass_needing_the_requesters_passkey_grants_only_once_it_confirms(
    stack: LocalStack,
) -> None:
    person = new_person(stack)
    browser = Browser()
    try:
        _set_up_passkey(stack, person.user_id, browser)
        view = _break_glass(stack, person)
        (button,) = view["blocks"][1]["elements"]
        assert button["text"]["text"] == "Confirm with passkey"
        assert person.email not in group_members(stack, GROUP_NAME)  # not before the passkey
        page = browser.open(button["url"])
        assert "Confirm break-glass" in page and "prod down INC-7" in page
        assert "Break-glass activated with your passkey" in browser.press()
        (credential,) = browser.credentials()
    finally:
        browser.close()
    wait_until(lambda: person.email in group_members(stack, GROUP_NAME), 20, "the grant")
    with stack.database().session() as session:
        (event,) = session.execute(
            select(AuditEvent).where(
                AuditEvent.event == "break_glass", AuditEvent.subject == person.user_id
            )
        ).scalars()
    assert event.details["passkey"] == credential


def test_break_glass_without_a_passkey_sets_one_up_and_grants_nothing(stack: LocalStack) -> None:
    person = new_person(stack)
    view = _break_glass(stack, person)
    (button,) = view["blocks"][1]["elements"]
    assert button["text"]["text"] == "Set up a passkey" and "/passkey/setup/" in button["url"]
    assert "you have none set up yet" in json.dumps(view)
    with stack.database().session() as session:
        assert not session.execute(
            select(AuditEvent).where(
                AuditEvent.event == "break_glass", AuditEvent.subject == person.user_id
            )
        ).all()
    assert person.email not in group_members(stack, GROUP_NAME)


def _passkeys(stack: LocalStack, user_id: str) -> list[str]:
    with stack.database().session() as session:
        return [
            e.details["credential_id"]
            for e in session.execute(
                select(AuditEvent).where(
                    AuditEvent.event == "passkey_registered", AuditEvent.subject == user_id
                )
            ).scalars()
        ]


def test_adding_a_passkey_needs_one_the_person_already_has(stack: LocalStack) -> None:
    """A thief with someone's Slack session opens "Set up a passkey" from their App Home:
    without one of that person's passkeys, nothing is added."""
    person = new_person(stack)
    own, thief = Browser(), Browser()
    try:
        _set_up_passkey(stack, person.user_id, own)
        assert len(_passkeys(stack, person.user_id)) == 1
        url = _setup_url(stack, person.user_id)
        assert "first confirm with one of them" in thief.open(url)
        assert "No passkey was used" in thief.press()
        assert len(_passkeys(stack, person.user_id)) == 1
        # The owner adds a second one: their passkey first, then the new one.
        own.open(_setup_url(stack, person.user_id))
        assert "Your passkey is set up" in own.press()
    finally:
        own.close()
        thief.close()
    assert len(_passkeys(stack, person.user_id)) == 2
    told = [
        c
        for c in stack.slack.calls("chat.postMessage")
        if c.args.get("channel") == person.user_id and "A passkey was added" in c.args["text"]
    ]
    assert len(told) == 2
