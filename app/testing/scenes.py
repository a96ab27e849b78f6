"""What people do in Slack, played against a LocalStack: shared by the e2e tests and the demo."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from typing import Any

from app.slack import ids
from app.testing.slack_driver import Response, plain_text_value, static_select_value
from app.testing.slack_standin import RESPONSE_URL, RecordedCall
from app.testing.stack import LocalStack, wait_until

_counter = itertools.count(1)


@dataclass(frozen=True)
class Person:
    user_id: str
    email: str


# The request form's "Break glass" checkbox, ticked, as Slack sends its state.
BREAK_GLASS_TICKED = {
    "type": "checkboxes",
    "selected_options": [
        {"value": "break_glass", "text": {"type": "plain_text", "text": "Break glass"}}
    ],
}


def connect(stack: LocalStack) -> LocalStack:
    """Let the driver's clicks and commands carry response_urls served by the stack's Slack
    stand-in, so what the app replies there is recorded like any other call."""
    if stack.driver.response_urls is None:
        stack.driver.response_urls = stack.slack.response_url
    return stack


def new_person(
    stack: LocalStack,
    *,
    tz: str = "America/New_York",
    iam_user: bool = True,
    name: str | None = None,
) -> Person:
    """A Slack user with a profile email, and (by default) an IAM user of that name."""
    connect(stack)
    n = next(_counter)
    user_id = f"U0P{uuid.uuid4().hex[:6].upper()}{n}"
    email = f"{(name or 'person').lower()}{n}@example.com"
    stack.slack.add_user(user_id, name=name or f"person{n}", email=email, tz=tz)
    if iam_user:
        stack.iam().create_user(UserName=email)
    return Person(user_id, email)


def open_request_modal(stack: LocalStack, person: Person) -> dict[str, Any]:
    before = len(stack.slack.calls("views.open"))
    response = connect(stack).driver.slash_command(person.user_id)
    assert response.status == 200, response.body
    trigger = stack.driver.last_trigger_id
    call = stack.slack.wait_for("views.open", lambda a: a.get("trigger_id") == trigger)
    assert len(stack.slack.calls("views.open")) > before
    return call.response["view"]


def submit_request(
    stack: LocalStack,
    person: Person,
    *,
    flow: str,
    target: str,
    seconds: int,
    reason: str,
    view: dict[str, Any] | None = None,
    for_user: str | None = None,
) -> Response:
    """Fill in and submit the request form; `for_user` picks someone in its "For" picker."""
    view = view or open_request_modal(stack, person)
    values = {
        ids.FLOW_BLOCK: {ids.FLOW_ACTION: static_select_value(flow)},
        ids.TARGET_BLOCK: {ids.TARGET_ACTION: static_select_value(target)},
        ids.DURATION_BLOCK: {ids.DURATION_ACTION: static_select_value(str(seconds))},
        ids.REASON_BLOCK: {ids.REASON_ACTION: plain_text_value(reason)},
    }
    if for_user is not None:
        values[ids.FOR_BLOCK] = {
            ids.FOR_ACTION: {"type": "users_select", "selected_user": for_user}
        }
    return stack.driver.view_submission(person.user_id, view, values)


def approval_card_for(stack: LocalStack, person: Person, timeout: float = 15) -> RecordedCall:
    """The card the bot posted to the approval channel for this requester's latest request."""
    return stack.slack.wait_for(
        "chat.postMessage",
        lambda a: (
            a.get("channel", "").startswith("C") and f"<@{person.user_id}>" in a.get("text", "")
        ),
        timeout=timeout,
    )


def request_id_on(card: RecordedCall) -> str:
    for block in card.args.get("blocks", []):
        if block.get("type") == "actions":
            return str(block["elements"][0]["value"])
    raise AssertionError(f"no decision buttons on the card: {card.args}")


def click(stack: LocalStack, user_id: str, action_id: str, card: RecordedCall) -> Response:
    return connect(stack).driver.block_action(
        user_id,
        action_id,
        request_id_on(card),
        block_id=ids.DECISION_BLOCK,
        channel_id=card.response["channel"],
        message_ts=card.response["ts"],
    )


def dm_to(stack: LocalStack, person: Person, contains: str, timeout: float = 15) -> RecordedCall:
    return stack.slack.wait_for(
        "chat.postMessage",
        lambda a: a.get("channel") == person.user_id and contains in a.get("text", ""),
        timeout=timeout,
    )


def card_update(
    stack: LocalStack, card: RecordedCall, contains: str, timeout: float = 15
) -> RecordedCall:
    import json

    return stack.slack.wait_for(
        "chat.update",
        lambda a: (
            a.get("ts") == card.response["ts"]
            and contains in json.dumps(a.get("blocks", []), ensure_ascii=False)
        ),
        timeout=timeout,
    )


def group_members(stack: LocalStack, group: str) -> list[str]:
    return [u["UserName"] for u in stack.iam().get_group(GroupName=group)["Users"]]


def click_in_dm(
    stack: LocalStack, person: Person, action_id: str, request_id: str | uuid.UUID
) -> Response:
    """Press a button on a DM the bot sent this person (Extend, I'm done, Cancel, …)."""
    dm = f"D0{person.user_id[1:]}"
    return connect(stack).driver.block_action(
        person.user_id, action_id, str(request_id), channel_id=dm, message_ts="1.000001"
    )


def extend(
    stack: LocalStack, person: Person, request_id: str | uuid.UUID, seconds: int, reason: str
) -> Response:
    """Extend → the modal opens → choose how much longer, say why, submit."""
    before = len(stack.slack.calls("views.open"))
    response = click_in_dm(stack, person, ids.EXTEND_ACTION, request_id)
    assert response.status == 200, response.body
    call = stack.slack.wait_for(
        "views.open", lambda a: a.get("trigger_id") == stack.driver.last_trigger_id
    )
    assert len(stack.slack.calls("views.open")) > before
    values = {
        ids.EXTEND_DURATION_BLOCK: {ids.EXTEND_DURATION_ACTION: static_select_value(str(seconds))},
        ids.EXTEND_REASON_BLOCK: {ids.EXTEND_REASON_ACTION: plain_text_value(reason)},
    }
    return stack.driver.view_submission(person.user_id, call.response["view"], values)


def said_to(
    stack: LocalStack, user_id: str, contains: str, timeout: float = 15, *, since: int = 0
) -> RecordedCall:
    """An ephemeral message (through a response_url or chat.postEphemeral) or a DM only this
    person sees, containing `contains`; only one said after the `since` mark
    (`stack.slack.mark()`) when given, as a test on the shared stack must for the fixed
    approvers and outsiders every test clicks as."""
    said_kinds = (RESPONSE_URL, "chat.postEphemeral", "chat.postMessage")

    def said() -> RecordedCall | None:
        return next(
            (
                call
                for call in stack.slack.calls(since=since)
                if call.method in said_kinds
                and call.ok
                and user_id in (call.args.get("user"), call.args.get("channel"))
                and contains in str(call.args.get("text", ""))
            ),
            None,
        )

    return wait_until(said, timeout, f"something said to {user_id} containing {contains!r}")
