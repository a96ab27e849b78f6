"""The right to assume an AWS role, which AWS itself takes back at the grant's end.

Grant writes an inline policy on the requester's IAM user: Allow sts:AssumeRole on the role
while `aws:CurrentTime` is before the end. Sessions already assumed outlive that right (up
to the role's session duration), so revoke also denies, on the role, every session of that
user issued before the revoke (AWS's "revoke active sessions" pattern). That works only when
the role's trust policy makes the session name the IAM user name, which verify() checks.
The iam client must manage both the users and the role (one account).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import unquote

from botocore.exceptions import BotoCoreError, ClientError

from app.flows.schema import AwsRoleTarget
from app.providers.aws_errors import aws_error, error_code
from app.providers.base import GrantSpec, ProviderError

REVOKED_POLICY = "latchkey-revoked-sessions"
_TIME = "%Y-%m-%dT%H:%M:%SZ"
_MAX_SESSION = timedelta(hours=12)  # the longest session any role allows
_MAX_ROLE_POLICY = 10_240  # IAM's limit for a role's inline policies, whitespace excluded
_BINDING = ("sts:RoleSessionName", "${aws:username}")
_ASSUME = {"sts:assumerole", "sts:*", "*"}  # actions are case-insensitive


class AwsRoleProvider:
    name = "aws_role"
    native_expiry: ClassVar[bool] = True

    def __init__(self, iam: Any) -> None:
        self._iam = iam

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        target: AwsRoleTarget = spec.target
        # Fractions of a second are dropped: access ends at, never after, the grant's end.
        until = _utc(spec.expires_at).strftime(_TIME)
        statement = {
            "Sid": "LatchkeyAssumeRoleUntil",
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Resource": target.role_arn,
            "Condition": {"DateLessThan": {"aws:CurrentTime": until}},
        }
        try:
            # PutUserPolicy replaces a policy of the same name: granting again (an
            # extension) moves the end.
            self._iam.put_user_policy(
                UserName=spec.principal,
                PolicyName=_policy_name(target),
                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
            )
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) == "NoSuchEntity":
                raise ProviderError(
                    f"IAM user {spec.principal!r} does not exist", transient=False
                ) from None
            raise aws_error(exc, "PutUserPolicy") from None
        return {**_details(target, spec.principal), "expires_at": until}

    def revoke(self, spec: GrantSpec) -> dict[str, Any]:
        target: AwsRoleTarget = spec.target
        details = _details(target, spec.principal)
        try:
            self._iam.delete_user_policy(UserName=spec.principal, PolicyName=_policy_name(target))
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) != "NoSuchEntity":
                raise aws_error(exc, "DeleteUserPolicy") from None
            details["already_absent"] = True  # no policy (or no user): the right is gone
        # Done even when the policy was already gone: a revoke that failed half-way is retried.
        details["sessions_issued_before"] = self._end_sessions(target, spec.principal)
        return details

    def check(self, spec: GrantSpec) -> bool:
        target: AwsRoleTarget = spec.target
        answer = self._get(
            self._iam.get_user_policy,
            "GetUserPolicy",
            UserName=spec.principal,
            PolicyName=_policy_name(target),
        )
        if answer is None:
            return False
        ends = [
            _parse(s.get("Condition", {}).get("DateLessThan", {}).get("aws:CurrentTime"))
            for s in _statements(answer["PolicyDocument"])
            if s.get("Effect") == "Allow" and s.get("Resource") == target.role_arn
        ]
        return any(end > datetime.now(UTC) for end in ends)

    def provisioned(self, target: AwsRoleTarget) -> list[str]:
        """IAM users whose `latchkey-<role>` policy still lets them assume the role.

        IAM cannot be asked who holds a policy of a given name, so this reads every
        user's inline policy names: ListUsers (paged) and one ListUserPolicies per user.
        """
        name, holders = _policy_name(target), []
        try:
            for page in self._iam.get_paginator("list_users").paginate():
                for user in page["Users"]:
                    if name in self._policy_names(user["UserName"]):
                        holders.append(user["UserName"])
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc, "ListUsers") from None
        # Only policies Latchkey wrote for this role ARN, still in force, are its access.
        return [u for u in holders if self.check(GrantSpec(u, target, datetime.now(UTC)))]

    def principal_key(self, principal: str) -> str:
        # IAM user names are unique regardless of case.
        return principal.lower()

    def _policy_names(self, user: str) -> list[str]:
        names: list[str] = []
        try:
            for page in self._iam.get_paginator("list_user_policies").paginate(UserName=user):
                names.extend(page["PolicyNames"])
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) == "NoSuchEntity":
                return []  # deleted since ListUsers
            raise aws_error(exc, "ListUserPolicies") from None
        return names

    def verify(self, target: AwsRoleTarget) -> list[str]:
        """Online checks: each problem is a sentence naming the role."""
        try:
            answer = self._get(self._iam.get_role, "GetRole", RoleName=target.role_name)
        except ProviderError as exc:
            return [f"cannot read IAM role {target.role_arn}: {exc}"]
        if answer is None:
            return [f"IAM role {target.role_arn} does not exist"]
        role = answer["Role"]
        problems = []
        if role["Arn"] != target.role_arn:
            problems.append(
                f"role_arn {target.role_arn} is not the role Latchkey manages under that name "
                f"({role['Arn']}): the role must be in the account of Latchkey's IAM client"
            )
        if not _binds_session_name(role["AssumeRolePolicyDocument"]):
            problems.append(
                f"the trust policy of {target.role_arn} lets an IAM user assume it without "
                'Condition {"StringEquals": {"sts:RoleSessionName": "${aws:username}"}}, so a '
                "revoke cannot end sessions already assumed"
            )
        return problems

    def _end_sessions(self, target: AwsRoleTarget, user: str) -> str | None:
        """Deny the role to this user's sessions issued up to now. Returns that time."""
        answer = self._get(self._iam.get_role, "GetRole", RoleName=target.role_name)
        if answer is None:
            return None  # no role, no sessions
        role = answer["Role"]
        if role["Arn"] != target.role_arn:
            raise ProviderError(
                f"cannot end sessions of {target.role_arn}: the role named {target.role_name} "
                f"here is {role['Arn']}",
                transient=False,
            )
        old = self._get(
            self._iam.get_role_policy,
            "GetRolePolicy",
            RoleName=target.role_name,
            PolicyName=REVOKED_POLICY,
        )
        statements = _statements(old["PolicyDocument"]) if old else []
        now = datetime.now(UTC)
        # Rounded up: a session issued earlier in this second is still "before the revoke".
        before = (now.replace(microsecond=0) + timedelta(seconds=1)).strftime(_TIME)
        userid = f"{role['RoleId']}:{user}"
        kept = [
            s
            for s in statements
            # A session issued before (now - longest session) has ended by itself.
            if _issued_before(s) > now - _MAX_SESSION and _userid(s) != userid
        ]
        kept.append(
            {
                "Sid": _sid(user),
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {
                    "StringLike": {"aws:userid": userid},
                    "DateLessThan": {"aws:TokenIssueTime": before},
                },
            }
        )
        kept.sort(key=_issued_before)
        # IAM counts all of a role's inline policies against the limit (other inline policies
        # make PutRolePolicy fail with LimitExceeded, a clear error). Over the limit (about
        # 40 users revoked within 12 h), the oldest revokes go first:
        # sessions those users assumed before their revoke may then run to their own end
        # (at most 12 h after it). Their right to assume the role again is gone regardless.
        while len(kept) > 1 and len(_compact(kept)) > _MAX_ROLE_POLICY:
            kept.pop(0)
        try:
            self._iam.put_role_policy(
                RoleName=target.role_name, PolicyName=REVOKED_POLICY, PolicyDocument=_compact(kept)
            )
        except (ClientError, BotoCoreError) as exc:
            raise aws_error(exc, "PutRolePolicy") from None
        return before

    def _get(self, call: Any, action: str, **kwargs: Any) -> Any:
        """The answer of an IAM read; None when the thing does not exist."""
        try:
            answer = call(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) == "NoSuchEntity":
                return None
            raise aws_error(exc, action) from None
        return answer


