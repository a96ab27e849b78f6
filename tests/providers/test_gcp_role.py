"""The GCP role provider against the stand-in, through the real Resource Manager REST client."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import json_format

from app.flows.schema import GcpRoleBindingTarget
from app.providers.base import GrantSpec, ProviderError
from app.providers.gcp_clients import GcpClients, build_gcp_clients
from app.providers.gcp_role import GcpRoleBindingProvider
from app.providers.principals import gcp_member_problem
from app.testing.gcp_standin import GcpStandIn

END = datetime(2099, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
CONDITION = 'request.time < timestamp("2099-01-02T03:04:05Z")'
_numbers = itertools.count(1)


@pytest.fixture
def project(standin: GcpStandIn) -> str:
    # A fresh project per test, so tests share the servers but no policy.
    name = f"projects/latchkey-test-{next(_numbers)}"
    standin.add_resource(name)
    return name


@pytest.fixture
def provider(clients: GcpClients, sleeps: list[float]) -> GcpRoleBindingProvider:
    return GcpRoleBindingProvider(clients.projects, clients.folders, sleep=sleeps.append)


def _spec(resource: str, principal: str = "ann@example.com", end: datetime = END) -> GrantSpec:
    target = GcpRoleBindingTarget(name="viewer", resource_name=resource, role="roles/viewer")
    return GrantSpec(principal=principal, target=target, expires_at=end)


def _bindings(standin: GcpStandIn, resource: str) -> list[dict[str, Any]]:
    return [json_format.MessageToDict(b) for b in standin.policy(resource).bindings]


def _ours(member: str = "user:ann@example.com", condition: str = CONDITION) -> dict[str, Any]:
    return {
        "role": "roles/viewer",
        "members": [member],
        "condition": {
            "title": "latchkey",
            "description": f"Latchkey just-in-time access for {member}",
            "expression": condition,
        },
    }


def test_grant_binds_the_role_until_the_end_at_policy_version_3(
    standin: GcpStandIn, provider: GcpRoleBindingProvider, project: str
) -> None:
    details = provider.grant(_spec(project))

    assert details["condition"] == CONDITION
    assert _bindings(standin, project) == [_ours()]
    assert standin.policy(project).version == 3
    get = standin.calls_of("GetIamPolicy")[-1].request
    assert get.options.requested_policy_version == 3  # else Google hides conditions
    assert provider.check(_spec(project)) is True
    writes = len(standin.calls_of("SetIamPolicy"))
    provider.grant(_spec(project))  # granting what exists is success, and writes nothing
    assert len(standin.calls_of("SetIamPolicy")) == writes
    assert _bindings(standin, project) == [_ours()]


def test_a_change_between_read_and_write_is_retried_and_kept(
    standin: GcpStandIn, provider: GcpRoleBindingProvider, project: str, sleeps: list[float]
) -> None:
    standin.before_next_set(
        lambda: standin.put_binding(project, "roles/editor", ["group:ops@example.com"])
    )
    writes = len(standin.calls_of("SetIamPolicy"))

    provider.grant(_spec(project))

    assert len(standin.calls_of("SetIamPolicy")) == writes + 2  # refused once, then accepted
    assert sleeps == [0.5]
    assert _bindings(standin, project) == [
        {"role": "roles/editor", "members": ["group:ops@example.com"]},
        _ours(),
    ]


def test_a_policy_that_keeps_changing_is_a_transient_error(
    standin: GcpStandIn, provider: GcpRoleBindingProvider, project: str, sleeps: list[float]
) -> None:
    standin.conflict_next_sets(5)
    with pytest.raises(ProviderError) as caught:
        provider.grant(_spec(project))
    assert caught.value.transient
    assert sleeps == [0.5, 1.0, 2.0, 4.0]  # backs off between fresh reads
    assert _bindings(standin, project) == []


def test_revoke_removes_only_latchkeys_binding(
    standin: GcpStandIn, provider: GcpRoleBindingProvider, project: str
) -> None:
    standin.put_binding(project, "roles/viewer", ["user:ann@example.com"])
    business_hours = {"title": "business hours", "expression": "request.time.getHours() < 18"}
    standin.put_binding(project, "roles/viewer", ["user:ann@example.com"], business_hours)
    provider.grant(_spec(project))
    provider.grant(_spec(project, "bob@example.com"))
    others = [
        {"role": "roles/viewer", "members": ["user:ann@example.com"]},
        {"role": "roles/viewer", "members": ["user:ann@example.com"], "condition": business_hours},
    ]

    assert "already_absent" not in provider.revoke(_spec(project))

    assert _bindings(standin, project) == [*others, _ours("user:bob@example.com")]
    assert provider.check(_spec(project)) is False
    assert provider.revoke(_spec(project))["already_absent"] is True
    assert _bindings(standin, project) == [*others, _ours("user:bob@example.com")]


def test_extension_rewrites_the_condition_of_the_one_binding(
    standin: GcpStandIn, provider: GcpRoleBindingProvider, project: str
) -> None:
    provider.grant(_spec(project, end=END - timedelta(days=1)))
    provider.grant(_spec(project))
    assert _bindings(standin, project) == [_ours()]


def test_expired_latchkey_bindings_are_removed_on_the_next_grant(
    standin: GcpStandIn, clients: GcpClients, project: str
) -> None:
    now = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    provider = GcpRoleBindingProvider(clients.projects, clients.folders, clock=lambda: now)
    provider.grant(_spec(project, "old@example.com", end=now - timedelta(minutes=1)))
    theirs = {
        "title": "until 2020",
        "expression": 'request.time < timestamp("2020-01-01T00:00:00Z")',
    }
    standin.put_binding(project, "roles/owner", ["user:cto@example.com"], theirs)
    assert provider.check(_spec(project, "old@example.com")) is False  # expired grants nothing

    details = provider.grant(_spec(project, end=now + timedelta(hours=1)))

    assert details["expired_removed"] == 1
    assert _bindings(standin, project) == [
        # Someone else's expired binding is theirs to clean up.
        {"role": "roles/owner", "members": ["user:cto@example.com"], "condition": theirs},
        _ours(condition='request.time < timestamp("2030-06-01T13:00:00Z")'),
    ]


def test_folder_policies_are_managed_through_the_folders_api(
    standin: GcpStandIn, provider: GcpRoleBindingProvider
) -> None:
    folder = f"folders/{next(_numbers) + 900000}"
    standin.add_resource(folder)
    provider.grant(_spec(folder, "group:oncall@example.com"))
    assert _bindings(standin, folder) == [_ours("group:oncall@example.com")]
    assert provider.check(_spec(folder, "group:oncall@example.com")) is True
    provider.revoke(_spec(folder, "group:oncall@example.com"))
    assert _bindings(standin, folder) == []


def test_unknown_project_is_a_clear_permanent_error(provider: GcpRoleBindingProvider) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.grant(_spec("projects/no-such-project"))
    assert not caught.value.transient
    assert "projects/no-such-project" in str(caught.value)
    assert "exists" in str(caught.value)


def test_verify_reads_the_policy_and_tests_the_write_permission(
    standin: GcpStandIn, provider: GcpRoleBindingProvider, project: str
) -> None:
    target = _spec(project).target
    assert provider.verify(target) == []
    assert (
        "projects/no-such-project" in provider.verify(_spec("projects/no-such-project").target)[0]
    )
    standin.deny(project, "resourcemanager.projects.setIamPolicy")
    assert provider.verify(target) == [
        f"Latchkey may read but not change the IAM policy of {project} "
        "(missing resourcemanager.projects.setIamPolicy)"
    ]


@pytest.mark.parametrize(
    ("principal", "problem"),
    [
        ("ann@example.com", False),
        ("group:ops@example.com", False),
        ("serviceAccount:ci@p-1.iam.gserviceaccount.com", False),
        ("U0123ABC", True),
        ("domain:example.com", True),
    ],
)
def test_principal_must_be_an_email(principal: str, problem: bool) -> None:
    assert (gcp_member_problem(principal) is not None) is problem


def test_unreachable_endpoint_is_transient() -> None:
    clients = build_gcp_clients("http://127.0.0.1:9", "127.0.0.1:9")
    try:
        with pytest.raises(ProviderError) as caught:
            GcpRoleBindingProvider(clients.projects, clients.folders).grant(
                _spec("projects/latchkey-test-x")
            )
        assert caught.value.transient
    finally:
        clients.close()


def test_standin_refuses_conditions_below_version_3_like_google(
    standin: GcpStandIn, clients: GcpClients, project: str
) -> None:
    policy = policy_pb2.Policy(
        version=1, bindings=[json_format.ParseDict(_ours(), policy_pb2.Binding())]
    )
    with pytest.raises(gexc.BadRequest):
        clients.projects.set_iam_policy(
            request=iam_policy_pb2.SetIamPolicyRequest(resource=project, policy=policy)
        )
    stale = standin.policy(project).etag
    standin.put_binding(project, "roles/editor", ["group:ops@example.com"])
    with pytest.raises(gexc.Conflict):
        clients.projects.set_iam_policy(
            request=iam_policy_pb2.SetIamPolicyRequest(
                resource=project, policy=policy_pb2.Policy(version=3, etag=stale)
            )
        )


def test_provisioned_lists_the_members_of_latchkeys_bindings_in_force_only(
    standin: GcpStandIn, clients: GcpClients, project: str
) -> None:
    now = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    provider = GcpRoleBindingProvider(clients.projects, clients.folders, clock=lambda: now)
    later = now + timedelta(hours=1)
    provider.grant(_spec(project, "ann@example.com", end=later))
    provider.grant(_spec(project, "group:ops@example.com", end=later))
    provider.grant(_spec(project, "old@example.com", end=now - timedelta(minutes=1)))
    # Not Latchkey's: an unconditional binding, someone else's condition, another role,
    # and a binding titled "latchkey" whose expression is not Latchkey's.
    standin.put_binding(project, "roles/viewer", ["user:cto@example.com"])
    hours = {"title": "business hours", "expression": "request.time.getHours() < 18"}
    standin.put_binding(project, "roles/viewer", ["user:dev@example.com"], hours)
    until = {"title": "latchkey", "expression": 'request.time < timestamp("2099-01-01T00:00:00Z")'}
    standin.put_binding(project, "roles/editor", ["user:eve@example.com"], until)
    lookalike = {"title": "latchkey", "expression": "request.time.getHours() < 18"}
    standin.put_binding(project, "roles/viewer", ["user:fay@example.com"], lookalike)

    listed = provider.provisioned(_spec(project).target)

    # Users come back as Latchkey maps them by default (a bare email); others keep a type.
    assert sorted(listed) == ["ann@example.com", "group:ops@example.com"]
    assert provider.principal_key("user:Ann@Example.com") == provider.principal_key(
        "ann@example.com"
    )


def test_provisioned_reads_folder_policies_too(
    standin: GcpStandIn, provider: GcpRoleBindingProvider
) -> None:
    folder = f"folders/{next(_numbers) + 900000}"
    standin.add_resource(folder)
    target = GcpRoleBindingTarget(name="viewer", resource_name=folder, role="roles/viewer")
    provider.grant(GrantSpec("ann@example.com", target, END))
    assert provider.provisioned(target) == ["ann@example.com"]
