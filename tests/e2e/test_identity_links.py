"""Verified identity links (issue 16), in a real headless Chromium against the running
stack and a local OpenID Connect provider: a person links their Slack user by signing in,
grants of a flow with Identity(verified=True) go to that identity although the Slack
profile's email changed meanwhile, an unlinked requester is refused with the way to link,
a sign-in finished in another browser links nothing, and unlinking is audited."""

from __future__ import annotations

import json
import uuid

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from sqlalchemy import select

from app.identity import NOT_LINKED
from app.models import AuditEvent
from app.slack import ids
from app.testing.browser import Browser
from app.testing.oidc_standin import OidcStandIn
from app.testing.scenes import (
    Person,
    click,
    group_members,
    new_person,
    request_id_on,
    submit_request,
)
from app.testing.stack import LocalStack, wait_until
from tests.e2e.test_accounts_and_groups import change_account
from tests.factories import APPROVER, CHANNEL, GROUP_NAME


def _oidc(stack: LocalStack) -> OidcStandIn:
    return stack.oidc  # type: ignore[attr-defined,no-any-return]


def _link_url(stack: LocalStack, person: Person) -> str:
    """App Home → "Link your identity" → the modal's button's URL."""
    response = stack.driver.block_action(
        person.user_id, ids.IDENTITY_LINK_ACTION, "link", view={"id": "VHOME", "type": "home"}
    )
    assert response.status == 200, response.body
    modal = stack.slack.wait_for(
        "views.open", lambda a: a.get("trigger_id") == stack.driver.last_trigger_id
    )
    (button,) = modal.response["view"]["blocks"][1]["elements"]
    assert button["text"]["text"] == "Link your identity"
    return str(button["url"])


def _sign_in(browser: Browser, email: str) -> str:
    """At the identity provider's form: choose the account, sign in; the page we land on."""
    Select(browser.driver.find_element(By.ID, "account")).select_by_visible_text(email)
    browser.driver.find_element(By.ID, "signin").click()
    wait_until(lambda: "/identity/callback" in browser.driver.current_url, 15, "the callback")
    return str(browser.driver.find_element(By.TAG_NAME, "body").text)


def _audit(stack: LocalStack, event: str, subject: str) -> list[AuditEvent]:
    with stack.database().session() as session:
        return list(
            session.execute(
                select(AuditEvent).where(AuditEvent.event == event, AuditEvent.subject == subject)
            ).scalars()
        )


def _ask(stack: LocalStack, person: Person) -> dict:
    response = submit_request(
        stack, person, flow="verified", target="admins", seconds=3600, reason="deploy"
    )
    return response.json() if response.body else {}


def test_a_grant_goes_to_the_linked_identity_whatever_the_slack_profile_says(
    stack: LocalStack,
) -> None:
    person = new_person(stack)
    verified = f"v.{person.email}"
    _oidc(stack).add_account(f"00u{uuid.uuid4().hex[:8]}", verified)
    stack.iam().create_user(UserName=verified)  # the company identity's IAM user
    browser = Browser()
    try:
        browser.open(_link_url(stack, person))  # straight on to the provider's sign-in
        landed = _sign_in(browser, verified)
    finally:
        browser.close()
    assert "Identity linked" in landed and verified in landed
    (linked,) = _audit(stack, "identity_linked", person.user_id)
    assert linked.details["email"] == verified

    # A workspace admin points the Slack profile at someone else's address.
    change_account(stack, person, profile={"email": "someone.else@example.com"})
    mark = stack.slack.mark()
    assert _ask(stack, person) == {}
    card = stack.slack.wait_for(
        "chat.postMessage",
        lambda a: a.get("channel") == CHANNEL and f"<@{person.user_id}>" in a.get("text", ""),
        since=mark,
    )
    # Approvers see who gets it, and that it is a verified identity.
    assert f"`{verified}` (verified company identity)" in json.dumps(card.args["blocks"])
    assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
    wait_until(lambda: verified in group_members(stack, GROUP_NAME), 20, "the grant")
    assert "someone.else@example.com" not in group_members(stack, GROUP_NAME)
    assert request_id_on(card)

    # Unlinked from App Home: audited, and the next request waits for a new link.
    response = stack.driver.block_action(
        person.user_id, ids.IDENTITY_UNLINK_ACTION, "unlink", view={"id": "VHOME", "type": "home"}
    )
    assert response.status == 200
    wait_until(lambda: _audit(stack, "identity_unlinked", person.user_id), 10, "the unlink")
    assert _ask(stack, person)["errors"][ids.TARGET_BLOCK] == NOT_LINKED


def test_an_unlinked_requester_is_refused_with_the_way_to_link(stack: LocalStack) -> None:
    person = new_person(stack)
    errors = _ask(stack, person)
    assert errors["errors"][ids.TARGET_BLOCK] == NOT_LINKED
    dm = stack.slack.wait_for(
        "chat.postMessage",
        lambda a: a.get("channel") == person.user_id and "verified identity" in a.get("text", ""),
    )
    (button,) = json.loads(json.dumps(dm.args["blocks"]))[1]["elements"]
    assert button["text"]["text"] == "Link your identity"
    assert button["url"].startswith(f"http://localhost:{stack.port}/identity/link/")


def test_a_sign_in_finished_in_another_browser_links_nothing(stack: LocalStack) -> None:
    """Someone starts linking their own Slack user and sends the provider's sign-in page
    to a colleague: the colleague's sign-in must not become their identity."""
    schemer, colleague = new_person(stack), new_person(stack)
    _oidc(stack).add_account(f"00u{uuid.uuid4().hex[:8]}", colleague.email)
    theirs, other = Browser(), Browser()
    try:
        theirs.open(_link_url(stack, schemer))
        sign_in_page = theirs.driver.current_url  # the provider's form, with their state
        other.open(sign_in_page)
        landed = _sign_in(other, colleague.email)
    finally:
        theirs.close()
        other.close()
    assert "started in another browser" in landed
    assert not _audit(stack, "identity_linked", schemer.user_id)
