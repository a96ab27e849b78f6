"""Access review and who-had-it reports, from grants and the audit trail, on each backend."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from app import lifecycle
from app.audit import AuditLog
from app.audit.report import (
    access_report,
    who_had,
    write_report_csv,
    write_report_text,
    write_who_csv,
    write_who_text,
)
from app.db import Database, utcnow
from app.flows.policy import RequestInput, allow
from app.lifecycle import EndCause
from app.models import Decision
from tests import factories
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
    end: bool = True,
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
        factories.activate(
            session=session,
            audit=audit,
            request_id=request.id,
            provider="aws_iam_group",
            principal=f"{who.lower()}@example.com",
            details={},
            now=start,
        )
        if not end:
            return
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


def test_who_had_shows_a_live_grants_real_end_not_now(database: Database, audit: AuditLog) -> None:
    started = utcnow() - timedelta(minutes=10)
    _grant(database, audit, "U0SAM", started, 1, end=False)  # a 1-hour grant, still active
    _grant(database, audit, "U0BO", started, 0.1)  # ended 6 minutes after it began
    with database.session() as session:
        holders = who_had(session, "admins", started + timedelta(minutes=5))
        overdue_check = who_had(session, "admins", utcnow() - timedelta(seconds=1))
    by_person = {h.requester_id: h for h in holders}
    sam, bo = by_person["U0SAM"], by_person["U0BO"]
    assert sam.live and sam.end == started + timedelta(hours=1)  # its expires_at
    assert not bo.live and bo.end == started + timedelta(minutes=6)
    assert [h.requester_id for h in overdue_check] == ["U0SAM"]

    text, csv_out = io.StringIO(), io.StringIO()
    write_who_text(holders, "admins", started, text)
    write_who_csv(holders, csv_out)
    expires = started + timedelta(hours=1)
    assert f"active, expires {expires:%Y-%m-%d %H:%M:%S}" in text.getvalue()
    assert f"until {started + timedelta(minutes=6):%Y-%m-%d %H:%M:%S}" in text.getvalue()
    rows = csv_out.getvalue().splitlines()
    assert rows[0] == "requester,principal,flow,start,end,live,request_id"
    assert any(
        r.startswith(
            f"U0SAM,u0sam@example.com,test-admin,{started.isoformat()},{expires.isoformat()},yes,"
        )
        for r in rows
    )


def test_who_had_keeps_a_grant_past_its_end_until_it_is_taken_back(
    database: Database, audit: AuditLog
) -> None:
    started = utcnow() - timedelta(hours=2)
    _grant(database, audit, "U0SAM", started, 1, end=False)  # expired an hour ago, not revoked
    with database.session() as session:
        holders = who_had(session, "admins", utcnow() - timedelta(minutes=1))
    assert [h.requester_id for h in holders] == ["U0SAM"] and holders[0].live
    text = io.StringIO()
    write_who_text(holders, "admins", utcnow(), text)
    assert "not yet taken back" in text.getvalue()
