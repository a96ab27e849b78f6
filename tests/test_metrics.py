"""Metrics tell the truth: the DB's figures at scrape time (SQLite, and PostgreSQL when
configured), the lifecycle's counters and histograms, Slack errors, and counters of several
processes added up through the multiprocess directory."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from slack_sdk.errors import SlackApiError

from app import lifecycle
from app.audit import AuditLog
from app.audit.sink import SINK
from app.config import Settings
from app.db import Database, utcnow
from app.flows.loader import FlowRegistry
from app.flows.policy import RequestInput, allow
from app.lifecycle import EndCause
from app.metrics import exposition, process
from app.metrics.db import DatabaseCollector
from app.models import AuditDelivery, Decision, Heartbeat
from app.runtime import build_slack_client
from app.testing.slack_standin import SlackStandIn
from app.worker.heartbeat import write_heartbeat
from tests import factories
from tests.factories import REQUESTER, make_flow

PROVIDER = "aws_iam_group"
WEBHOOK = "https://siem.example.com/latchkey"


def _settings(**values: str) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _registry(db: Database, now: datetime, **settings: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(db, _settings(**settings), clock=lambda: now))
    return registry


def _submit(db: Database, audit: AuditLog, flows: FlowRegistry, seconds: int = 4):  # type: ignore[no-untyped-def]
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


def _approve(db: Database, audit: AuditLog, request_id) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        outcome = lifecycle.decide(
            session=session,
            audit=audit,
            flow=make_flow(),
            request_id=request_id,
            decider_id=factories.APPROVER,
            verdict=allow("an approver of the flow"),
            decision=Decision.APPROVE,
        )
    assert outcome.won


def _active(db: Database, audit: AuditLog, flows: FlowRegistry, now: datetime, seconds: int = 4):  # type: ignore[no-untyped-def]
    request = _submit(db, audit, flows, seconds)
    _approve(db, audit, request.id)
    with db.session() as session:
        grant = factories.activate(
            session=session,
            audit=audit,
            request_id=request.id,
            provider=PROVIDER,
            principal="requester@example.com",
            details={},
            now=now,
        )
    assert grant is not None
    return request, grant


def _own(name: str, labels: dict[str, str] | None = None) -> float:
    """This process's own value of a per-process metric (0 when never recorded)."""
    return process.metrics().registry.get_sample_value(name, labels or {}) or 0.0


def test_active_grant_and_pending_request_show_by_flow_and_provider(
    database: Database, audit: AuditLog, flows: FlowRegistry
) -> None:
    now = utcnow()
    _active(database, audit, flows, now, seconds=3600)
    _submit(database, audit, flows)  # a second request, still pending

    registry = _registry(database, now + timedelta(seconds=1))
    labels = {"flow": "test-admin", "provider": PROVIDER}
    assert registry.get_sample_value("latchkey_grants_active", labels) == 1
    assert registry.get_sample_value("latchkey_requests_pending", {"flow": "test-admin"}) == 1
    assert registry.get_sample_value("latchkey_grants_overdue") == 0
    assert registry.get_sample_value("latchkey_grants_overdue_oldest_seconds") == 0
    assert registry.get_sample_value("latchkey_database_up") == 1
    # No webhook configured: no lag to report.
    assert registry.get_sample_value("latchkey_audit_webhook_lag_events") is None


def test_grant_past_its_end_is_overdue_until_revoked(
    database: Database, audit: AuditLog, flows: FlowRegistry
) -> None:
    now = utcnow()
    request, _ = _active(database, audit, flows, now, seconds=4)
    later = now + timedelta(seconds=64)

    registry = _registry(database, later)
    assert registry.get_sample_value("latchkey_grants_overdue") == 1
    assert registry.get_sample_value("latchkey_grants_overdue_oldest_seconds") == 60
    # revoking and revoke_failed still hold the access: still overdue
    with database.session() as session:
        lifecycle.begin_revoke(
            session=session,
            audit=audit,
            request_id=request.id,
            cause=EndCause.EXPIRED,
            actor="latchkey",
            now=later,
        )
    assert registry.get_sample_value("latchkey_grants_overdue") == 1
    labels = {"flow": "test-admin", "provider": PROVIDER}
    assert registry.get_sample_value("latchkey_grants_active", labels) is None  # not active

    with database.session() as session:
        lifecycle.finish_revoke(session=session, audit=audit, request_id=request.id, details={})
    assert registry.get_sample_value("latchkey_grants_overdue") == 0


