"""The Identity Center provider against a moto server, through real boto3 HTTP calls.

moto finishes every assignment request at once and never conflicts, so the asynchronous
paths (IN_PROGRESS, FAILED, ConflictException) come from `Flaky`, which answers some calls
itself, with boto3's own exception classes, and passes the rest to the moto-backed client.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from app.db import utcnow
from app.flows.schema import AwsSsoPermissionSetTarget
from app.providers.aws_sso import AwsSsoPermissionSetProvider
from app.providers.base import GrantSpec, ProviderError
from app.providers.principals import identity_center_user_problem
from app.testing.moto import client, moto_server


@dataclass
class Moto:
    sso: Any
    ids: Any
    org: Any
    instance_arn: str
    store_id: str
    permission_set_arn: str
    account_id: str


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    with moto_server() as endpoint:
        yield _seeded(endpoint)


def _seeded(endpoint: str) -> Moto:
    sso, ids, org = (client(s, endpoint) for s in ("sso-admin", "identitystore", "organizations"))
    [instance] = sso.list_instances()["Instances"]  # moto has one instance per region
    store = instance["IdentityStoreId"]
    permission_set = sso.create_permission_set(Name="ReadOnly", InstanceArn=instance["InstanceArn"])
    for user_name, email in (("ann", "ann@example.com"), ("bob.smith", "bob@example.com")):
        ids.create_user(
            IdentityStoreId=store,
            UserName=user_name,
            DisplayName=user_name,
            Name={"GivenName": user_name, "FamilyName": "Test"},
            Emails=[{"Value": email, "Primary": True}],
        )
    org.create_organization(FeatureSet="ALL")
    account = org.create_account(Email="prod@example.com", AccountName="prod")
    return Moto(
        sso=sso,
        ids=ids,
        org=org,
        instance_arn=instance["InstanceArn"],
        store_id=store,
        permission_set_arn=permission_set["PermissionSet"]["PermissionSetArn"],
        account_id=account["CreateAccountStatus"]["AccountId"],
    )


@pytest.fixture(autouse=True)
def _no_assignments_left(moto: Moto) -> Iterator[None]:
    """Each test starts with no assignment, whatever the previous one left."""
    yield
    for principal in _assigned(moto):
        moto.sso.delete_account_assignment(
            InstanceArn=moto.instance_arn,
            TargetId=moto.account_id,
            TargetType="AWS_ACCOUNT",
            PermissionSetArn=moto.permission_set_arn,
            PrincipalType="USER",
            PrincipalId=principal,
        )


def _target(moto: Moto, **changes: Any) -> AwsSsoPermissionSetTarget:
    # model_construct: moto's permission set ARNs read arn:aws:sso:::instance/ssoins-…/ps-…
    # and its store ids are not hex, so the schema (right for real AWS) would refuse them.
    fields = {
        "provider": "aws_sso",
        "name": "readonly",
        "instance_arn": moto.instance_arn,
        "permission_set_arn": moto.permission_set_arn,
        "account_id": moto.account_id,
        "identity_store_id": None,
        "description": "",
    }
    return AwsSsoPermissionSetTarget.model_construct(**{**fields, **changes})


def _spec(moto: Moto, principal: str = "ann@example.com", **changes: Any) -> GrantSpec:
    return GrantSpec(principal=principal, target=_target(moto, **changes), expires_at=utcnow())


def _assigned(moto: Moto) -> list[str]:
    answer = moto.sso.list_account_assignments(
        InstanceArn=moto.instance_arn,
        AccountId=moto.account_id,
        PermissionSetArn=moto.permission_set_arn,
    )
    return [a["PrincipalId"] for a in answer["AccountAssignments"]]


def _user_id(moto: Moto, user_name: str) -> str:
    unique = {"AttributePath": "userName", "AttributeValue": user_name}
    found = moto.ids.get_user_id(
        IdentityStoreId=moto.store_id, AlternateIdentifier={"UniqueAttribute": unique}
    )
    return str(found["UserId"])


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_grant_and_revoke_are_idempotent(moto: Moto) -> None:
    sleeps = Sleeps()
    provider = AwsSsoPermissionSetProvider(moto.sso, moto.ids, sleep=sleeps)
    ann = _user_id(moto, "ann")
    details = provider.grant(_spec(moto))
    assert details["sso_user_id"] == ann and details["request_id"]
    assert _assigned(moto) == [ann]
    assert provider.grant(_spec(moto))["already_present"] is True  # granting what exists
    assert _assigned(moto) == [ann]
    assert provider.check(_spec(moto)) is True
    assert "request_id" in provider.revoke(_spec(moto))
    assert _assigned(moto) == []
    assert provider.revoke(_spec(moto))["already_absent"] is True  # revoking what is gone
    assert provider.check(_spec(moto)) is False
    assert sleeps == []  # moto answers SUCCEEDED at once: nothing to wait for


def test_a_mapped_user_name_is_found_and_a_given_store_is_used(moto: Moto) -> None:
    provider = AwsSsoPermissionSetProvider(moto.sso, moto.ids)
    spec = _spec(moto, "bob.smith", identity_store_id=moto.store_id)
    provider.grant(spec)
    assert _assigned(moto) == [_user_id(moto, "bob.smith")]
    provider.revoke(spec)
    assert _assigned(moto) == []


def test_unknown_user_is_a_permanent_error_naming_user_and_store(moto: Moto) -> None:
    provider = AwsSsoPermissionSetProvider(moto.sso, moto.ids)
    with pytest.raises(ProviderError) as caught:
        provider.grant(_spec(moto, "nobody@example.com"))
    assert not caught.value.transient
    assert "'nobody@example.com'" in str(caught.value) and moto.store_id in str(caught.value)
    assert provider.revoke(_spec(moto, "nobody@example.com"))["already_absent"] is True
    assert provider.check(_spec(moto, "nobody@example.com")) is False


class Flaky:
    """The moto-backed sso-admin client, with faults and statuses scripted per method."""

    def __init__(self, real: Any, script: dict[str, list[Any]]) -> None:
        self._real = real
        self._script = script
        self.calls: list[str] = []

    def __getattr__(self, method: str) -> Any:
        if method not in self._script:
            return getattr(self._real, method)  # e.g. get_paginator: moto's answers

        def call(**kwargs: Any) -> Any:
            self.calls.append(method)
            step = self._script[method]
            answer = step.pop(0) if step else "real"
            if answer == "conflict":
                raise self._real.exceptions.ConflictException(
                    {"Error": {"Code": "ConflictException", "Message": "in progress"}},
                    method,
                )
            if answer == "real":
                return getattr(self._real, method)(**kwargs)
            return answer(kwargs) if callable(answer) else answer

        return call


REQUEST_ID = "0b7c2f5e-6d0a-4c43-9f7e-3a1d2c4b5e6f"


def _status(kind: str, status: str, **extra: str) -> dict[str, Any]:
    fields = {"Status": status, "RequestId": REQUEST_ID, **extra}
    return {f"AccountAssignment{kind}Status": fields}


def _echo(kind: str, status: str) -> Any:
    """A Describe…Status answer for the request asked about."""
    return lambda kwargs: _status(
        kind, status, RequestId=kwargs[f"AccountAssignment{kind}RequestId"]
    )


def test_conflicts_are_retried_and_in_progress_is_polled(moto: Moto) -> None:
    def in_progress(kind: str) -> Any:
        # Let moto do the work, then say it is still running, as AWS does.
        def answer(kwargs: dict[str, Any]) -> dict[str, Any]:
            verb = "create" if kind == "Creation" else "delete"
            started = getattr(moto.sso, f"{verb}_account_assignment")(**kwargs)
            request_id = started[f"AccountAssignment{kind}Status"]["RequestId"]
            return _status(kind, "IN_PROGRESS", RequestId=request_id)

        return answer

    sso = Flaky(
        moto.sso,
        {
            "create_account_assignment": ["conflict", in_progress("Creation")],
            "describe_account_assignment_creation_status": [_echo("Creation", "IN_PROGRESS")],
            "delete_account_assignment": ["conflict", "conflict", in_progress("Deletion")],
            "describe_account_assignment_deletion_status": [_echo("Deletion", "SUCCEEDED")],
        },
    )
    sleeps = Sleeps()
    provider = AwsSsoPermissionSetProvider(sso, moto.ids, poll_interval=3.0, sleep=sleeps)
    provider.grant(_spec(moto))
    assert _assigned(moto) == [_user_id(moto, "ann")]
    # One backoff for the conflict, then two polls: IN_PROGRESS, then (moto's) SUCCEEDED.
    assert sleeps == [0.5, 3.0, 3.0]
    sleeps.clear()
    assert provider.revoke(_spec(moto))["request_id"] not in (None, REQUEST_ID)
    assert _assigned(moto) == []
    assert sleeps == [0.5, 1.0, 3.0]  # growing backoff, then one poll
    assert sso.calls.count("delete_account_assignment") == 3


def test_a_failed_assignment_is_a_permanent_error_with_the_reason(moto: Moto) -> None:
    reason = "Received a 403 status error: Access denied by IAM."
    sso = Flaky(
        moto.sso,
        {
            "create_account_assignment": [_status("Creation", "IN_PROGRESS")],
            "describe_account_assignment_creation_status": [
                _status("Creation", "FAILED", FailureReason=reason)
            ],
        },
    )
    provider = AwsSsoPermissionSetProvider(sso, moto.ids, sleep=Sleeps())
    with pytest.raises(ProviderError) as caught:
        provider.grant(_spec(moto))
    assert not caught.value.transient
    assert reason in str(caught.value) and moto.permission_set_arn in str(caught.value)
    assert _assigned(moto) == []


def test_a_refused_or_failed_delete_of_an_existing_assignment_is_an_error(moto: Moto) -> None:
    AwsSsoPermissionSetProvider(moto.sso, moto.ids).grant(_spec(moto))

    def denied(kwargs: dict[str, Any]) -> None:
        error = {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}
        raise moto.sso.exceptions.AccessDeniedException(error, "DeleteAccountAssignment")

    refusing = Flaky(moto.sso, {"delete_account_assignment": [denied]})
    with pytest.raises(ProviderError) as caught:
        AwsSsoPermissionSetProvider(refusing, moto.ids).revoke(_spec(moto))
    assert not caught.value.transient and "AccessDeniedException" in str(caught.value)

    reason = "Received a 500 status error"
    failing = Flaky(
        moto.sso,
        {"delete_account_assignment": [_status("Deletion", "FAILED", FailureReason=reason)]},
    )
    with pytest.raises(ProviderError) as caught:
        AwsSsoPermissionSetProvider(failing, moto.ids).revoke(_spec(moto))
    assert not caught.value.transient and reason in str(caught.value)
    assert _assigned(moto) == [_user_id(moto, "ann")]  # still there, and we said so


def test_a_request_that_stays_in_progress_or_in_conflict_is_transient(moto: Moto) -> None:
    stuck = Flaky(
        moto.sso,
        {
            "create_account_assignment": [_status("Creation", "IN_PROGRESS")],
            "describe_account_assignment_creation_status": [_status("Creation", "IN_PROGRESS")]
            * 10,
        },
    )
    sleeps = Sleeps()
    provider = AwsSsoPermissionSetProvider(
        stuck, moto.ids, poll_interval=2.0, poll_timeout=6.0, sleep=sleeps
    )
    with pytest.raises(ProviderError) as caught:
        provider.grant(_spec(moto))
    assert caught.value.transient and "IN_PROGRESS" in str(caught.value)
    assert sleeps == [2.0, 2.0, 2.0]

    busy = Flaky(moto.sso, {"create_account_assignment": ["conflict"] * 4})
    sleeps = Sleeps()
    with pytest.raises(ProviderError) as caught:
        AwsSsoPermissionSetProvider(busy, moto.ids, sleep=sleeps).grant(_spec(moto))
    assert caught.value.transient and "ConflictException" in str(caught.value)
    assert sleeps == [0.5, 1.0, 2.0]
    assert _assigned(moto) == []
    # A delete right after a create still running: not listed yet, yet not "already absent".
    busy = Flaky(moto.sso, {"delete_account_assignment": ["conflict"] * 4})
    with pytest.raises(ProviderError) as caught:
        AwsSsoPermissionSetProvider(busy, moto.ids, sleep=Sleeps()).revoke(_spec(moto))
    assert caught.value.transient and "ConflictException" in str(caught.value)


def test_verify_names_what_is_missing(moto: Moto) -> None:
    provider = AwsSsoPermissionSetProvider(moto.sso, moto.ids, organizations=moto.org)
    assert provider.verify(_target(moto)) == []
    missing_set = moto.instance_arn + "/ps-0000000000000000"
    assert provider.verify(_target(moto, permission_set_arn=missing_set)) == [
        f"permission set {missing_set} does not exist on instance {moto.instance_arn}"
    ]
    assert provider.verify(_target(moto, account_id="999999999999")) == [
        "AWS account 999999999999 is not in the organization"
    ]
    [store] = provider.verify(_target(moto, identity_store_id="d-0000000000"))
    assert "d-0000000000" in store and moto.store_id in store
    missing_instance = "arn:aws:sso:::instance/ssoins-0000000000000000"
    [instance] = provider.verify(_target(moto, instance_arn=missing_instance))
    assert missing_instance in instance and "not found" in instance


@pytest.mark.parametrize(
    ("principal", "ok"),
    [("ann@example.com", True), ("bob.smith", True), ("", False), ("ann @x.com", False)],
)
def test_principal_problem_checks_the_format_only(principal: str, ok: bool) -> None:
    assert (identity_center_user_problem(principal) is None) is ok
    assert identity_center_user_problem("a" * 300) is not None
