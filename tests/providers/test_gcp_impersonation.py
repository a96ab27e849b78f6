"""The impersonation provider against the stand-in, through the real IAM gRPC client."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import json_format

from app.flows.schema import GcpImpersonationTarget
from app.providers.base import GrantSpec, ProviderError
from app.providers.gcp_clients import GcpClients, build_gcp_clients
from app.providers.gcp_impersonation import GcpImpersonationProvider
from app.testing.gcp_standin import GcpStandIn

END = datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)
TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"
_numbers = itertools.count(1)


@pytest.fixture
def account(standin: GcpStandIn) -> str:
    email = f"deployer-{next(_numbers)}@latchkey-prod.iam.gserviceaccount.com"
    standin.add_resource(f"projects/latchkey-prod/serviceAccounts/{email}")
    return email


@pytest.fixture
def provider(clients: GcpClients, sleeps: list[float]) -> GcpImpersonationProvider:
    return GcpImpersonationProvider(clients.iam, sleep=sleeps.append)


def _spec(account: str, principal: str = "ann@example.com") -> GrantSpec:
    target = GcpImpersonationTarget(name="deployer", service_account=account)
    return GrantSpec(principal=principal, target=target, expires_at=END)


def _bindings(standin: GcpStandIn, account: str) -> list[dict[str, Any]]:
    policy = standin.policy(f"projects/-/serviceAccounts/{account}")
    return [json_format.MessageToDict(b) for b in policy.bindings]


OURS = {
    "role": TOKEN_CREATOR,
    "members": ["user:ann@example.com"],
    "condition": {
        "title": "latchkey",
        "description": "Latchkey just-in-time access for user:ann@example.com",
        "expression": 'request.time < timestamp("2099-01-02T03:04:05Z")',
    },
}


def test_grant_lets_the_member_mint_tokens_until_the_end(
    standin: GcpStandIn, provider: GcpImpersonationProvider, account: str
) -> None:
    details = provider.grant(_spec(account))

    assert details["resource"] == f"projects/-/serviceAccounts/{account}"
    assert _bindings(standin, account) == [OURS]
    assert standin.policy(f"projects/-/serviceAccounts/{account}").version == 3
    assert standin.calls_of("GetIamPolicy")[-1].request.options.requested_policy_version == 3
    assert provider.check(_spec(account)) is True
    assert provider.check(_spec(account, "bob@example.com")) is False

    provider.revoke(_spec(account))
    assert _bindings(standin, account) == []
    assert provider.revoke(_spec(account))["already_absent"] is True


def test_stale_etag_is_aborted_and_retried_from_a_fresh_read(
    standin: GcpStandIn,
    clients: GcpClients,
    provider: GcpImpersonationProvider,
    account: str,
    sleeps: list[float],
) -> None:
    resource = f"projects/-/serviceAccounts/{account}"
    # What the provider meets on the wire: ABORTED, which the client raises as Aborted.
    stale = standin.policy(resource).etag
    standin.put_binding(resource, "roles/iam.serviceAccountUser", ["group:ci@example.com"])
    with pytest.raises(gexc.Aborted):
        clients.iam.set_iam_policy(
            request=iam_policy_pb2.SetIamPolicyRequest(
                resource=resource, policy=policy_pb2.Policy(version=3, etag=stale)
            )
        )

    standin.before_next_set(
        lambda: standin.put_binding(
            resource, TOKEN_CREATOR, ["serviceAccount:ci@p.iam.gserviceaccount.com"]
        )
    )
    provider.grant(_spec(account))

    assert sleeps == [0.5]
    assert _bindings(standin, account) == [
        {"role": "roles/iam.serviceAccountUser", "members": ["group:ci@example.com"]},
        {"role": TOKEN_CREATOR, "members": ["serviceAccount:ci@p.iam.gserviceaccount.com"]},
        OURS,
    ]


def test_unknown_service_account_is_a_clear_permanent_error(
    provider: GcpImpersonationProvider,
) -> None:
    with pytest.raises(ProviderError) as caught:
        provider.grant(_spec("nobody@latchkey-prod.iam.gserviceaccount.com"))
    assert not caught.value.transient
    assert "nobody@latchkey-prod.iam.gserviceaccount.com" in str(caught.value)
    assert "exists" in str(caught.value)


def test_verify_checks_the_account_and_the_write_permission(
    standin: GcpStandIn, provider: GcpImpersonationProvider, account: str
) -> None:
    assert provider.verify(_spec(account).target) == []
    missing = _spec("nobody@latchkey-prod.iam.gserviceaccount.com").target
    assert "nobody@latchkey-prod.iam.gserviceaccount.com" in provider.verify(missing)[0]
    standin.deny(f"projects/-/serviceAccounts/{account}", "iam.serviceAccounts.setIamPolicy")
    assert "iam.serviceAccounts.setIamPolicy" in provider.verify(_spec(account).target)[0]


def test_unreachable_grpc_endpoint_is_transient() -> None:
    clients = build_gcp_clients("http://127.0.0.1:9", "127.0.0.1:9")
    try:
        with pytest.raises(ProviderError) as caught:
            GcpImpersonationProvider(clients.iam).grant(
                _spec("deployer@latchkey-prod.iam.gserviceaccount.com")
            )
        assert caught.value.transient
    finally:
        clients.close()


def test_provisioned_lists_only_latchkeys_token_creators(
    standin: GcpStandIn, provider: GcpImpersonationProvider, account: str
) -> None:
    resource = f"projects/-/serviceAccounts/{account}"
    provider.grant(_spec(account))
    provider.grant(_spec(account, "serviceAccount:ci@latchkey-prod.iam.gserviceaccount.com"))
    standin.put_binding(resource, TOKEN_CREATOR, ["user:owner@example.com"])
    hours = {"title": "business hours", "expression": "request.time.getHours() < 18"}
    standin.put_binding(resource, TOKEN_CREATOR, ["user:dev@example.com"], hours)
    until = {"title": "latchkey", "expression": 'request.time < timestamp("2099-01-01T00:00:00Z")'}
    standin.put_binding(resource, "roles/iam.serviceAccountUser", ["user:eve@example.com"], until)

    listed = provider.provisioned(_spec(account).target)

    assert sorted(listed) == [
        "ann@example.com",
        "serviceAccount:ci@latchkey-prod.iam.gserviceaccount.com",
    ]
