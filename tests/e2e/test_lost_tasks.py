"""Invariant 1: the DB is the source of truth. Losing the broker's timed revoke changes nothing."""

from __future__ import annotations

import uuid

import redis
from sqlalchemy import select

from app.models import AccessRequest, AuditEvent, RequestStatus
from app.queries import grant_of
from app.slack import ids
from app.testing.scenes import (
    approval_card_for,
    click,
    dm_to,
    group_members,
    new_person,
    request_id_on,
    submit_request,
)
from app.testing.stack import LocalStack, wait_until
from tests.factories import APPROVER, GROUP_NAME


def test_sweep_revokes_when_the_countdown_task_is_lost(stack: LocalStack) -> None:
    person = new_person(stack)
    submit_request(
        stack, person, flow="test-admin", target="admins", seconds=6, reason="lost task drill"
    )
    card = approval_card_for(stack, person)
    request_id = uuid.UUID(request_id_on(card))
    click(stack, APPROVER, ids.APPROVE_ACTION, card)
    dm_to(stack, person, "You now have")
    assert person.email in group_members(stack, GROUP_NAME)

    # The worker holding the ETA task dies, and the broker loses everything it had.
    stack.kill_process("worker")
    redis.Redis.from_url(stack.redis_url).flushdb()
    stack.start_process("worker")

    def ended() -> bool:
        with stack.database().session() as session:
            return session.get(AccessRequest, request_id).status == RequestStatus.EXPIRED

    wait_until(ended, 30, "the sweep to expire the grant")
    assert person.email not in group_members(stack, GROUP_NAME)
    with stack.database().session() as session:
        grant = grant_of(session, request_id)
        assert grant.ended_at >= grant.expires_at
        events = (
            session.execute(select(AuditEvent.event).where(AuditEvent.request_id == request_id))
            .scalars()
            .all()
        )
    assert list(events).count("expired") == 1
