"""What the database says, asked at every scrape: every replica reports the same truth.

Each figure is one indexed query: requests by status (ix_access_request_status), overdue
grants from the open grants by end (ix_grant_open_expires_at), the small heartbeat and audit_delivery tables, and max(seq) of
the audit trail (its primary key). A database that does not answer gives
`latchkey_database_up 0` and nothing else from here; the process's own counters are still
served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlmodel import Session

from app import queries
from app.audit.sink import SINK
from app.config import Settings
from app.db import Database, utcnow
from app.models import (
    AccessRequest,
    AuditDelivery,
    AuditEvent,
    Grant,
    Heartbeat,
    RequestStatus,
)

log = logging.getLogger(__name__)

# Kinds whose silence matters: reported (as +Inf) even before their first heartbeat.
WATCHED_KINDS = ("worker", "beat")


class DatabaseCollector(Collector):
    """Gauges computed from the DB at scrape time."""

    def __init__(
        self, db: Database, settings: Settings, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.db = db
        self.webhook = settings.audit_webhook_url is not None
        self.clock = clock

    def describe(self) -> Iterable[Metric]:
        return []  # nothing at registration: the DB is asked at scrape time only

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "latchkey_database_up", "1 when the metrics' database queries answered, else 0."
        )
        try:
            with self.db.session() as session:
                families = list(self.figures(session, now=self.clock()))
        except Exception as exc:
            log.warning("metrics: the database did not answer (%s)", type(exc).__name__)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *families]

    def figures(self, session: Session, *, now: datetime) -> Iterable[Metric]:
        active = GaugeMetricFamily(
            "latchkey_grants_active",
            "Grants whose request is active (access held, not yet ending), by flow and provider.",
            labels=["flow", "provider"],
        )
        for flow, provider, count in session.execute(
            select(AccessRequest.flow, Grant.provider, func.count())
            .join(Grant, Grant.request_id == AccessRequest.id)  # type: ignore[arg-type]
            .where(AccessRequest.status == RequestStatus.ACTIVE)  # type: ignore[arg-type]
            .group_by(AccessRequest.flow, Grant.provider)
        ):
            active.add_metric([flow, provider], count)
        yield active

        pending = GaugeMetricFamily(
            "latchkey_requests_pending",
            "Requests (and extension requests) waiting for a decision, by flow.",
            labels=["flow"],
        )
        for flow, count in session.execute(
            select(AccessRequest.flow, func.count())
            .where(AccessRequest.status == RequestStatus.PENDING)  # type: ignore[arg-type]
            .group_by(AccessRequest.flow)
        ):
            pending.add_metric([flow], count)
        yield pending

        # The same question as /healthz's overdue_grants (app/health.py).
        count, oldest = queries.overdue(session, now)
        yield GaugeMetricFamily(
            "latchkey_grants_overdue",
            "Grants past their end whose access is not yet revoked (request active, "
            "revoking or revoke_failed).",
            value=count,
        )
        yield GaugeMetricFamily(
            "latchkey_grants_overdue_oldest_seconds",
            "How long past its end the oldest overdue grant is (0 when none is).",
            value=0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()),
        )

        ages = GaugeMetricFamily(
            "latchkey_heartbeat_age_seconds",
            "Seconds since the newest heartbeat of each kind of process (worker, beat); "
            "+Inf when none was ever written.",
            labels=["kind"],
        )
        newest = dict(
            session.execute(
                select(Heartbeat.kind, func.max(Heartbeat.at)).group_by(Heartbeat.kind)
            ).all()
        )
        for kind in sorted(set(WATCHED_KINDS) | set(newest)):
            at = newest.get(kind)
            ages.add_metric(
                [kind], float("inf") if at is None else max(0.0, (now - at).total_seconds())
            )
        yield ages

        if self.webhook:
            last_seq = session.execute(select(func.max(AuditEvent.seq))).scalar() or 0
            delivered = session.get(AuditDelivery, SINK)
            yield GaugeMetricFamily(
                "latchkey_audit_webhook_lag_events",
                "Audit events not yet delivered to the SIEM webhook (newest seq - last delivered).",
                value=max(0, last_seq - (delivered.last_seq if delivered else 0)),
            )
