"""IAM Identity Center: assign a permission set on one account to the requester's user.

Account assignments have no native expiry, so this target relies on Latchkey's revoke
(countdown task plus sweep). Create and delete are asynchronous at AWS: the call returns a
request that we poll until it SUCCEEDED or FAILED.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError

from app.flows.schema import AwsSsoPermissionSetTarget
from app.providers.aws_errors import aws_error, call_with_backoff, error_code
from app.providers.base import GrantSpec, ProviderError

_SERVICE = "AWS IAM Identity Center"
# Identity Center answers ConflictException while another operation on the same assignment
# runs (a delete right after a create); both it and throttling pass after a short wait.
_RETRY_CODES = {"ConflictException", "ThrottlingException", "TooManyRequestsException"}
_BACKOFF = (0.5, 1.0, 2.0)  # seconds before the 2nd, 3rd and 4th (last) attempt


class AwsSsoPermissionSetProvider:
    name = "aws_sso"
    native_expiry: ClassVar[bool] = False

    def __init__(
        self,
        sso_admin: Any,
        identitystore: Any,
        *,
        organizations: Any = None,
        poll_interval: float = 1.0,
        poll_timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._sso = sso_admin
        self._ids = identitystore
        self._org = organizations  # optional: lets verify() look the account up
        self._poll_interval = poll_interval
        self._poll_timeout = poll_timeout
        self._sleep = sleep
        self._stores: dict[str, str] = {}  # instance ARN -> identity store id (never changes)

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        target: AwsSsoPermissionSetTarget = spec.target
        user_id = self._user_id(target, spec.principal)
        details = _details(target, spec.principal, user_id)
        if user_id is None:
            raise ProviderError(
                f"no Identity Center user with email or user name {spec.principal!r} in "
                f"identity store {self._store_id(target)}",
                transient=False,
            )
        # Checked first: whether AWS accepts a second identical assignment is undocumented.
        if self._assigned(target, user_id):
            return {**details, "already_present": True}
        started = self._call(self._sso, "create_account_assignment", **_assignment(target, user_id))
        status = self._wait(target, started["AccountAssignmentCreationStatus"], "Creation")
        if status["Status"] != "SUCCEEDED" and not self._assigned(target, user_id):
            raise ProviderError(
                f"{_SERVICE} could not assign {target.permission_set_arn} on account "
                f"{target.account_id} to {spec.principal!r}: {status.get('FailureReason')}",
                transient=False,
            )
        return {**details, "request_id": status.get("RequestId")}

    def revoke(self, spec: GrantSpec) -> dict[str, Any]:
        target: AwsSsoPermissionSetTarget = spec.target
        user_id = self._user_id(target, spec.principal)
        details = _details(target, spec.principal, user_id)
        if user_id is None:
            return {**details, "already_absent": True}  # a deleted user has no assignments
        # No "is it there?" shortcut: a create still IN_PROGRESS is not listed yet, while the
        # delete waits for it (ConflictException, retried) and then removes it.
        try:
            started = self._call(
                self._sso, "delete_account_assignment", **_assignment(target, user_id)
            )
            status = self._wait(target, started["AccountAssignmentDeletionStatus"], "Deletion")
        except ProviderError as exc:
            if exc.transient or self._assigned(target, user_id):
                raise
            return {**details, "already_absent": True}  # moto: ResourceNotFoundException
        if status["Status"] == "SUCCEEDED":
            return {**details, "request_id": status.get("RequestId")}
        if not self._assigned(target, user_id):
            return {**details, "already_absent": True}  # FAILED because there was none
        raise ProviderError(
            f"{_SERVICE} could not remove {target.permission_set_arn} on account "
            f"{target.account_id} from {spec.principal!r}: {status.get('FailureReason')}",
            transient=False,
        )

    def check(self, spec: GrantSpec) -> bool:
        target: AwsSsoPermissionSetTarget = spec.target
        user_id = self._user_id(target, spec.principal)
        return user_id is not None and self._assigned(target, user_id)

    def verify(self, target: AwsSsoPermissionSetTarget) -> list[str]:
        """Online checks: each problem is a sentence naming what is wrong."""
        try:
            store = self._instance_store(target.instance_arn)
        except ProviderError as exc:
            return [str(exc)]
        problems = []
        if target.identity_store_id not in (None, store):
            problems.append(
                f"identity_store_id {target.identity_store_id} is not the identity store of "
                f"{target.instance_arn} ({store})"
            )
        try:
            self._sso.describe_permission_set(
                InstanceArn=target.instance_arn, PermissionSetArn=target.permission_set_arn
            )
        except (ClientError, BotoCoreError) as exc:
            problems.append(
                f"permission set {target.permission_set_arn} does not exist on instance "
                f"{target.instance_arn}"
                if error_code(exc) == "ResourceNotFoundException"
                else f"cannot check permission set {target.permission_set_arn}: "
                f"{aws_error(exc, 'DescribePermissionSet', service=_SERVICE)}"
            )
        if self._org is not None:
            problems.extend(self._account_problems(target.account_id))
        return problems

    def _account_problems(self, account_id: str) -> list[str]:
        try:
            account = self._org.describe_account(AccountId=account_id)["Account"]
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) == "AccountNotFoundException":
                return [f"AWS account {account_id} is not in the organization"]
            failure = aws_error(exc, "DescribeAccount", service="AWS Organizations")
            return [f"cannot look up AWS account {account_id}: {failure}"]
        state = account.get("State") or account.get("Status")
        if state and state != "ACTIVE":
            return [f"AWS account {account_id} is {state}, not ACTIVE"]
        return []

    def _store_id(self, target: AwsSsoPermissionSetTarget) -> str:
        return target.identity_store_id or self._instance_store(target.instance_arn)

    def _instance_store(self, instance_arn: str) -> str:
        if instance_arn not in self._stores:
            try:
                for page in self._sso.get_paginator("list_instances").paginate():
                    for instance in page["Instances"]:
                        self._stores[instance["InstanceArn"]] = instance["IdentityStoreId"]
            except (ClientError, BotoCoreError) as exc:
                raise aws_error(exc, "ListInstances", service=_SERVICE) from None
            if instance_arn not in self._stores:
                raise ProviderError(
                    f"Identity Center instance {instance_arn} was not found "
                    "(sso-admin ListInstances)",
                    transient=False,
                )
        return self._stores[instance_arn]

    def _user_id(self, target: AwsSsoPermissionSetTarget, principal: str) -> str | None:
        store = self._store_id(target)
        # Email first (the default principal), then user name (a mapped principal).
        for path in ("emails.value", "userName"):
            found = self._call(
                self._ids,
                "get_user_id",
                IdentityStoreId=store,
                AlternateIdentifier={
                    "UniqueAttribute": {"AttributePath": path, "AttributeValue": principal}
                },
                not_found_ok=True,
            )
            if found is not None:
                return str(found["UserId"])
        return None

    def _assigned(self, target: AwsSsoPermissionSetTarget, user_id: str) -> bool:
        paginator = self._sso.get_paginator("list_account_assignments")
        pages = paginator.paginate(
            InstanceArn=target.instance_arn,
            AccountId=target.account_id,
            PermissionSetArn=target.permission_set_arn,
        )
        try:
            return any(
                a["PrincipalType"] == "USER" and a["PrincipalId"] == user_id
                for page in pages
                for a in page["AccountAssignments"]
            )
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc, "ListAccountAssignments", service=_SERVICE) from None

    def _wait(
        self, target: AwsSsoPermissionSetTarget, status: dict[str, Any], kind: str
    ) -> dict[str, Any]:
        """Poll an asynchronous create or delete until it leaves IN_PROGRESS."""
        waited = 0.0
        while status["Status"] == "IN_PROGRESS":
            if waited >= self._poll_timeout:
                raise ProviderError(
                    f"{_SERVICE} request {status.get('RequestId')} still IN_PROGRESS after "
                    f"{self._poll_timeout:g}s",
                    transient=True,
                )
            self._sleep(self._poll_interval)
            waited += self._poll_interval
            answer = self._call(
                self._sso,
                f"describe_account_assignment_{kind.lower()}_status",
                InstanceArn=target.instance_arn,
                **{f"AccountAssignment{kind}RequestId": status["RequestId"]},
            )
            status = answer[f"AccountAssignment{kind}Status"]
        return status

    def _call(self, client: Any, method: str, *, not_found_ok: bool = False, **kwargs: Any) -> Any:
        return call_with_backoff(
            getattr(client, method),
            "".join(part.title() for part in method.split("_")),  # the API's action name
            service=_SERVICE,
            retry_codes=_RETRY_CODES,
            sleep=self._sleep,
            backoff=_BACKOFF,
            not_found="ResourceNotFoundException" if not_found_ok else None,
            **kwargs,
        )


def _assignment(target: AwsSsoPermissionSetTarget, user_id: str) -> dict[str, str]:
    return {
        "InstanceArn": target.instance_arn,
        "TargetId": target.account_id,
        "TargetType": "AWS_ACCOUNT",
        "PermissionSetArn": target.permission_set_arn,
        "PrincipalType": "USER",
        "PrincipalId": user_id,
    }


def _details(target: AwsSsoPermissionSetTarget, user: str, user_id: str | None) -> dict[str, Any]:
    return {
        "instance_arn": target.instance_arn,
        "permission_set_arn": target.permission_set_arn,
        "account_id": target.account_id,
        "sso_user": user,
        "sso_user_id": user_id,
    }
