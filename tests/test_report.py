"""Access review and who-had-it reports, from grants and the audit trail, on each backend."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from app import lifecycle
from app.audit import AuditLog
from app.audit.report import access_report, who_had, write_report_csv, write_report_text
from app.db import Database
from app.flows.policy import RequestInput, allow
from app.lifecycle import EndCause
from app.models import Decision
from tests.factories import APPROVER, make_flow

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
FLOW = make_flow()


def _grant(
    db: Database,
    audit: AuditLog,
    who: str,
    start: datetime,
    hours: float,
    *,
    break_glass: bool = False,
) -> None:
    ask = RequestInput(flow=FLOW.name, target="admins", duration=timedelta(hours=1), reason="=x")
    with db.session() as session:
        request = lifecycle.submit(
            session=session, audit=audit, flow=FLOW, requester_id=who, ask=ask
        )
        if break_glass:
            lifecycle.break_glass(session=session, audit=audit, request_id=request.id, actor=who)
        else:
            lifecycle.decide(
                session=session,
                audit=audit,
                flow=FLOW,
                request_id=request.id,
                decider_id=APPROVER,
                verdict=allow("listed"),
                decision=Decision.APPROVE,
            )
        lifecycle.activate(
            session=session,
            audit=audit,
            request_id=request.id,
            provider="aws_iam_group",
            principal=f"{who.lower()}@example.com",
            details={},
            now=start,
        )
        lifecycle.begin_revoke(
            session=session,
            audit=audit,
            request_id=request.id,
            cause=EndCause.RELEASED,
            actor=who,
        )
        lifecycle.finish_revoke(
            session=session,
            audit=audit,
            request_id=request.id,
            details={},
            now=start + timedelta(hours=hours),
        )


def test_access_report_counts_time_within_the_period_and_names_approvers(
    database: Database, audit: AuditLog
) -> None:
    _grant(database, audit, "U0SAM", T0, 1)
    _grant(database, audit, "U0SAM", T0 + timedelta(days=1), 0.5, break_glass=True)
    _grant(database, audit, "U0BO", T0 - timedelta(hours=1), 2)  # half inside the period
    _grant(database, audit, "U0OLD", T0 - timedelta(days=5), 1)  # outside: not reported
    with database.session() as session:
        rows = access_report(session, T0, T0 + timedelta(days=7))
    by_person = {r.requester_id: r for r in rows}
    assert set(by_person) == {"U0SAM", "U0BO"}
    sam = by_person["U0SAM"]
    assert sam.grants == 2 and sam.held == timedelta(hours=1, minutes=30)
    assert sam.approvers == {APPROVER} and sam.break_glass == 1
    assert by_person["U0BO"].held == timedelta(hours=1)

    text, csv_out = io.StringIO(), io.StringIO()
    write_report_text(rows, text)
    write_report_csv(rows, csv_out)
    assert "U0SAM (u0sam@example.com) held test-admin/admins: 2 grants, 1h 30m" in text.getvalue()
    assert "BREAK-GLASS x1" in text.getvalue() and "2 people, 3 grants." in text.getvalue()
    assert "U0SAM,u0sam@example.com,test-admin,admins,2,5400,U0APPROVER1,1,0" in csv_out.getvalue()


def test_who_had_a_target_at_a_moment(database: Database, audit: AuditLog) -> None:
    _grant(database, audit, "U0SAM", T0, 1)
    _grant(database, audit, "U0BO", T0 + timedelta(minutes=30), 1)
    with database.session() as session:
        at_45 = who_had(session, "admins", T0 + timedelta(minutes=45))
        at_80 = who_had(session, "admins", T0 + timedelta(minutes=80))
        before = who_had(session, "admins", T0 - timedelta(minutes=1))
        other = who_had(session, "readonly", T0 + timedelta(minutes=45))
    assert {h.requester_id for h in at_45} == {"U0SAM", "U0BO"}
    assert [h.requester_id for h in at_80] == ["U0BO"]
    assert before == [] and other == []
