"""The AWS role provider against a moto server, through real boto3 HTTP calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.flows.schema import AwsRoleTarget
from app.providers.aws_role import REVOKED_POLICY, AwsRoleProvider
from app.providers.base import GrantSpec, ProviderError
from app.providers.principals import iam_user_problem
from app.testing.moto import client, moto_server

ACCOUNT = "123456789012"  # moto's default account
BOUND = {"StringEquals": {"sts:RoleSessionName": "${aws:username}"}}


def _trust(condition: dict[str, Any] | None) -> str:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "sts:AssumeRole",
    }
    if condition:
        statement["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.fixture(scope="module")
def server_iam() -> Iterator[Any]:
    with moto_server() as endpoint:
        yield client("iam", endpoint)


@pytest.fixture
def iam(server_iam: Any) -> Iterator[Any]:
    """A user and two roles, removed after each test so each starts with no policies."""
    client = server_iam
    client.create_user(UserName="ann")
    client.create_role(RoleName="ops", AssumeRolePolicyDocument=_trust(BOUND))
    client.create_role(RoleName="loose", AssumeRolePolicyDocument=_trust(None))
    yield client
    for role in ("ops", "loose"):
        for name in client.list_role_policies(RoleName=role)["PolicyNames"]:
            client.delete_role_policy(RoleName=role, PolicyName=name)
        client.delete_role(RoleName=role)
    for name in client.list_user_policies(UserName="ann")["PolicyNames"]:
        client.delete_user_policy(UserName="ann", PolicyName=name)
    client.delete_user(UserName="ann")


def _target(role: str = "ops") -> AwsRoleTarget:
    return AwsRoleTarget(name=role, role_arn=f"arn:aws:iam::{ACCOUNT}:role/{role}")


def _spec(expires_at: datetime, user: str = "ann", role: str = "ops") -> GrantSpec:
    return GrantSpec(principal=user, target=_target(role), expires_at=expires_at)


def _user_statement(iam: Any) -> dict[str, Any]:
    document = iam.get_user_policy(UserName="ann", PolicyName="latchkey-ops")["PolicyDocument"]
    [statement] = document["Statement"]
    return statement


def _revoked(iam: Any) -> list[dict[str, Any]]:
    document = iam.get_role_policy(RoleName="ops", PolicyName=REVOKED_POLICY)["PolicyDocument"]
    return list(document["Statement"])


def _deny(userid: str, issued_before: datetime) -> dict[str, Any]:
    return {
        "Sid": "Seed" + userid.split(":")[1].replace("-", ""),
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {
            "StringLike": {"aws:userid": userid},
            "DateLessThan": {"aws:TokenIssueTime": issued_before.strftime("%Y-%m-%dT%H:%M:%SZ")},
        },
    }


def test_grant_writes_the_end_and_granting_again_moves_it(iam: Any) -> None:
    provider = AwsRoleProvider(iam)
    first = datetime(2099, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    assert provider.grant(_spec(first)) == {
        "policy_name": "latchkey-ops",
        "role_arn": f"arn:aws:iam::{ACCOUNT}:role/ops",
        "iam_user": "ann",
        "expires_at": "2099-01-02T03:04:05Z",
    }
    assert _user_statement(iam) == {
        "Sid": "LatchkeyAssumeRoleUntil",
        "Effect": "Allow",
        "Action": "sts:AssumeRole",
        "Resource": f"arn:aws:iam::{ACCOUNT}:role/ops",
        "Condition": {"DateLessThan": {"aws:CurrentTime": "2099-01-02T03:04:05Z"}},
    }
    assert provider.check(_spec(first)) is True
    # An extension: same policy, later end. A naive datetime is UTC.
    provider.grant(_spec(datetime(2099, 1, 3, 0, 0, 0)))
    assert iam.list_user_policies(UserName="ann")["PolicyNames"] == ["latchkey-ops"]
    assert _user_statement(iam)["Condition"] == {
        "DateLessThan": {"aws:CurrentTime": "2099-01-03T00:00:00Z"}
    }


def test_check_is_false_when_the_end_has_passed_or_there_is_no_policy(iam: Any) -> None:
    provider = AwsRoleProvider(iam)
    assert provider.check(_spec(datetime.now(UTC) + timedelta(hours=1))) is False
    provider.grant(_spec(datetime.now(UTC) - timedelta(minutes=1)))
    assert provider.check(_spec(datetime.now(UTC))) is False


def test_revoke_removes_the_right_and_denies_sessions_already_assumed(iam: Any) -> None:
    provider = AwsRoleProvider(iam)
    role_id = iam.get_role(RoleName="ops")["Role"]["RoleId"]
    provider.grant(_spec(datetime.now(UTC) + timedelta(hours=1)))
    start = datetime.now(UTC).replace(microsecond=0)
    details = provider.revoke(_spec(datetime.now(UTC)))
    end = datetime.now(UTC)
    assert iam.list_user_policies(UserName="ann")["PolicyNames"] == []
    assert "already_absent" not in details
    [deny] = _revoked(iam)
    assert deny["Effect"] == "Deny" and deny["Action"] == "*" and deny["Resource"] == "*"
    assert deny["Sid"].isalnum()
    assert deny["Condition"]["StringLike"] == {"aws:userid": f"{role_id}:ann"}
    issued_before = deny["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
    assert details["sessions_issued_before"] == issued_before
    parsed = datetime.strptime(issued_before, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert start < parsed <= end + timedelta(seconds=1)

    again = provider.revoke(_spec(datetime.now(UTC)))  # revoking what is gone is success
    assert again["already_absent"] is True
    assert [s["Condition"]["StringLike"] for s in _revoked(iam)] == [
        {"aws:userid": f"{role_id}:ann"}
    ]


def test_revoke_prunes_denies_older_than_the_longest_session(iam: Any) -> None:
    role_id = iam.get_role(RoleName="ops")["Role"]["RoleId"]
    now = datetime.now(UTC)
    seeded = [_deny(f"{role_id}:old", now - timedelta(hours=13))]
    seeded.append(_deny(f"{role_id}:recent", now - timedelta(hours=1)))
    iam.put_role_policy(
        RoleName="ops",
        PolicyName=REVOKED_POLICY,
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": seeded}),
    )
    AwsRoleProvider(iam).revoke(_spec(now))
    users = [s["Condition"]["StringLike"]["aws:userid"] for s in _revoked(iam)]
    assert users == [f"{role_id}:recent", f"{role_id}:ann"]


def test_revoke_keeps_the_newest_denies_within_the_policy_size_limit(iam: Any) -> None:
    role_id = iam.get_role(RoleName="ops")["Role"]["RoleId"]
    now = datetime.now(UTC)
    seeded = [_deny(f"{role_id}:user-{i}", now - timedelta(minutes=100 - i)) for i in range(60)]
    iam.put_role_policy(
        RoleName="ops",
        PolicyName=REVOKED_POLICY,
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": seeded}),
    )
    AwsRoleProvider(iam).revoke(_spec(now))
    kept = _revoked(iam)
    size = len(json.dumps({"Version": "2012-10-17", "Statement": kept}, separators=(",", ":")))
    assert size <= 10_240
    users = [s["Condition"]["StringLike"]["aws:userid"] for s in kept]
    assert users[-2:] == [f"{role_id}:user-59", f"{role_id}:ann"]
    assert f"{role_id}:user-0" not in users  # the oldest revokes went first
    assert len(users) > 30  # and only as many as needed


def test_unknown_user_is_a_permanent_error_that_names_it(iam: Any) -> None:
    with pytest.raises(ProviderError) as caught:
        AwsRoleProvider(iam).grant(_spec(datetime.now(UTC), user="nobody"))
    assert not caught.value.transient
    assert "'nobody' does not exist" in str(caught.value)


def test_verify_reports_a_missing_session_name_binding_and_a_missing_role(iam: Any) -> None:
    provider = AwsRoleProvider(iam)
    assert provider.verify(_target("ops")) == []
    [loose] = provider.verify(_target("loose"))
    assert f"arn:aws:iam::{ACCOUNT}:role/loose" in loose
    assert "sts:RoleSessionName" in loose
    assert provider.verify(_target("gone")) == [
        f"IAM role arn:aws:iam::{ACCOUNT}:role/gone does not exist"
    ]
    [elsewhere] = provider.verify(
        AwsRoleTarget(name="x", role_arn="arn:aws:iam::210987654321:role/ops")
    )
    assert "arn:aws:iam::210987654321:role/ops" in elsewhere


def test_revoke_on_a_missing_role_still_removes_the_user_right(iam: Any) -> None:
    provider = AwsRoleProvider(iam)
    provider.grant(_spec(datetime.now(UTC) + timedelta(hours=1), role="gone"))
    assert iam.list_user_policies(UserName="ann")["PolicyNames"] == ["latchkey-gone"]
    details = provider.revoke(_spec(datetime.now(UTC), role="gone"))
    assert details["sessions_issued_before"] is None  # no role, no sessions to end
    assert iam.list_user_policies(UserName="ann")["PolicyNames"] == []


@pytest.mark.parametrize(
    ("principal", "ok"),
    [("ann", True), ("ann.lee+ops@example.com", True), ("", False), ("a b", False)],
)
def test_principal_problem_is_the_iam_user_name_format(principal: str, ok: bool) -> None:
    assert (iam_user_problem(principal) is None) is ok
    assert iam_user_problem("x" * 65) is not None


def test_provisioned_lists_users_holding_latchkeys_policy_for_the_role(iam: Any) -> None:
    provider = AwsRoleProvider(iam)
    future, past = datetime(2099, 1, 2, tzinfo=UTC), datetime(2001, 1, 2, tzinfo=UTC)
    others = ("bob", "cy", "dee", "eve", "fay")
    for user in others:
        iam.create_user(UserName=user)
    try:
        provider.grant(_spec(future))  # ann: Latchkey's right to assume ops
        provider.grant(_spec(future, user="bob"))
        provider.grant(_spec(past, user="cy"))  # ended: it grants nothing any more
        provider.grant(_spec(future, user="dee", role="loose"))  # another role
        # A hand-made policy of another name, and one of Latchkey's name for another role.
        other = {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": _target().role_arn}
        document = json.dumps({"Version": "2012-10-17", "Statement": [other]})
        iam.put_user_policy(UserName="eve", PolicyName="assume-ops", PolicyDocument=document)
        elsewhere = {**other, "Resource": f"arn:aws:iam::{ACCOUNT}:role/team/ops"}
        iam.put_user_policy(
            UserName="fay",
            PolicyName="latchkey-ops",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [elsewhere]}),
        )

        assert sorted(provider.provisioned(_target())) == ["ann", "bob"]
        assert provider.provisioned(_target("loose")) == ["dee"]
        assert provider.principal_key("Ann") == provider.principal_key("ann")
    finally:
        for user in others:
            for name in iam.list_user_policies(UserName=user)["PolicyNames"]:
                iam.delete_user_policy(UserName=user, PolicyName=name)
            iam.delete_user(UserName=user)
