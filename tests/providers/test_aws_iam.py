"""The IAM-group provider against a moto server, through real boto3 HTTP calls."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest

from app.db import utcnow
from app.flows.schema import AwsIamGroupTarget
from app.providers.aws_iam import AwsIamGroupProvider
from app.providers.base import GrantSpec, ProviderError
from app.testing.moto import client, moto_server


@pytest.fixture(scope="module")
def iam() -> Iterator[Any]:
    with moto_server() as endpoint:
        iam = client("iam", endpoint)
        iam.create_group(GroupName="latchkey-admins")
        iam.create_user(UserName="ann@example.com")
        yield iam


def _members(iam: Any) -> list[str]:
    return [u["UserName"] for u in iam.get_group(GroupName="latchkey-admins")["Users"]]


def _spec(user: str = "ann@example.com", group: str = "latchkey-admins") -> GrantSpec:
    target = AwsIamGroupTarget(name="admins", group_name=group)
    return GrantSpec(principal=user, target=target, expires_at=utcnow() + timedelta(minutes=5))


def test_grant_and_revoke_are_idempotent(iam: Any) -> None:
    provider = AwsIamGroupProvider(iam)
    assert provider.grant(_spec()) == {
        "group_name": "latchkey-admins",
        "iam_user": "ann@example.com",
    }
    provider.grant(_spec())  # granting what exists is success
    assert _members(iam) == ["ann@example.com"]
    assert provider.check(_spec()) is True
    provider.revoke(_spec())
    assert _members(iam) == []
    assert provider.revoke(_spec())["already_absent"] is True  # revoking what is gone is success
    assert provider.check(_spec()) is False


@pytest.mark.parametrize(
    ("user", "group"), [("nobody@example.com", "latchkey-admins"), ("ann@example.com", "nope")]
)
def test_missing_user_or_group_is_a_permanent_error_that_names_it(
    iam: Any, user: str, group: str
) -> None:
    with pytest.raises(ProviderError) as caught:
        AwsIamGroupProvider(iam).grant(_spec(user, group))
    assert not caught.value.transient
    assert "does not exist" in str(caught.value)


def test_unreachable_endpoint_is_transient() -> None:
    client = boto3.client(
        "iam",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=boto3.session.Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    with pytest.raises(ProviderError) as caught:
        AwsIamGroupProvider(client).grant(_spec())
    assert caught.value.transient


def test_provisioned_lists_members_only_of_an_exclusive_group(iam: Any) -> None:
    iam.create_group(GroupName="latchkey-exclusive")
    for user in ("bob@example.com", "cy@example.com"):
        iam.create_user(UserName=user)
        iam.add_user_to_group(GroupName="latchkey-exclusive", UserName=user)
    provider = AwsIamGroupProvider(iam)
    shared = AwsIamGroupTarget(name="ops", group_name="latchkey-exclusive")
    exclusive = AwsIamGroupTarget(name="ops", group_name="latchkey-exclusive", exclusive=True)
    gone = AwsIamGroupTarget(name="gone", group_name="latchkey-gone", exclusive=True)

    # IAM does not say who added a member: only the flow can say they all came from Latchkey.
    assert provider.provisioned(shared) is None
    assert sorted(provider.provisioned(exclusive)) == ["bob@example.com", "cy@example.com"]
    assert provider.provisioned(gone) == []
