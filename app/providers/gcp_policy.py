"""Time-bound IAM bindings on one GCP resource's policy, shared by the GCP providers.

Latchkey's access is one binding per (role, member) carrying an IAM condition
`request.time < timestamp("…Z")`, so Google itself stops honouring it at the grant's end
even when every Latchkey process is down. A policy is one document shared with everyone
else who manages the resource, so every change is a read-modify-write guarded by the etag,
retried from a fresh read when someone else wrote in between, and touches nothing but
Latchkey's own bindings.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.iam.v1 import iam_policy_pb2, options_pb2, policy_pb2
from google.protobuf import field_mask_pb2
from google.type import expr_pb2

from app.providers.base import ProviderError
from app.providers.principals import GCP_MEMBER_TYPES

# Recognisable in the console; together with the exact expression shape it marks a binding
# as Latchkey's, so a hand-made conditional binding of the same role is never touched.
CONDITION_TITLE = "latchkey"
_EXPRESSION = 'request.time < timestamp("{}")'
_EXPRESSION_RE = re.compile(r'request\.time < timestamp\("(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"\)')
_REST_PREFIX = re.compile(r"^(?:GET|POST|PUT|PATCH|DELETE) \S+: ")
_TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"
# Conditions only survive a read and a write at policy version 3; at version 1 Google
# hides conditional bindings behind mangled role names.
POLICY_VERSION = 3
# Without an explicit mask Resource Manager writes only bindings and etag, not version.
_UPDATE_MASK = field_mask_pb2.FieldMask(paths=["bindings", "etag", "version"])

Clock = Callable[[], datetime]
Sleep = Callable[[float], None]


def member_of(principal: str) -> str:
    """The IAM member for a mapped principal: `user:<email>` unless it names its type."""
    kind, sep, _ = principal.partition(":")
    return principal if sep and kind in GCP_MEMBER_TYPES else f"user:{principal}"


def principal_key(principal: str) -> str:
    """One spelling per member: `ann@x.com` and `user:Ann@x.com` are the same to Google."""
    return member_of(principal).lower()


def principal_of(member: str) -> str:
    """A member as Latchkey maps principals by default: a user's bare email."""
    kind, sep, email = member.partition(":")
    return email if sep and kind == "user" else member


def expiry_expression(expires_at: datetime) -> str:
    # Whole seconds, rounded down: access ends at or before the grant's end, never after.
    return _EXPRESSION.format(_utc(expires_at).replace(microsecond=0).strftime(_TIMESTAMP))


def latchkey_expiry(binding: policy_pb2.Binding) -> datetime | None:
    """The end of a Latchkey binding; None for any binding that is not Latchkey's."""
    if not binding.HasField("condition") or binding.condition.title != CONDITION_TITLE:
        return None
    match = _EXPRESSION_RE.fullmatch(binding.condition.expression)
    if match is None:
        return None
    return datetime.strptime(match.group(1), _TIMESTAMP).replace(tzinfo=UTC)


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; Latchkey stores UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _is_ours(binding: policy_pb2.Binding, role: str, member: str) -> bool:
    # Google may change the case of an email; IAM treats emails case-insensitively.
    return (
        binding.role == role
        and latchkey_expiry(binding) is not None
        and member.lower() in (m.lower() for m in binding.members)
    )


def _without(binding: policy_pb2.Binding, member: str) -> policy_pb2.Binding | None:
    rest = [m for m in binding.members if m.lower() != member.lower()]
    if not rest:
        return None
    copy = policy_pb2.Binding()
    copy.CopyFrom(binding)
    del copy.members[:]
    copy.members.extend(rest)
    return copy


