"""Reconciliation on a budget, counted at the network edge: AWS through a moto server behind
the fault proxy, which counts every call by action. A real DB on each backend, real Redis
for the pass lock and cursor.

IAM users and memberships are seeded in moto's own state (hundreds of HTTP calls would
only slow the test); every call Latchkey makes goes over HTTP through the proxy.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from moto.iam.models import iam_backends
from redis import Redis
from sqlalchemy import select

from app import lifecycle
from app.audit import AuditLog
from app.config import Settings
from app.db import Database, utcnow
from app.flows.loader import load_flows
from app.flows.policy import RequestInput
from app.flows.schema import AwsIamGroupTarget
from app.models import AuditEvent, RequestStatus
from app.providers.aws_iam import AwsIamGroupProvider
from app.providers.registry import ProviderRegistry
from app.reconcile import CURSOR, LOCK, reconcile
from app.runtime import Runtime
from app.testing.aws_faults import AwsFaultProxy
from app.testing.moto import client, moto_server
from tests import factories
from tests.factories import REQUESTER, grant_row, write_flow

ACCOUNT = "123456789012"  # moto's default account
GROUPS = 4
_numbers = itertools.count(1)


@dataclass
class Aws:
    proxy: AwsFaultProxy
    iam: Any  # a boto3 IAM client through the proxy

    @property
    def backend(self) -> Any:
        return iam_backends[ACCOUNT]["global"]

    def members(self, group: str) -> set[str]:
        return {u.name for u in self.backend.get_group(group).users}


@pytest.fixture(scope="module")
def aws() -> Iterator[Aws]:
    with moto_server() as endpoint:
        proxy = AwsFaultProxy(endpoint)
        proxy.start()
        try:
            yield Aws(proxy, client("iam", proxy.url))
        finally:
            proxy.stop()


@dataclass
class Estate:
    rt: Runtime
    aws: Aws
    targets: list[AwsIamGroupTarget]

    def seed(self, per_group: int) -> None:
        """`per_group` live grants in each group, each with its member at moto."""
        with self.rt.db.session() as session:
            for target in self.targets:
                for i in range(per_group):
                    user = f"{target.group_name}-u{i}"
                    self.aws.backend.create_user("us-east-1", user)
                    self.aws.backend.add_user_to_group(target.group_name, user)
                    grant_row(
                        session,
                        status=RequestStatus.ACTIVE,
                        expires_at=utcnow() + timedelta(hours=1),
                        flow="groups",
                        target=target.name,
                        principal=user,
                        reason="on call",
                        resource=target.resource,
                    )

    def granted(self, target: AwsIamGroupTarget, user: str) -> uuid.UUID:
        """A grant approved and activated through the state machine, its member at moto."""
        flow = self.rt.flows.get("groups")
        assert flow is not None
        self.aws.backend.create_user("us-east-1", user)
        self.aws.backend.add_user_to_group(target.group_name, user)
        ask = RequestInput(
            flow="groups", target=target.name, duration=timedelta(hours=1), reason="on call"
        )
        with self.rt.db.session() as session:
            request = lifecycle.submit(
                session=session,
                audit=self.rt.audit,
                flow=flow.flow,
                requester_id=REQUESTER,
                ask=ask,
            )
            lifecycle.auto_decide(
                session=session,
                audit=self.rt.audit,
                request_id=request.id,
                approve=True,
                reason="test",
            )
            factories.activate(
                session=session,
                audit=self.rt.audit,
                request_id=request.id,
                provider="aws_iam_group",
                principal=user,
                resource=target.resource,
                details={},
            )
        return request.id

    def drift(self, request_id: uuid.UUID) -> list[tuple[str, Any]]:
        with self.rt.db.session() as session:
            events = session.execute(
                select(AuditEvent)
                .where(
                    AuditEvent.request_id == request_id,  # type: ignore[arg-type]
                    AuditEvent.event.startswith("drift_"),  # type: ignore[attr-defined]
                )
                .order_by(AuditEvent.seq)  # type: ignore[arg-type]
            ).scalars()
            return [(e.event, e.details.get("drift")) for e in events]


def _estate(
    tmp_path: Path, database: Database, audit: AuditLog, aws: Aws, redis_url: str, budget: int
) -> Estate:
    n = next(_numbers)
    targets = [AwsIamGroupTarget(name=f"g{g}", group_name=f"budget-{n}-{g}") for g in range(GROUPS)]
    for target in targets:
        aws.backend.create_group(target.group_name)
    flows_dir = tmp_path / "budget-flows"
    flows_dir.mkdir()
    write_flow(flows_dir, name="groups", targets=f"({', '.join(repr(t) for t in targets)},)")
    settings = Settings(database_url=database.url, redis_url=redis_url, reconcile_budget=budget)  # type: ignore[call-arg]
    Redis.from_url(redis_url).delete(LOCK, CURSOR)  # no pass or cursor left by another test
    rt = Runtime(
        settings=settings,
        db=database,
        flows=load_flows(flows_dir),
        audit=audit,
        providers=ProviderRegistry({"aws_iam_group": lambda: AwsIamGroupProvider(aws.iam)}),
    )
    return Estate(rt, aws, targets)


@pytest.fixture
def estate(tmp_path: Path, database: Database, audit: AuditLog, aws: Aws, redis_url: str) -> Estate:
    return _estate(tmp_path, database, audit, aws, redis_url, budget=500)


@pytest.fixture
def estate_of_one_read(
    tmp_path: Path, database: Database, audit: AuditLog, aws: Aws, redis_url: str
) -> Estate:
    return _estate(tmp_path, database, audit, aws, redis_url, budget=1)


def test_a_pass_reads_each_group_once_not_each_grant(estate: Estate) -> None:
    estate.seed(per_group=50)
    proxy = estate.aws.proxy
    before = proxy.seen("GetGroup"), proxy.seen("ListGroupsForUser")

    counts = reconcile(estate.rt)

    assert counts["checked"] == 200 and counts["reapplied"] == 0 and counts["errors"] == 0
    assert proxy.seen("GetGroup") - before[0] == GROUPS
    assert proxy.seen("ListGroupsForUser") - before[1] == 0
    assert counts["provider_reads"] == GROUPS and counts["deferred"] == 0


def test_a_budget_spreads_the_groups_over_passes_and_every_one_is_repaired_in_time(
    estate_of_one_read: Estate,
) -> None:
    estate = estate_of_one_read
    estate.seed(per_group=10)
    # In every group, one member a grant holds is removed behind Latchkey's back.
    removed = {}
    for target in estate.targets:
        user = f"{target.group_name}-kept"
        removed[user] = (target, estate.granted(target, user))
        estate.aws.backend.remove_user_from_group(target.group_name, user)
    proxy = estate.aws.proxy

    restored_after = []
    for _ in range(GROUPS):  # the promise: every group read within ceil(4 reads / 1) passes
        before = proxy.seen("GetGroup")
        counts = reconcile(estate.rt)
        assert proxy.seen("GetGroup") - before == 1  # the budget holds
        assert counts["provider_reads"] == 1 and counts["deferred"] == GROUPS - 1
        restored_after.append(
            sum(user in estate.aws.members(t.group_name) for user, (t, _) in removed.items())
        )

    # One more group each pass, none read twice before all were read once.
    assert restored_after == [1, 2, 3, 4]
    for _user, (_target, request_id) in removed.items():
        assert estate.drift(request_id) == [
            ("drift_found", "missing"),
            ("drift_repaired", "missing"),
        ]


def test_a_pass_that_finds_the_last_one_running_does_nothing(estate: Estate) -> None:
    estate.seed(per_group=5)
    proxy = estate.aws.proxy
    proxy.delay("GetGroup", 0.5)  # a slow IAM: the first pass takes about two seconds
    try:
        start = proxy.seen("GetGroup")
        first: dict[str, int] = {}
        running = threading.Thread(target=lambda: first.update(reconcile(estate.rt)))
        running.start()
        deadline = time.monotonic() + 10
        while proxy.seen("GetGroup") == start and time.monotonic() < deadline:
            time.sleep(0.02)

        second = reconcile(estate.rt)
        seen_by_then = proxy.seen("GetGroup")
        running.join(20)
    finally:
        proxy.heal("GetGroup")

    assert second["skipped"] == 1 and second["provider_reads"] == 0
    assert seen_by_then - start < GROUPS  # the second pass read nothing while the first ran
    assert first["provider_reads"] == GROUPS and first["skipped"] == 0
    assert proxy.seen("GetGroup") - start == GROUPS
    # The lock goes with the pass: the next one runs.
    assert reconcile(estate.rt)["provider_reads"] == GROUPS