def test_webhook_lag_counts_events_not_yet_delivered(
    database: Database, audit: AuditLog, flows: FlowRegistry
) -> None:
    now = utcnow()
    _submit(database, audit, flows)
    _submit(database, audit, flows)  # two `requested` events: seq 1 and 2
    registry = _registry(
        database,
        now,
        LATCHKEY_AUDIT_WEBHOOK_URL=WEBHOOK,
        LATCHKEY_AUDIT_WEBHOOK_SECRET="siem-secret-0123456789",
    )
    assert registry.get_sample_value("latchkey_audit_webhook_lag_events") == 2  # none sent yet

    with database.session() as session:
        session.add(AuditDelivery(sink=SINK, last_seq=1))
    assert registry.get_sample_value("latchkey_audit_webhook_lag_events") == 1

    with database.session() as session:
        session.get(AuditDelivery, SINK).last_seq = 2  # type: ignore[union-attr]
    assert registry.get_sample_value("latchkey_audit_webhook_lag_events") == 0


def test_heartbeat_age_by_kind_and_infinite_when_never_written(database: Database) -> None:
    now = utcnow()
    registry = _registry(database, now)
    assert registry.get_sample_value("latchkey_heartbeat_age_seconds", {"kind": "worker"}) == float(
        "inf"
    )
    write_heartbeat(database, process="w1@host", kind="worker", now=now - timedelta(seconds=50))
    write_heartbeat(database, process="w2@host", kind="worker", now=now - timedelta(seconds=3))
    write_heartbeat(database, process="beat@host", kind="beat", now=now - timedelta(seconds=7))
    # The newest heartbeat of each kind counts: a replaced worker is not silence.
    assert registry.get_sample_value("latchkey_heartbeat_age_seconds", {"kind": "worker"}) == 3
    assert registry.get_sample_value("latchkey_heartbeat_age_seconds", {"kind": "beat"}) == 7
    with database.session() as session:
        assert session.get(Heartbeat, "beat@host") is not None


def test_a_database_that_does_not_answer_is_reported_not_raised(tmp_path: Path) -> None:
    broken = Database(f"sqlite:///{tmp_path / 'missing' / 'nowhere.db'}")
    registry = _registry(broken, utcnow())
    text = generate_latest(registry).decode()
    assert "latchkey_database_up 0.0" in text
    assert "latchkey_grants_active" not in text


def test_lifecycle_counts_requests_and_observes_access_and_revoke_lag(
    database: Database, audit: AuditLog, flows: FlowRegistry
) -> None:
    submitted = {"flow": "test-admin", "outcome": "submitted"}
    approved = {"flow": "test-admin", "outcome": "approved"}
    timing = {"flow": "test-admin", "provider": PROVIDER}
    before = {
        "submitted": _own("latchkey_requests_total", submitted),
        "approved": _own("latchkey_requests_total", approved),
        "access": _own("latchkey_approve_to_access_seconds_count", timing),
        "lag": _own("latchkey_revoke_lag_seconds_count", timing),
        "lag_sum": _own("latchkey_revoke_lag_seconds_sum", timing),
    }
    now = utcnow()
    request, grant = _active(database, audit, flows, now, seconds=4)
    assert _own("latchkey_requests_total", submitted) == before["submitted"] + 1
    assert _own("latchkey_requests_total", approved) == before["approved"] + 1
    assert _own("latchkey_approve_to_access_seconds_count", timing) == before["access"] + 1

    ended = grant.expires_at + timedelta(seconds=2)
    with database.session() as session:
        lifecycle.begin_revoke(
            session=session,
            audit=audit,
            request_id=request.id,
            cause=EndCause.EXPIRED,
            actor="latchkey",
            now=ended,
        )
        lifecycle.finish_revoke(
            session=session, audit=audit, request_id=request.id, details={}, now=ended
        )
    assert _own("latchkey_revoke_lag_seconds_count", timing) == before["lag"] + 1
    assert _own("latchkey_revoke_lag_seconds_sum", timing) == pytest.approx(before["lag_sum"] + 2)


