"""Reconciliation's orphan pass: access Latchkey made at a provider with no live grant.

A real DB on each backend, AWS through a moto server, Google through the stand-in and
Slack through its stand-in; the access is made at the provider directly, as a grant task
whose activation was lost would leave it.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.audit import AuditLog
from app.config import Settings
from app.db import Database, utcnow
from app.flows.loader import load_flows
from app.flows.schema import AwsIamGroupTarget, AwsRoleTarget, GcpRoleBindingTarget, provider_of
from app.models import AccessRequest, AuditEvent, Grant, RequestStatus
from app.providers.aws_iam import AwsIamGroupProvider
from app.providers.aws_role import AwsRoleProvider
from app.providers.base import GrantSpec
from app.providers.gcp_clients import GcpClients, build_gcp_clients
from app.providers.gcp_role import GcpRoleBindingProvider
from app.providers.registry import ProviderRegistry
from app.reconcile import reconcile
from app.runtime import Runtime
from app.testing.gcp_standin import GcpStandIn
from app.testing.moto import client, moto_server
from app.testing.slack_standin import DEFAULT_TOKEN, SlackStandIn
from tests.factories import CHANNEL, REQUESTER, write_flow

S = RequestStatus
ACCOUNT = "123456789012"  # moto's default account
ORPHAN = "provisioned without a live grant"
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def iam() -> Iterator[Any]:
    with moto_server() as endpoint:
        yield client("iam", endpoint)


@pytest.fixture(scope="module")
def google() -> Iterator[tuple[GcpStandIn, GcpClients]]:
    with GcpStandIn() as standin:
        clients = build_gcp_clients(standin.endpoint, standin.grpc_endpoint)
        yield standin, clients
        clients.close()


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        yield standin


@dataclass
class World:
    """One test's flows, cloud things and runtime (names unique across tests)."""

    rt: Runtime
    iam: Any
    standin: GcpStandIn
    slack: SlackStandIn
    n: int
    shared: AwsIamGroupTarget
    exclusive: AwsIamGroupTarget
    role: AwsRoleTarget
    viewer: GcpRoleBindingTarget

    def user(self, name: str) -> str:
        """An IAM user that exists at moto."""
        user = f"{name}-{self.n}@example.com"
        self.iam.create_user(UserName=user)
        return user

    def provider(self, target: Any) -> Any:
        return self.rt.providers.get(provider_of(target))

    def provision(self, target: Any, principal: str) -> None:
        """Access at the provider, made as Latchkey makes it, with no grant row."""
        end = utcnow() + timedelta(hours=1)
        self.provider(target).grant(GrantSpec(principal, target, end))

    def holds(self, target: Any, principal: str) -> bool:
        return bool(self.provider(target).check(GrantSpec(principal, target, utcnow())))

    def live_grant(
        self, flow: str, target: Any, principal: str, status: RequestStatus = S.ACTIVE
    ) -> uuid.UUID:
        """A request in `status` with its grant row (and its access at the provider)."""
        self.provision(target, principal)
        return self.request(flow, target, status, principal=principal)

    def request(
        self, flow: str, target: Any, status: RequestStatus, principal: str | None = None
    ) -> uuid.UUID:
        with self.rt.db.session() as session:
            request = AccessRequest(
                flow=flow,
                target=target.name,
                requester_id=REQUESTER,
                reason="fix prod",
                requested_seconds=3600,
                status=status,
            )
            session.add(request)
            session.flush()
            if principal is not None:
                session.add(
                    Grant(
                        request_id=request.id,
                        provider=provider_of(target),
                        target=target.name,
                        resource=target.resource,
                        principal=principal,
                        expires_at=utcnow() + timedelta(hours=1),
                    )
                )
            return request.id

    def set_status(self, request_id: uuid.UUID, status: RequestStatus) -> None:
        with self.rt.db.session() as session:
            request = session.get(AccessRequest, request_id)
            assert request is not None
            request.status = status

    def drift(self) -> list[AuditEvent]:
        with self.rt.db.session() as session:
            return list(
                session.execute(
                    select(AuditEvent)
                    .where(AuditEvent.event.startswith("drift_"))  # type: ignore[attr-defined]
                    .order_by(AuditEvent.seq)
                ).scalars()
            )

    def alerts(self) -> list[str]:
        return [
            c.args["text"]
            for c in self.slack.calls("chat.postMessage")
            if c.args.get("channel") == CHANNEL and f"-{self.n}@" in c.args.get("text", "")
        ]


