"""Issue 12, points 5-7, end to end through signed /slack/events and the Slack stand-in:
decisions clamped to the flow as it is now, forged choices refused and audited, a modal
that shows only what the person may request, and break-glass state kept on the server.

The module runs a small stack of its own: one test rewrites a flow file and restarts the
processes (flows are loaded at start), which must not disturb the shared stack.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from sqlalchemy import select

from app.models import AccessRequest, AuditEvent, RequestDraft
from app.queries import grant_of
from app.slack import ids
from app.testing.scenes import (
    Person,
    approval_card_for,
    card_update,
    click,
    dm_to,
    group_members,
    new_person,
    open_request_modal,
    said_to,
    submit_request,
)
from app.testing.slack_driver import plain_text_value, static_select_value
from app.testing.stack import LocalStack, wait_until
from tests.conftest import BACKENDS, migrated_database_for
from tests.factories import APPROVER, GROUP_NAME, OUTSIDER, SECOND_APPROVER, write_flow

MINUTES = "timedelta(minutes=10), timedelta(minutes=20)"
VAULT_TARGETS = '(AwsIamGroupTarget(name="crown-jewels", group_name="latchkey-vault"),)'


def _shrinking(flows_dir, lowered: bool = False, name: str = "shrinking") -> None:  # type: ignore[no-untyped-def]
    write_flow(
        flows_dir,
        name=name,
        durations=MINUTES if lowered else f"{MINUTES}, timedelta(hours=1)",
        max_duration="timedelta(minutes=20)" if lowered else "timedelta(hours=1)",
    )


@pytest.fixture(scope="module", params=BACKENDS)
def edge(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[LocalStack]:
    workdir = tmp_path_factory.mktemp("edge")
    flows_dir = workdir / "flows"
    flows_dir.mkdir()
    _shrinking(flows_dir)
    _shrinking(flows_dir, name="shrinking-later")
    write_flow(flows_dir, name="two-person", extra="approvals_required=2,")
    write_flow(flows_dir, name="emergency", extra="break_glass=True,")
    write_flow(
        flows_dir,
        name="vault",
        targets=VAULT_TARGETS,
        extra='requesters=People(users=("U0NOBODY",)),',
    )
    redis.Redis.from_url(redis_url).flushdb()
    for database_url in migrated_database_for(request, request.param, workdir):
        local = LocalStack(
            workdir=workdir,
            flows_dir=flows_dir,
            redis_url=redis_url,
            database_url=database_url,
            migrated=True,
        )
        try:
            local.start()
            for user_id, name in ((APPROVER, "ann"), (SECOND_APPROVER, "bo"), (OUTSIDER, "dee")):
                local.slack.add_user(user_id, name=name, email=f"{name}@example.com")
            local.iam().create_group(GroupName=GROUP_NAME)
            yield local
        except BaseException:
            print(local.all_logs())
            raise
        finally:
            local.stop(kill=True)
            redis.Redis.from_url(redis_url).flushdb()


def _events(stack: LocalStack, request_id: uuid.UUID) -> list[AuditEvent]:
    with stack.database().session() as session:
        return list(
            session.execute(
                select(AuditEvent)
                .where(AuditEvent.request_id == request_id)  # type: ignore[arg-type]
                .order_by(AuditEvent.seq)  # type: ignore[arg-type]
            ).scalars()
        )


def _choose(stack: LocalStack, who: str, card, value: str):  # type: ignore[no-untyped-def]
    """Pick "Approve for …" on the card with whatever value the payload carries."""
    return stack.driver.block_action(
        who,
        ids.APPROVE_FOR_ACTION,
        value,
        action_type="static_select",
        block_id=ids.DECISION_BLOCK,
        channel_id=card.response["channel"],
        message_ts=card.response["ts"],
    )


def test_a_card_older_than_a_lowered_max_duration_grants_only_what_the_flow_allows_now(
    edge: LocalStack,
) -> None:
    person = new_person(edge)
    submit_request(edge, person, flow="shrinking", target="admins", seconds=3600, reason="long job")
    card = approval_card_for(edge, person)
    # The admin lowers max_duration to 20 minutes; processes load flows at start.
    _shrinking(edge.flows_dir, lowered=True)
    _restart(edge)

    assert click(edge, APPROVER, ids.APPROVE_ACTION, card).status == 200
    granted = dm_to(edge, person, "You now have")
    assert "Shortened to 20m" in granted.args["text"], "the requester is told too"
    shortened = card_update(edge, card, "Shortened to 20m")
    assert "20m (asked 1h)" in json.dumps(shortened.args["blocks"])
    assert person.email in group_members(edge, GROUP_NAME)

    request_id = uuid.UUID(card.args["blocks"][-1]["elements"][0]["value"])
    with edge.database().session() as session:
        grant = grant_of(session, request_id)
    assert grant is not None and grant.expires_at - grant.granted_at == timedelta(minutes=20)
    events = {e.event: e for e in _events(edge, request_id)}
    assert events["approved"].details["approved_seconds"] == 1200
    assert events["approved"].details["clamped"].startswith("Shortened from 1h to 20m")
    assert events["granted"].details["expires_at"] == grant.expires_at.isoformat()


def _card_stored(edge: LocalStack, request_id: uuid.UUID) -> bool:
    with edge.database().session() as session:
        row = session.get(AccessRequest, request_id)
        return row is not None and row.approval_message_ts is not None


def _restart(edge: LocalStack, names: tuple[str, ...] = ("web", "worker", "beat")) -> None:
    for name in names:
        edge.stop_process(name)
    for name in sorted(names, key=("worker", "beat", "web").index):
        edge.start_process(name)


def test_an_approval_granted_after_max_duration_was_lowered_is_clamped_by_the_worker(
    edge: LocalStack,
) -> None:
    person = new_person(edge)
    submit_request(
        edge, person, flow="shrinking-later", target="admins", seconds=3600, reason="long job"
    )
    card = approval_card_for(edge, person)
    request_id = uuid.UUID(card.args["blocks"][-1]["elements"][0]["value"])
    # Approved for 1h (the click is kept) while the flow still allowed it; no worker has
    # decided or granted it yet.
    wait_until(lambda: _card_stored(edge, request_id), 15, "the card's ts in the DB")
    edge.stop_process("worker")
    try:
        click(edge, APPROVER, ids.APPROVE_ACTION, card)
        wait_until(
            lambda: any(e.event == "decision_deferred" for e in _events(edge, request_id)),
            15,
            "the kept click",
        )
        _shrinking(edge.flows_dir, lowered=True, name="shrinking-later")
    finally:
        edge.start_process("worker")
    # Web and beat load the lowered flow too (after the worker: a web waits to be ready
    # until the deployment is healthy, which a worker stopped for long is not).
    _restart(edge, ("web", "beat"))

    dm_to(edge, person, "You now have", timeout=30)
    card_update(edge, card, "Shortened to 20m")
    with edge.database().session() as session:
        grant = grant_of(session, request_id)
    assert grant is not None and grant.expires_at - grant.granted_at == timedelta(minutes=20)
    # The kept click is decided by the worker under the flow as it is now: the approval
    # itself is clamped (the grant path's own clamp, for a decision made before the
    # change, is tests/test_clamp.py's).
    trail = {e.event: e for e in _events(edge, request_id)}
    assert trail["approved"].details["approved_seconds"] == 1200
    assert trail["approved"].details["clamped"].startswith("Shortened from 1h to 20m")
    assert "grant_refused" not in trail


def test_forged_approve_for_zero_or_off_the_menu_is_refused_audited_and_the_shorter_choice_stands(
    edge: LocalStack,
) -> None:
    person = new_person(edge)
    submit_request(edge, person, flow="two-person", target="admins", seconds=3600, reason="debug")
    card = approval_card_for(edge, person)
    request_id = uuid.UUID(card.args["blocks"][-1]["elements"][0]["value"])
    _choose(edge, APPROVER, card, f"{request_id}|4")  # a real menu choice: 4s
    wait_until(
        lambda: any(e.event == "approval_recorded" for e in _events(edge, request_id)),
        15,
        "the first approval",
    )
    for forged, says in (
        ("0", "0s is not one"),
        ("7", "7s is not one"),
        ("forever", "does not name a duration"),
    ):
        assert _choose(edge, SECOND_APPROVER, card, f"{request_id}|{forged}").status == 200
        said_to(edge, SECOND_APPROVER, says)
    refused = [e for e in _events(edge, request_id) if e.event == "approve_refused"]
    assert [(e.actor, e.details.get("chosen_seconds")) for e in refused] == [
        (SECOND_APPROVER, 0),
        (SECOND_APPROVER, 7),
        (SECOND_APPROVER, None),
    ]
    with edge.database().session() as session:
        row = session.get(AccessRequest, request_id)
        assert row is not None and row.status.value == "pending" and row.approved_seconds == 4

    click(edge, SECOND_APPROVER, ids.APPROVE_ACTION, card)
    dm_to(edge, person, "You now have")
    with edge.database().session() as session:
        grant = grant_of(session, request_id)
    assert grant is not None and grant.expires_at - grant.granted_at == timedelta(seconds=4)


def test_a_forged_flow_switch_renders_nothing_of_a_flow_the_person_may_not_request(
    edge: LocalStack,
) -> None:
    person = new_person(edge)
    view = open_request_modal(edge, person)
    assert "vault" not in json.dumps(view) and "crown-jewels" not in json.dumps(view)
    before = len(edge.slack.calls("views.update"))
    forged = {
        **view,
        "state": {"values": {ids.FLOW_BLOCK: {ids.FLOW_ACTION: static_select_value("vault")}}},
    }
    response = edge.driver.block_action(
        person.user_id,
        ids.FLOW_ACTION,
        "vault",
        action_type="static_select",
        block_id=ids.FLOW_BLOCK,
        view=forged,
    )
    assert response.status == 200 and "crown-jewels" not in response.body
    update = edge.slack.wait_for(
        "views.update", lambda a: a.get("view_id") == view["id"], timeout=15
    )
    assert len(edge.slack.calls("views.update")) > before
    shown = json.dumps(update.args["view"])
    assert "crown-jewels" not in shown and '"vault"' not in shown
    assert "You may not request that flow" in shown

    # Submitting the forged flow anyway is refused in the form; nothing is stored.
    submitted = submit_request(
        edge, person, flow="vault", target="crown-jewels", seconds=4, reason="x", view=view
    )
    assert submitted.json()["response_action"] == "errors"
    with edge.database().session() as session:
        mine = session.execute(
            select(AccessRequest).where(AccessRequest.requester_id == person.user_id)  # type: ignore[arg-type]
        ).all()
    assert mine == []


def _break_glass(edge: LocalStack, person: Person, reason: str):  # type: ignore[no-untyped-def]
    view = open_request_modal(edge, person)
    values = {
        ids.FLOW_BLOCK: {ids.FLOW_ACTION: static_select_value("emergency")},
        ids.TARGET_BLOCK: {ids.TARGET_ACTION: static_select_value("admins")},
        ids.DURATION_BLOCK: {ids.DURATION_ACTION: static_select_value("3600")},
        ids.REASON_BLOCK: {ids.REASON_ACTION: plain_text_value(reason)},
        ids.BREAK_GLASS_BLOCK: {
            ids.BREAK_GLASS_ACTION: {
                "type": "checkboxes",
                "selected_options": [{"value": "break_glass", "text": plain_text_value("x")}],
            }
        },
    }
    return edge.driver.view_submission(person.user_id, view, values).json()


def test_an_880_character_cyrillic_break_glass_reason_works_and_the_view_carries_an_id(
    edge: LocalStack,
) -> None:
    person = new_person(edge)
    reason = ("Прод лежит, INC-4242: откатываю миграцию платёжного сервиса. " * 15)[:880]
    assert len(reason) == 880
    pushed = _break_glass(edge, person, reason)
    assert pushed["response_action"] == "push"
    confirm = pushed["view"]
    metadata = confirm["private_metadata"]
    # Slack refuses more than 3,000 characters; what rides there is a draft's id only.
    assert len(metadata) < 3000 and set(json.loads(metadata)) == {"draft_id"}
    assert "Прод" not in json.dumps(confirm, ensure_ascii=False)

    # Someone else submitting this confirmation gets nothing, and does not use it up.
    stolen = edge.driver.view_submission(OUTSIDER, confirm, {}).json()
    assert stolen["response_action"] == "update" and "not yours" in json.dumps(stolen)

    assert edge.driver.view_submission(person.user_id, confirm, {}).json() == {
        "response_action": "clear"
    }
    dm_to(edge, person, "You now have")
    assert person.email in group_members(edge, GROUP_NAME)
    with edge.database().session() as session:
        request = session.execute(
            select(AccessRequest).where(AccessRequest.requester_id == person.user_id)  # type: ignore[arg-type]
        ).scalar_one()
        drafts = session.execute(
            select(RequestDraft).where(RequestDraft.user_id == person.user_id)  # type: ignore[arg-type]
        ).all()
    assert request.reason == reason and drafts == []
    events = {e.event: e for e in _events(edge, request.id)}
    assert events["requested"].details["reason"] == reason
    assert "break_glass" in events and "granted" in events

    # Single use: the same confirmation again activates nothing more.
    again = edge.driver.view_submission(person.user_id, confirm, {}).json()
    assert again["response_action"] == "update" and "already used" in json.dumps(again)
