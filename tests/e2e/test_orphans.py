"""Orphaned access, end to end: a Latchkey binding at Google that no grant accounts for is
found by the beat's reconciliation and removed, while a granted binding stays.

Real web, worker and beat on real Redis; Google through its stand-in; Slack through its
stand-in.
"""

from __future__ import annotations

from sqlalchemy import select

from app.models import AuditEvent
from app.slack import ids
from app.testing.scenes import approval_card_for, click, dm_to, new_person, submit_request
from app.testing.stack import LocalStack, wait_until
from tests.e2e.conftest import GCP_PROJECT
from tests.factories import APPROVER, CHANNEL

PROJECT = f"projects/{GCP_PROJECT}"
LATCHKEY_UNTIL_2099 = {
    "title": "latchkey",
    "description": "Latchkey just-in-time access for user:ghost@example.com",
    "expression": 'request.time < timestamp("2099-01-01T00:00:00Z")',
}


def _viewers(stack: LocalStack) -> list[str]:
    policy = stack.google.policy(PROJECT)  # type: ignore[attr-defined]
    return [m for b in policy.bindings if b.role == "roles/viewer" for m in b.members]


def _orphan_events(stack: LocalStack, principal: str) -> list[AuditEvent]:
    with stack.database().session() as session:
        events = session.execute(
            select(AuditEvent)
            .where(AuditEvent.event.startswith("drift_"))  # type: ignore[attr-defined]
            .order_by(AuditEvent.seq)
        ).scalars()
        return [e for e in events if e.details.get("principal") == principal]


def test_a_latchkey_binding_without_a_grant_is_removed_and_audited(stack: LocalStack) -> None:
    person = new_person(stack, iam_user=False)
    submit_request(stack, person, flow="gcp-viewer", target="viewer", seconds=3600, reason="db")
    card = approval_card_for(stack, person)
    click(stack, APPROVER, ids.APPROVE_ACTION, card)
    dm_to(stack, person, "You now have")
    # A hand-made viewer binding (someone else's condition) is not Latchkey's to judge.
    hours = {"title": "business hours", "expression": "request.time.getHours() < 18"}
    stack.google.put_binding(PROJECT, "roles/viewer", ["user:ops@example.com"], hours)  # type: ignore[attr-defined]

    # What a grant task that lost its activation would leave: Latchkey's binding, no grant.
    stack.google.put_binding(  # type: ignore[attr-defined]
        PROJECT, "roles/viewer", ["user:ghost@example.com"], LATCHKEY_UNTIL_2099
    )
    stack.reconcile_until(
        lambda: "user:ghost@example.com" not in _viewers(stack),
        20,
        "reconciliation to remove the orphaned binding",
    )
    # The audit row is committed just after the provider call that removed the access.
    wait_until(
        lambda: (
            [e.event for e in _orphan_events(stack, "ghost@example.com")]
            == ["drift_found", "drift_repaired"]
        ),
        10,
        "the orphan's drift events",
    )
    found = _orphan_events(stack, "ghost@example.com")[0]
    assert found.request_id is None and found.flow == "gcp-viewer" and found.target == "viewer"
    assert found.details == {
        "drift": "provisioned without a live grant",
        "provider": "gcp_role",
        "principal": "ghost@example.com",
        "resource": f"{PROJECT}/roles/viewer",
    }
    stack.slack.wait_for(
        "chat.postMessage",
        lambda a: (
            a.get("channel") == CHANNEL
            and a.get("text", "").startswith(":warning: Drift: ghost@example.com held viewer")
        ),
    )

    assert f"user:{person.email}" in _viewers(stack)  # granted: untouched
    assert "user:ops@example.com" in _viewers(stack)
    assert _orphan_events(stack, person.email) == []