@pytest.fixture
def world(
    tmp_path: Path,
    database: Database,
    audit: AuditLog,
    iam: Any,
    google: tuple[GcpStandIn, GcpClients],
    slack: SlackStandIn,
    redis_url: str,
) -> World:
    n = next(_numbers)
    standin, clients = google
    project = f"projects/orphans-test-{n}"
    standin.add_resource(project)
    iam.create_group(GroupName=f"latchkey-shared-{n}")
    iam.create_group(GroupName=f"latchkey-exclusive-{n}")
    trust = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:RoleSessionName": "${aws:username}"}},
    }
    iam.create_role(
        RoleName=f"ops-{n}",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [trust]}),
    )
    shared = AwsIamGroupTarget(name="shared", group_name=f"latchkey-shared-{n}")
    exclusive = AwsIamGroupTarget(
        name="exclusive", group_name=f"latchkey-exclusive-{n}", exclusive=True
    )
    role = AwsRoleTarget(name="ops", role_arn=f"arn:aws:iam::{ACCOUNT}:role/ops-{n}")
    viewer = GcpRoleBindingTarget(name="viewer", resource_name=project, role="roles/viewer")

    flows_dir = tmp_path / "orphan-flows"
    flows_dir.mkdir()
    write_flow(flows_dir, name="groups", targets=f"({shared!r}, {exclusive!r})")
    write_flow(flows_dir, name="role", targets=f"({role!r},)")
    # Two flows grant the same GCP role on the same project under different target names.
    write_flow(flows_dir, name="gcp", targets=f"({viewer!r},)")
    other = GcpRoleBindingTarget(name="read", resource_name=project, role="roles/viewer")
    write_flow(flows_dir, name="gcp-too", targets=f"({other!r},)")

    providers = ProviderRegistry(
        {
            "aws_iam_group": lambda: AwsIamGroupProvider(iam),
            "aws_role": lambda: AwsRoleProvider(iam),
            "gcp_role": lambda: GcpRoleBindingProvider(clients.projects, clients.folders),
        }
    )
    settings = Settings(
        slack_bot_token=DEFAULT_TOKEN,
        slack_api_url=slack.base_url,
        database_url=database.url,
        redis_url=redis_url,
    )
    rt = Runtime(
        settings=settings,
        db=database,
        flows=load_flows(flows_dir),
        audit=audit,
        providers=providers,
    )
    return World(rt, iam, standin, slack, n, shared, exclusive, role, viewer)


def test_orphans_are_revoked_and_audited_while_granted_access_stays(world: World) -> None:
    w = world
    role_orphan, role_held = w.user("role-orphan"), w.user("role-held")
    w.provision(w.role, role_orphan)
    w.live_grant("role", w.role, role_held)
    w.provision(w.viewer, f"gcp-orphan-{w.n}@example.com")
    # A live grant that names the member with its type is the same member as a bare email.
    w.live_grant("gcp", w.viewer, f"user:gcp-held-{w.n}@example.com")
    w.standin.put_binding(w.viewer.resource_name, "roles/viewer", ["user:cto@example.com"])
    extra, member = w.user("group-extra"), w.user("group-held")
    w.provision(w.exclusive, extra)
    w.live_grant("groups", w.exclusive, member)
    by_hand = w.user("by-hand")
    w.provision(w.shared, by_hand)

    counts = reconcile(w.rt)

    assert counts["orphans_removed"] == 3
    assert counts["errors"] == 0
    assert not w.holds(w.role, role_orphan)
    assert not w.holds(w.viewer, f"gcp-orphan-{w.n}@example.com")
    assert not w.holds(w.exclusive, extra)
    # Granted access, a hand-made binding and a non-exclusive group's member stay.
    assert w.holds(w.role, role_held)
    assert w.holds(w.viewer, f"gcp-held-{w.n}@example.com")
    assert w.holds(w.exclusive, member)
    assert w.holds(w.shared, by_hand)
    policy = w.standin.policy(w.viewer.resource_name)
    assert any(list(b.members) == ["user:cto@example.com"] for b in policy.bindings)

    found = {e.details["principal"]: e for e in w.drift() if e.event == "drift_found"}
    assert sorted(found) == sorted([role_orphan, f"gcp-orphan-{w.n}@example.com", extra])
    gcp = found[f"gcp-orphan-{w.n}@example.com"]
    # Found once, though two flows grant this project's role.
    assert gcp.request_id is None and gcp.flow == "gcp" and gcp.target == "viewer"
    assert gcp.details == {
        "drift": ORPHAN,
        "provider": "gcp_role",
        "principal": f"gcp-orphan-{w.n}@example.com",
        "resource": w.viewer.resource,
    }
    repaired = [e for e in w.drift() if e.event == "drift_repaired"]
    assert len(repaired) == 3
    assert {e.details["action"] for e in repaired} == {"revoked"}
    assert (
        w.alerts().count(
            f":warning: Drift: {extra} held exclusive at the provider with no live grant. "
            "Latchkey removed it."
        )
        == 1
    )
    assert len(w.alerts()) == 3

    again = reconcile(w.rt)
    assert again["orphans_removed"] == 0
    assert len(w.drift()) == 6