def error_for(exc: Exception, action: str, resource: str) -> ProviderError:
    """A ProviderError that says what went wrong and whether retrying can help."""
    # REST errors are classed by HTTP status alone (403 is Forbidden, not PermissionDenied;
    # 409 is Conflict, not Aborted), gRPC ones by status code; test the common bases.
    if isinstance(exc, gexc.Forbidden | gexc.NotFound | gexc.Unauthorized):
        # Google answers 403 for a project that does not exist, so one message covers both.
        return ProviderError(
            f"GCP refused {action} on {resource}: {_reason(exc)} — check that {resource} exists "
            "and that Latchkey's service account may get and set its IAM policy",
            transient=False,
        )
    if isinstance(exc, gexc.ServerError | gexc.TooManyRequests | gexc.Conflict | gexc.RetryError):
        return ProviderError(
            f"GCP {action} on {resource} failed, will retry: {exc}", transient=True
        )
    if isinstance(exc, gexc.GoogleAPICallError):
        return ProviderError(
            f"GCP rejected {action} on {resource}: {exc.code} {_reason(exc)}", transient=False
        )
    if isinstance(exc, auth_exc.RefreshError):
        retryable = bool(getattr(exc, "retryable", False))
        return ProviderError(f"GCP credentials for {action} failed: {exc}", transient=retryable)
    # The REST transport lets connection errors from `requests` through unwrapped.
    return ProviderError(f"could not reach GCP for {action} on {resource}: {exc}", transient=True)


def _reason(exc: gexc.GoogleAPICallError) -> str:
    # The REST transport prefixes Google's message with "POST <url>: "; the URL says nothing
    # a person can act on.
    return _REST_PREFIX.sub("", exc.message or "").rstrip(".")


_CALL_ERRORS = (gexc.GoogleAPIError, requests.RequestException, auth_exc.GoogleAuthError)


