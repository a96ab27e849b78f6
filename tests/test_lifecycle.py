"""The state machine on each backend: compare-and-set, audit in the same transaction."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from app import lifecycle, queries
from app.audit import AuditLog
from app.db import Database, utcnow
from app.flows.loader import FlowRegistry
from app.flows.policy import RequestInput, allow, refuse
from app.lifecycle import EndCause
from app.models import AccessRequest, Approval, AuditEvent, Decision, Grant, RequestStatus
from tests import factories
from tests.factories import APPROVER, REQUESTER, SECOND_APPROVER, make_flow

S = RequestStatus


def _submit(db: Database, audit: AuditLog, flows: FlowRegistry, seconds: int = 4) -> AccessRequest:
    ask = RequestInput(
        flow="test-admin", target="admins", duration=timedelta(seconds=seconds), reason="fix prod"
    )
    with db.session() as session:
        return lifecycle.submit(
            session=session,
            audit=audit,
            flow=flows.get("test-admin").flow,
            requester_id=REQUESTER,
            ask=ask,
        )


def _events(db: Database) -> list[str]:
    with db.session() as session:
        return list(session.execute(select(AuditEvent.event).order_by(AuditEvent.seq)).scalars())


def _approve(
    db: Database,
    audit: AuditLog,
    request: AccessRequest,
    who: str = APPROVER,
    verdict=None,
    flow=None,
    duration=None,
):
    with db.session() as session:
        return lifecycle.decide(
            session=session,
            flow=flow or make_flow(),
            duration=duration,
            audit=audit,
            request_id=request.id,
            decider_id=who,
            verdict=allow("ok") if verdict is None else verdict,
            decision=Decision.APPROVE,
        )


def test_approve_moves_pending_to_approved_once(
    database: Database, audit: AuditLog, flows: FlowRegistry
) -> None:
    request = _submit(database, audit, flows)
    first = _approve(database, audit, request)
    again = _approve(database, audit, request, who=SECOND_APPROVER)
    assert first.won and first.request.status == S.APPROVED
    assert not again.won and "already approved" in again.refusal
    assert _events(database) == ["requested", "approved"]


def test_refused_decision_is_audited_and_changes_nothing(
    database: Database, audit: AuditLog, flows: FlowRegistry
) -> None:
    request = _submit(database, audit, flows)
    outcome = _approve(
        database,
        audit,
        request,
        who=REQUESTER,
        verdict=refuse("You can't approve your own request."),
    )
    assert not outcome.won and "own request" in outcome.refusal
    with database.session() as session:
        assert session.get(AccessRequest, request.id).status == S.PENDING
        assert session.execute(select(func.count()).select_from(Approval)).scalar_one() == 0
    assert _events(database) == ["requested", "approve_refused"]


def test_concurrent_approvals_have_one_winner(
    database: Database, audit: AuditLog, flows: FlowRegistry
) -> None:
    request = _submit(database, audit, flows)
    outcomes: list = []
    barrier = threading.Barrier(6)

    def click(who: str) -> None:
        db = Database(database.url)
        barrier.wait()
        outcomes.append(_approve(db, audit, request, who=who))
        db.dispose()

    threads = [threading.Thread(target=click, args=(f"U0APPROVER{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(o.won for o in outcomes) == 1
    assert _events(database).count("approved") == 1
    with database.session() as session:
        assert session.execute(select(func.count()).select_from(Approval)).scalar_one() == 1


def test_grant_then_expire_with_timed_revoke_after_extension_a_noop(
    database: Database, audit: AuditLog, flows: FlowRegistry
) -> None:
    request = _submit(database, audit, flows, seconds=4)
    _approve(database, audit, request)
    now = utcnow()
    with database.session() as session:
        grant = factories.activate(
            session=session,
            audit=audit,
            request_id=request.id,
            provider="aws_iam_group",
            principal="p",
            details={},
            now=now,
        )
    assert grant.expires_at == now + timedelta(seconds=4)
    with database.session() as session:
        early = lifecycle.begin_revoke(
            session=session,
            audit=audit,
            request_id=request.id,
            cause=EndCause.EXPIRED,
            actor="latchkey",
            now=now + timedelta(seconds=1),
        )
    assert early is None  # not due yet: a stale timed revoke must not end access
    later = now + timedelta(seconds=5)
    with database.session() as session:
        assert queries.due_for_expiry(session, later) == [request.id]
        assert (
            lifecycle.begin_revoke(
                session=session,
                audit=audit,
                request_id=request.id,
                cause=EndCause.EXPIRED,
                actor="latchkey",
                now=later,
            )
            is not None
        )
    with database.session() as session:
        lifecycle.finish_revoke(session=session, audit=audit, request_id=request.id, details={})
        assert session.get(AccessRequest, request.id).status == S.EXPIRED
        assert session.get(Grant, grant.id).ended_at is not None
    assert _events(database) == [
        "requested",
        "approved",
        "granting",
        "granted",
        "revoking",
        "expired",
    ]
    with database.session() as session:
        assert audit.verify(session).ok


def _active(
    database: Database,
    audit: AuditLog,
    flows: FlowRegistry,
    now: datetime,
    grants: list[tuple[int, str | None]],
) -> list[Grant]:
    """Requests approved and active for one principal: (seconds, resource) each."""
    made = []
    for seconds, resource in grants:
        request = _submit(database, audit, flows, seconds=seconds)
        _approve(database, audit, request)
        with database.session() as session:
            grant = factories.activate(
                session=session,
                audit=audit,
                request_id=request.id,
                provider="aws_iam_group",
                principal="p",
                details={},
                now=now,
                resource=resource,
            )
            assert grant is not None
            made.append(grant)
    return made


def test_overlapping_grant_covers_the_same_access(
    database: Database, audit: AuditLog, flows: FlowRegistry
) -> None:
    now = utcnow()
    grants = _active(database, audit, flows, now, [(4, None), (6, None)])
    with database.session() as session:
        covering = queries.covering_grants(session, grants[0], now + timedelta(seconds=5))
    assert [g.id for g in covering] == [grants[1].id]
    with database.session() as session:
        assert queries.covering_grants(session, grants[1], now + timedelta(seconds=5)) == []


@pytest.mark.parametrize(
    ("resources", "overlap"),
    [
        (("group/latchkey-admins", "group/latchkey-admins"), True),
        (("group/latchkey-admins", "group/latchkey-readonly"), False),
    ],
)
def test_overlap_is_the_same_resource_not_the_same_target_name(
    database: Database,
    audit: AuditLog,
    flows: FlowRegistry,
    resources: tuple[str, str],
    overlap: bool,
) -> None:
    """Two flows may name their targets alike and grant different groups (or the reverse):
    only the resource at the provider decides whether one grant covers the other."""
    now = utcnow()
    grants = _active(database, audit, flows, now, [(6, r) for r in resources])
    with database.session() as session:
        covering = queries.covering_grants(session, grants[0], now + timedelta(seconds=1))
        latest = queries.latest_live_end(
            session, "aws_iam_group", resources[1], "p", now + timedelta(seconds=1)
        )
    assert [g.id for g in covering] == ([grants[1].id] if overlap else [])
    assert latest == grants[1].expires_at


def test_quorum_of_two_needs_two_distinct_approvers(
    database: Database, audit: AuditLog, flows: FlowRegistry
) -> None:
    flow = make_flow(approvals_required=2)
    request = _submit(database, audit, flows)
    first = _approve(database, audit, request, flow=flow)
    assert first.recorded and first.quorum.progress == f"1 of 2 approvals: <@{APPROVER}>"
    again = _approve(database, audit, request, flow=flow)  # the same person cannot count twice
    assert again.refusal == "You have already decided on this request."
    second = _approve(database, audit, request, who=SECOND_APPROVER, flow=flow)
    assert second.won and second.request.status == S.APPROVED
    assert _events(database) == ["requested", "approval_recorded", "approved"]


def test_self_approval_counts_only_when_the_flow_allows_it(
    database: Database, audit: AuditLog, flows: FlowRegistry
) -> None:
    request = _submit(database, audit, flows)
    strict = make_flow(approvals_required=2)
    lenient = make_flow(approvals_required=2, allow_self_approval=True)
    # Even with an allowing verdict, the requester's approval does not count under `strict`.
    assert _approve(database, audit, request, who=REQUESTER, flow=strict).quorum.approvers == ()
    assert _approve(database, audit, request, who=APPROVER, flow=lenient).won


def test_approver_may_shorten_never_lengthen(
    database: Database, audit: AuditLog, flows: FlowRegistry
) -> None:
    request = _submit(database, audit, flows, seconds=6)
    longer = _approve(database, audit, request, duration=timedelta(hours=1))
    assert longer.refusal == "You can approve for less time than asked, never more."
    shorter = _approve(database, audit, request, duration=timedelta(seconds=4))
    assert shorter.won and shorter.request.duration == timedelta(seconds=4)
    with database.session() as session:
        grant = factories.activate(
            session=session,
            audit=audit,
            request_id=request.id,
            provider="aws_iam_group",
            principal="p",
            details={},
            now=utcnow(),
        )
    assert grant.expires_at - grant.granted_at == timedelta(seconds=4)


def test_one_deny_ends_a_quorum_request(
    database: Database, audit: AuditLog, flows: FlowRegistry
) -> None:
    flow = make_flow(approvals_required=2)
    request = _submit(database, audit, flows)
    _approve(database, audit, request, flow=flow)
    with database.session() as session:
        denied = lifecycle.decide(
            session=session,
            audit=audit,
            flow=flow,
            request_id=request.id,
            decider_id=SECOND_APPROVER,
            verdict=allow("ok"),
            decision=Decision.DENY,
        )
    assert denied.won and denied.request.status == S.DENIED