def _policy_name(target: AwsRoleTarget) -> str:
    # A role name is at most 64 characters, so this stays within IAM's 128.
    return f"latchkey-{target.role_name}"


def _details(target: AwsRoleTarget, user: str) -> dict[str, Any]:
    return {"policy_name": _policy_name(target), "role_arn": target.role_arn, "iam_user": user}


def _utc(moment: datetime) -> datetime:
    # Naive datetimes in Latchkey are UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _parse(value: Any) -> datetime:
    try:
        return datetime.strptime(str(value), _TIME).replace(tzinfo=UTC)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)  # unreadable: treated as long past


def _sid(user: str) -> str:
    # Sids are alphanumeric; the hash keeps "a.b" and "ab" apart.
    digest = hashlib.sha256(user.encode()).hexdigest()[:8]
    return "Revoked" + re.sub(r"[^A-Za-z0-9]", "", user) + digest


def _issued_before(statement: dict[str, Any]) -> datetime:
    return _parse(statement.get("Condition", {}).get("DateLessThan", {}).get("aws:TokenIssueTime"))


def _userid(statement: dict[str, Any]) -> Any:
    return statement.get("Condition", {}).get("StringLike", {}).get("aws:userid")


def _compact(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))


def _statements(document: Any) -> list[dict[str, Any]]:
    # boto3 decodes IAM policy documents; a raw URL-encoded string is decoded here.
    if isinstance(document, str):
        document = json.loads(unquote(document))
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _binds_session_name(trust: Any) -> bool:
    """Does every statement letting IAM principals assume the role bind the session name?"""
    allows = [
        s
        for s in _statements(trust)
        if s.get("Effect") == "Allow"
        and any(a.lower() in _ASSUME for a in _as_list(s.get("Action")))
        and (s.get("Principal") == "*" or "AWS" in (s.get("Principal") or {}))
    ]
    return bool(allows) and all(
        _as_list(s.get("Condition", {}).get("StringEquals", {}).get(_BINDING[0])) == [_BINDING[1]]
        for s in allows
    )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
