"""Targets beyond IAM groups, through the running stack: a custom provider from the flows
folder (the shipped PostgreSQL-role example), GCP role bindings and impersonation through
the Google stand-ins, and identity checked in the modal."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import select

from app import queries
from app.models import AuditEvent
from app.slack import ids
from app.testing.scenes import (
    Person,
    approval_card_for,
    card_update,
    click,
    dm_to,
    new_person,
    request_id_on,
    submit_request,
    wait_until,
)
from app.testing.stack import LocalStack
from tests.e2e.conftest import DB_ROLE, GCP_PROJECT, GCP_SERVICE_ACCOUNT
from tests.factories import APPROVED_BY_CLICK, APPROVER


def _is_member(conn: psycopg.Connection, member: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
        "JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = %s AND u.rolname = %s",
        (DB_ROLE, member),
    ).fetchone()
    return row is not None


def test_custom_provider_request_approve_expire(
    stack: LocalStack, db_role_server: psycopg.Connection
) -> None:
    # Roles are cluster-wide and the test workers count people each from 1: a name of its
    # own, or two workers both create person17@example.com (seen with 6 workers).
    person = new_person(stack, iam_user=False, name=f"role{uuid.uuid4().hex[:8]}x")
    db_role_server.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(person.email)))
    try:
        response = submit_request(
            stack, person, flow="db-read", target="db-read", seconds=4, reason="check a report"
        )
        assert response.status == 200 and not response.body
        card = approval_card_for(stack, person)
        request_id = uuid.UUID(request_id_on(card))
        assert not _is_member(db_role_server, person.email)

        assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
        dm_to(stack, person, "You now have")
        assert _is_member(db_role_server, person.email), "GRANT ran in PostgreSQL"

        dm_to(stack, person, "expired", timeout=20)
        assert not _is_member(db_role_server, person.email), "REVOKE ran at the end"
        card_update(stack, card, "Access expired")
        with stack.database().session() as session:
            events = session.execute(
                select(AuditEvent.event, AuditEvent.details)
                .where(AuditEvent.request_id == request_id)
                .order_by(AuditEvent.seq)
            ).all()
        # (An expiry notice may come between granted and revoking on a 4-second grant.)
        trail = [e for e, _ in events if e != "expiry_notice_sent"]
        assert trail == [*APPROVED_BY_CLICK, "granting", "granted", "revoking", "expired"]
        granted = dict(events)["granted"]
        assert granted["provider"] == "postgres_role"
        assert granted["principal"] == person.email
        assert (granted["role"], granted["member"]) == (DB_ROLE, person.email)
    finally:
        db_role_server.execute(
            sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(person.email))
        )


def _latchkey_bindings(stack: LocalStack, resource: str, role: str) -> list[tuple[list[str], str]]:
    policy = stack.google.policy(resource)  # type: ignore[attr-defined]
    return [
        (list(b.members), b.condition.expression)
        for b in policy.bindings
        if b.role == role and b.condition.title == "latchkey"
    ]


@pytest.mark.parametrize(
    ("target", "resource", "role"),
    [
        ("viewer", f"projects/{GCP_PROJECT}", "roles/viewer"),
        (
            "deployer",
            f"projects/-/serviceAccounts/{GCP_SERVICE_ACCOUNT}",
            "roles/iam.serviceAccountTokenCreator",
        ),
    ],
)
def test_gcp_binding_carries_the_grants_end_and_goes_at_expiry(
    stack: LocalStack, target: str, resource: str, role: str
) -> None:
    person = new_person(stack, iam_user=False)
    submit_request(stack, person, flow="gcp-viewer", target=target, seconds=4, reason="debug")
    card = approval_card_for(stack, person)
    request_id = uuid.UUID(request_id_on(card))
    click(stack, APPROVER, ids.APPROVE_ACTION, card)
    dm_to(stack, person, "You now have")

    with stack.database().session() as session:
        grant = queries.grant_of(session, request_id)
        assert grant is not None
        ends = grant.expires_at
    [(members, expression)] = _latchkey_bindings(stack, resource, role)
    assert members == [f"user:{person.email}"]
    # One end, computed once: Google ends the access by itself at exactly the end Latchkey
    # recorded in the DB and in the trail's `granted` event.
    assert _stamp(expression) == ends
    with stack.database().session() as session:
        [granted] = queries.events_of(session, request_id, ("granted",))
    assert datetime.fromisoformat(granted.details["expires_at"]) == ends
    assert stack.google.policy(resource).version == 3  # type: ignore[attr-defined]

    dm_to(stack, person, "expired", timeout=20)
    assert _latchkey_bindings(stack, resource, role) == []


def test_a_requester_with_no_identity_is_refused_in_the_modal(stack: LocalStack) -> None:
    person = new_person(stack)
    response = submit_request(
        stack, person, flow="mapped-only", target="admins", seconds=4, reason="unmapped ask"
    )
    assert response.status == 200
    errors = response.json()["errors"]
    assert list(errors.values()) == [
        "mapped-only maps no identity for you at aws_iam_group; ask its owner to add you."
    ]
    # Nothing was stored or posted: the person fixes it (or asks) and nobody approves in vain.
    posted = [c for c in stack.slack.calls("chat.postMessage") if "unmapped ask" in str(c.args)]
    assert posted == []


def _grant(stack: LocalStack, person: Person, seconds: int) -> datetime:
    reason = f"overlap {seconds}"
    submit_request(
        stack, person, flow="gcp-viewer", target="viewer", seconds=seconds, reason=reason
    )
    card = stack.slack.wait_for(
        "chat.postMessage",
        lambda a: a.get("channel", "").startswith("C") and reason in json.dumps(a),
        timeout=15,
    )
    request_id = uuid.UUID(request_id_on(card))
    click(stack, APPROVER, ids.APPROVE_ACTION, card)
    wait_until(lambda: _ends_of(stack, request_id) is not None, 15, "the grant to be recorded")
    ends = _ends_of(stack, request_id)
    assert ends is not None
    return ends


def _ends_of(stack: LocalStack, request_id: uuid.UUID) -> datetime | None:
    with stack.database().session() as session:
        grant = queries.grant_of(session, request_id)
        return grant.expires_at if grant else None


def test_overlapping_gcp_grants_keep_the_latest_end(stack: LocalStack) -> None:
    """Two grants of one binding: the shorter one, granted last, must not cut the longer."""
    person = new_person(stack, iam_user=False)
    resource = f"projects/{GCP_PROJECT}"
    long_end = _grant(stack, person, seconds=3600)
    _grant(stack, person, seconds=4)
    [(_, expression)] = _latchkey_bindings(stack, resource, "roles/viewer")
    # The native end is exactly the long grant's.
    assert _stamp(expression) == long_end
    dm_to(stack, person, "expired", timeout=20)
    [(members, after)] = _latchkey_bindings(stack, resource, "roles/viewer")
    assert (members, after) == ([f"user:{person.email}"], expression), "the long grant stays"


def _stamp(expression: str) -> datetime:
    stamp = expression.removeprefix('request.time < timestamp("').removesuffix('")')
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