class IamPolicyEditor:
    """Latchkey's bindings on the IAM policies served by one client.

    `client` is any generated Google client with `get_iam_policy`/`set_iam_policy` taking
    google.iam.v1 requests (Resource Manager projects or folders, IAM service accounts).
    """

    def __init__(
        self,
        client: Any,
        *,
        sleep: Sleep = time.sleep,
        clock: Clock = lambda: datetime.now(UTC),
        attempts: int = 5,
        backoff: float = 0.5,
        timeout: float = 30.0,
    ) -> None:
        self._client, self._sleep, self._clock = client, sleep, clock
        self._attempts, self._backoff, self._timeout = attempts, backoff, timeout

    def grant(
        self, resource: str, role: str, principal: str, expires_at: datetime
    ) -> dict[str, Any]:
        member, expression = member_of(principal), expiry_expression(expires_at)
        ours = policy_pb2.Binding(role=role, members=[member])
        ours.condition.CopyFrom(
            expr_pb2.Expr(
                title=CONDITION_TITLE,
                description=f"Latchkey just-in-time access for {member}",
                expression=expression,
            )
        )
        expired = 0

        def change(bindings: list[policy_pb2.Binding]) -> list[policy_pb2.Binding]:
            nonlocal expired
            now, placed, result = self._clock(), False, []
            expired = 0
            for binding in bindings:
                end = latchkey_expiry(binding)
                if _is_ours(binding, role, member):
                    # Replace in place (an extension rewrites the condition); later
                    # duplicates, say from a hand edit, go.
                    result.extend([ours] if not placed else [])
                    placed, rest = True, _without(binding, member)
                    result.extend([rest] if rest is not None else [])
                elif end is not None and end <= now:
                    expired += 1  # housekeeping: an expired binding grants nothing
                else:
                    result.append(binding)
            return result if placed else [*result, ours]

        self._read_modify_write(resource, change)
        details = {"resource": resource, "role": role, "member": member, "condition": expression}
        return details | ({"expired_removed": expired} if expired else {})

    def revoke(self, resource: str, role: str, principal: str) -> dict[str, Any]:
        member = member_of(principal)

        def change(bindings: list[policy_pb2.Binding]) -> list[policy_pb2.Binding]:
            result = []
            for binding in bindings:
                kept = _without(binding, member) if _is_ours(binding, role, member) else binding
                result.extend([kept] if kept is not None else [])
            return result

        wrote = self._read_modify_write(resource, change)
        details = {"resource": resource, "role": role, "member": member}
        return details if wrote else details | {"already_absent": True}

    def check(self, resource: str, role: str, principal: str) -> bool:
        member, now = member_of(principal), self._clock()
        for binding in self._get(resource).bindings:
            end = latchkey_expiry(binding)
            if end is not None and end > now and _is_ours(binding, role, member):
                return True
        return False

    def provisioned(self, resource: str, role: str) -> list[str]:
        """Principals holding `role` on `resource` through a Latchkey binding still in force."""
        now = self._clock()
        found: dict[str, str] = {}  # by principal_key, so one member is listed once
        for binding in self._get(resource).bindings:
            end = latchkey_expiry(binding)
            if binding.role == role and end is not None and end > now:
                for member in binding.members:
                    found.setdefault(principal_key(member), principal_of(member))
        return list(found.values())

    def holders(self, resource: str) -> dict[str, set[str]]:
        """By role, the principals holding it on `resource` through a Latchkey binding still
        in force: the whole policy from one getIamPolicy (reconciliation's read)."""
        now = self._clock()
        found: dict[str, set[str]] = {}
        for binding in self._get(resource).bindings:
            end = latchkey_expiry(binding)
            if end is not None and end > now:
                found.setdefault(binding.role, set()).update(
                    principal_of(m) for m in binding.members
                )
        return found

    def verify(self, resource: str, set_permission: str) -> list[str]:
        """Online check: the policy can be read and we hold the permission to write it."""
        try:
            self._get(resource)
            answer = self._client.test_iam_permissions(
                request=iam_policy_pb2.TestIamPermissionsRequest(
                    resource=resource, permissions=[set_permission]
                ),
                retry=None,
                timeout=self._timeout,
            )
        except ProviderError as exc:
            return [str(exc)]
        except _CALL_ERRORS as exc:
            return [str(error_for(exc, "testIamPermissions", resource))]
        if set_permission not in answer.permissions:
            return [
                f"Latchkey may read but not change the IAM policy of {resource} "
                f"(missing {set_permission})"
            ]
        return []

    def _read_modify_write(
        self, resource: str, change: Callable[[list[policy_pb2.Binding]], list[policy_pb2.Binding]]
    ) -> bool:
        """Apply `change` to the bindings; False when there was nothing to write."""
        for attempt in range(self._attempts):
            policy = self._get(resource)
            current = list(policy.bindings)
            bindings = change(current)
            if bindings == current:
                return False
            new = policy_pb2.Policy(
                version=POLICY_VERSION,
                etag=policy.etag,  # the guard: Google refuses it if anyone wrote since
                bindings=bindings,
                audit_configs=policy.audit_configs,
            )
            request = iam_policy_pb2.SetIamPolicyRequest(
                resource=resource, policy=new, update_mask=_UPDATE_MASK
            )
            try:
                self._client.set_iam_policy(request=request, retry=None, timeout=self._timeout)
                return True
            except gexc.Conflict:
                # REST answers 409 (Conflict), gRPC ABORTED (Aborted, a Conflict subclass):
                # someone else changed the policy since our read. Read again.
                if attempt + 1 < self._attempts:
                    self._sleep(self._backoff * 2**attempt)
            except _CALL_ERRORS as exc:
                raise error_for(exc, "setIamPolicy", resource) from None
        raise ProviderError(
            f"the IAM policy of {resource} kept changing under Latchkey "
            f"({self._attempts} attempts); will retry",
            transient=True,
        )

    def _get(self, resource: str) -> policy_pb2.Policy:
        request = iam_policy_pb2.GetIamPolicyRequest(
            resource=resource,
            options=options_pb2.GetPolicyOptions(requested_policy_version=POLICY_VERSION),
        )
        try:
            return self._client.get_iam_policy(request=request, retry=None, timeout=self._timeout)
        except _CALL_ERRORS as exc:
            raise error_for(exc, "getIamPolicy", resource) from None
