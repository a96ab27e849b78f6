"""AWS IAM group membership: the requester's IAM user joins the target group.

IAM group membership has no native expiry, so this target relies on Latchkey's revoke
(countdown task plus sweep). Targets with native expiry arrive with the role provider.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from app.flows.schema import AwsIamGroupTarget
from app.providers.aws_errors import aws_error as _error
from app.providers.base import GrantSpec, ProviderError


class AwsIamGroupProvider:
    name = "aws_iam_group"

    def __init__(self, iam_client: Any) -> None:
        self._iam = iam_client

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        target: AwsIamGroupTarget = spec.target
        try:
            # AddUserToGroup is idempotent: adding a member again succeeds.
            self._iam.add_user_to_group(GroupName=target.group_name, UserName=spec.principal)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchEntity":
                raise ProviderError(
                    f"IAM user {spec.principal!r} or group {target.group_name!r} does not exist",
                    transient=False,
                ) from None
            raise _error(exc, "AddUserToGroup") from None
        except (BotoCoreError, EndpointConnectionError) as exc:
            raise _error(exc, "AddUserToGroup") from None
        return {"group_name": target.group_name, "iam_user": spec.principal}

    def revoke(self, spec: GrantSpec) -> dict[str, Any]:
        target: AwsIamGroupTarget = spec.target
        try:
            self._iam.remove_user_from_group(GroupName=target.group_name, UserName=spec.principal)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchEntity":
                raise _error(exc, "RemoveUserFromGroup") from None
            # Not a member (or gone): the access is already absent, which is what we want.
            return {
                "group_name": target.group_name,
                "iam_user": spec.principal,
                "already_absent": True,
            }
        except (BotoCoreError, EndpointConnectionError) as exc:
            raise _error(exc, "RemoveUserFromGroup") from None
        return {"group_name": target.group_name, "iam_user": spec.principal}

    def verify(self, target: AwsIamGroupTarget) -> list[str]:
        """Online check for `latchkey flows check --online`: the group exists."""
        try:
            self._iam.get_group(GroupName=target.group_name, MaxItems=1)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchEntity":
                return [f"IAM group {target.group_name!r} does not exist"]
            raise _error(exc, "GetGroup") from None
        return []

    def provisioned(self, target: AwsIamGroupTarget) -> list[str] | None:
        """The group's members when the target says Latchkey manages it exclusively.

        Otherwise None: IAM does not record who added a member, so a member added by
        hand cannot be told from one added by Latchkey.
        """
        return sorted(self._members(target.group_name)) if target.exclusive else None

    def member_scope(self, target: AwsIamGroupTarget) -> str:
        """Targets naming one group are answered by one `members` read (reconciliation)."""
        return target.group_name

    def members(self, target: AwsIamGroupTarget) -> dict[str, set[str]]:
        """Every member of the target's group, by its resource, from one paged GetGroup."""
        return {target.resource: self._members(target.group_name)}

    def lists_own(self, target: AwsIamGroupTarget) -> bool:
        """Is every member `members` lists Latchkey's to judge? Only in an exclusive group."""
        return target.exclusive

    def _members(self, group_name: str) -> set[str]:
        members: set[str] = set()
        try:
            # 1,000 a page (IAM's most): a group of any size Latchkey grants is one call.
            pages = self._iam.get_paginator("get_group").paginate(
                GroupName=group_name, PaginationConfig={"PageSize": 1000}
            )
            for page in pages:
                members.update(u["UserName"] for u in page["Users"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchEntity":
                return set()  # no group, no members
            raise _error(exc, "GetGroup") from None
        except BotoCoreError as exc:
            raise _error(exc, "GetGroup") from None
        return members

    def principal_key(self, principal: str) -> str:
        # IAM user names are unique regardless of case.
        return principal.lower()

    def check(self, spec: GrantSpec) -> bool:
        target: AwsIamGroupTarget = spec.target
        try:
            paginator = self._iam.get_paginator("list_groups_for_user")
            for page in paginator.paginate(UserName=spec.principal):
                if any(g["GroupName"] == target.group_name for g in page["Groups"]):
                    return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchEntity":
                return False
            raise _error(exc, "ListGroupsForUser") from None
        except BotoCoreError as exc:
            raise _error(exc, "ListGroupsForUser") from None
        return False