@pytest.mark.parametrize("status", [S.APPROVED, S.GRANTING])
def test_a_grant_under_way_is_never_taken_for_an_orphan(
    world: World, status: RequestStatus
) -> None:
    w = world
    principal = f"arriving-{w.n}@example.com"
    # The provider call of a grant being applied has succeeded; its grant row is not yet in.
    request_id = w.request("gcp", w.viewer, status)
    w.provision(w.viewer, principal)

    assert reconcile(w.rt)["orphans_removed"] == 0
    assert w.holds(w.viewer, principal)

    # The activation is lost: the request ends without a grant and the access is an orphan.
    w.set_status(request_id, S.FAILED)
    assert reconcile(w.rt)["orphans_removed"] == 1
    assert not w.holds(w.viewer, principal)


@pytest.mark.parametrize("status", [S.REVOKING, S.REVOKE_FAILED])
def test_access_of_a_grant_being_revoked_is_left_to_its_revoke(
    world: World, status: RequestStatus
) -> None:
    w = world
    member = w.user("leaving")
    w.live_grant("groups", w.exclusive, member, status=status)
    assert reconcile(w.rt)["orphans_removed"] == 0
    assert w.holds(w.exclusive, member)
    assert w.drift() == []


def test_a_refused_revoke_is_audited_and_counted_and_tried_again(world: World) -> None:
    w = world
    principal = f"stuck-{w.n}@example.com"
    w.provision(w.viewer, principal)
    w.standin.deny(w.viewer.resource_name, "resourcemanager.projects.setIamPolicy")

    counts = reconcile(w.rt)

    assert counts["orphans_removed"] == 0 and counts["errors"] == 1
    assert w.holds(w.viewer, principal)
    events = w.drift()
    assert [e.event for e in events] == ["drift_found", "drift_repair_failed"]
    assert "GCP refused setIamPolicy" in events[1].details["error"]
    assert w.alerts() == []  # the channel hears of removals, not of every retry
    assert reconcile(w.rt)["errors"] == 1
    assert [e.event for e in w.drift()][2:] == ["drift_found", "drift_repair_failed"]


def test_a_slack_error_does_not_stop_reconciliation(world: World) -> None:
    w = world
    first, second = f"first-{w.n}@example.com", w.user("second")
    w.provision(w.viewer, first)
    w.provision(w.exclusive, second)
    w.slack.fail_next("chat.postMessage", status=500)

    assert reconcile(w.rt)["orphans_removed"] == 2
    assert not w.holds(w.viewer, first) and not w.holds(w.exclusive, second)
    statuses = sorted(
        c.status for c in w.slack.calls("chat.postMessage") if f"-{w.n}@" in c.args["text"]
    )
    assert statuses == [200, 500]


def test_one_policy_read_per_project_answers_every_grant_and_orphan_on_it(world: World) -> None:
    w = world
    for n in range(5):
        w.live_grant("gcp", w.viewer, f"viewer{n}-{w.n}@example.com")
    w.provision(w.viewer, f"stray-{w.n}@example.com")
    project = w.viewer.resource_name
    before = len([c for c in w.standin.calls_of("GetIamPolicy") if c.resource == project])

    counts = reconcile(w.rt)

    reads = [c for c in w.standin.calls_of("GetIamPolicy") if c.resource == project]
    # One read for five grants, two flows and the orphan listing; then the orphan's
    # removal (a check and a read-modify-write) reads it twice more.
    assert len(reads) - before == 3
    assert counts["orphans_removed"] == 1 and counts["reapplied"] == 0
    assert counts["checked"] == 5
    assert all(w.holds(w.viewer, f"viewer{n}-{w.n}@example.com") for n in range(5))