def test_released_grant_is_no_revoke_lag(
    database: Database, audit: AuditLog, flows: FlowRegistry
) -> None:
    timing = {"flow": "test-admin", "provider": PROVIDER}
    request, _ = _active(database, audit, flows, utcnow(), seconds=3600)
    before = _own("latchkey_revoke_lag_seconds_count", timing)
    with database.session() as session:
        lifecycle.begin_revoke(
            session=session,
            audit=audit,
            request_id=request.id,
            cause=EndCause.RELEASED,
            actor=REQUESTER,
        )
        lifecycle.finish_revoke(session=session, audit=audit, request_id=request.id, details={})
    assert _own("latchkey_revoke_lag_seconds_count", timing) == before  # ended early


def test_slack_errors_and_rate_limits_are_counted_by_method() -> None:
    with SlackStandIn(token="xoxb-metrics-test") as standin:
        client = build_slack_client(
            _settings(SLACK_BOT_TOKEN="xoxb-metrics-test", SLACK_API_URL=standin.base_url)
        )
        limited = {"method": "chat.postMessage"}
        missing = {"method": "users.info", "error": "user_not_found"}
        before = (
            _own("latchkey_slack_rate_limited_total", limited),
            _own("latchkey_slack_api_errors_total", missing),
        )
        standin.fail_next("chat.postMessage", retry_after=0)
        assert client.chat_postMessage(channel="C0REQUESTS", text="card")["ok"]  # retried
        with pytest.raises(SlackApiError):
            client.users_info(user="U0NOBODY")
        assert _own("latchkey_slack_rate_limited_total", limited) == before[0] + 1
        assert _own("latchkey_slack_api_errors_total", missing) == before[1] + 1


COUNT_IN_A_CHILD = (
    "from app.metrics import process; process.request_outcome('test-admin', 'submitted')"
)


def test_counters_of_several_processes_add_up(
    tmp_path: Path, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = {**os.environ, exposition.ENV: str(directory)}
    for _ in range(2):  # two gunicorn workers, say, each counting one submitted request
        subprocess.run([sys.executable, "-c", COUNT_IN_A_CHILD], env=env, check=True)

    monkeypatch.setenv(exposition.ENV, str(directory))
    registry = exposition.build_registry(database, _settings())
    labels = {"flow": "test-admin", "outcome": "submitted"}
    assert registry.get_sample_value("latchkey_requests_total", labels) == 2
    assert registry.get_sample_value("latchkey_database_up") == 1  # and the DB's figures


def test_web_metrics_dir_is_emptied_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client import values

    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # restored after the test
    given = tmp_path / "given"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"old counts of a previous start")
    monkeypatch.setenv(exposition.ENV, str(given))
    try:
        assert exposition.prepare_web_metrics_dir() == given
        assert list(given.iterdir()) == []
        monkeypatch.delenv(exposition.ENV)
        fresh = exposition.prepare_web_metrics_dir()
        assert fresh.name.startswith(exposition.WEB_PREFIX) and os.environ[exposition.ENV] == str(
            fresh
        )
        exposition.remove_temporary_dir()
        assert not fresh.exists()
    finally:
        process.reset()


def test_worker_metrics_port_setting() -> None:
    assert _settings().worker_metrics_port == 9808
    assert _settings(LATCHKEY_WORKER_METRICS_PORT="0").worker_metrics_port == 0
    with pytest.raises(ValueError, match="LATCHKEY_WORKER_METRICS_PORT"):
        _settings(LATCHKEY_WORKER_METRICS_PORT="70000")
