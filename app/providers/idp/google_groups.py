"""Google Workspace / Cloud Identity group membership through the Cloud Identity Groups API,
with Google's own expiry: the membership is created with `expiryDetail.expireTime` at the
grant's end, so Google removes it even when every Latchkey process is down. An extension
moves that time (`modifyMembershipRoles`, field mask `expiry_detail.expire_time`); a
revoke deletes the membership.

Google publishes no cloud client library for this API, so this uses its discovery-based
client (google-api-python-client) with the discovery document the package ships: nothing
is fetched at start. Credentials are Application Default Credentials with the Groups scope;
only with LATCHKEY_GOOGLE_GROUPS_ENDPOINT set (tests, demos) are they anonymous.

Someone already a member (no expiry, or one later than the grant's) is reported and left
as they are: never shortened, and never removed at the end (app.access reads that from
the keyed `granted` event).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

from app.flows.targets import GoogleGroupTarget
from app.providers.base import GrantSpec, ProviderError
from app.ttlcache import TTLCache

SCOPES = ["https://www.googleapis.com/auth/cloud-identity.groups"]
TIMEOUT = 15
# execute()'s own retries of a 429 or 5xx, with its exponential backoff; after them the
# grant task retries (a throttled grant is never failed).
RETRIES = 3
GROUP_NAME_SECONDS = 3600.0
FIELD_MASK = "expiry_detail.expire_time"  # the only field of a role that may be updated


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def build_groups_service(endpoint: str | None) -> Any:
    import google.auth
    import google_auth_httplib2
    import httplib2
    from googleapiclient.discovery import build

    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        credentials: Any = AnonymousCredentials()
    else:
        credentials, _ = google.auth.default(scopes=SCOPES)
    # httplib2 waits for ever by default; every call gets TIMEOUT.
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=TIMEOUT))
    options = {"api_endpoint": endpoint.rstrip("/") + "/"} if endpoint else None
    return build(
        "cloudidentity",
        "v1",
        http=http,
        static_discovery=True,
        cache_discovery=False,
        client_options=options,
    )


class GoogleGroupProvider:
    name = "google_group"
    native_expiry = True

    def __init__(self, service: Any) -> None:
        self._service = service
        # httplib2 connections are not shared between threads safely.
        self._lock = threading.Lock()
        self._group_names = TTLCache(GROUP_NAME_SECONDS, time.monotonic)

    def _run(self, what: str, call: Any, *, absent_ok: bool = False) -> Any:
        """Execute one API call; None for a 404 when `absent_ok`; ProviderError otherwise."""
        from googleapiclient.errors import HttpError
        from httplib2 import HttpLib2Error

        try:
            with self._lock:
                return call.execute(num_retries=RETRIES)
        except HttpError as exc:
            status, reason = exc.status_code, _reason(exc)
            if status == 404 and absent_ok:
                return None
            transient = status == 429 or status >= 500
            raise ProviderError(
                f"Google Groups {what}: HTTP {status} {reason}", transient=transient
            ) from None
        except (OSError, HttpLib2Error) as exc:
            raise ProviderError(
                f"Google Groups {what}: {type(exc).__name__}: {exc}", transient=True
            ) from None

    def group_name(self, email: str) -> str:
        """`groups/<id>` of a group's email, looked up once (per GROUP_NAME_SECONDS)."""
        return str(self._group_names.get(email.lower(), lambda: self._lookup_group(email)))

    def _lookup_group(self, email: str) -> str:
        groups = self._service.groups()
        try:
            found = self._run("lookup", groups.lookup(groupKey_id=email))
        except ProviderError as exc:
            if exc.transient:
                raise
            # Google answers 403 for a group that does not exist and for one we may not see.
            raise ProviderError(
                f"Google group {email!r} does not exist or Latchkey may not manage it ({exc})",
                transient=False,
            ) from None
        return str(found["name"])

    def _membership(self, group: str, member: str) -> str | None:
        memberships = self._service.groups().memberships()
        found = self._run(
            "memberships.lookup",
            memberships.lookup(parent=group, memberKey_id=member),
            absent_ok=True,
        )
        return str(found["name"]) if found else None

    def _expiry(self, name: str) -> datetime | None:
        """The end of a membership's MEMBER role; None for a membership without one."""
        membership = self._run(
            "memberships.get", self._service.groups().memberships().get(name=name)
        )
        for role in membership.get("roles", []):
            expires = role.get("expiryDetail", {}).get("expireTime")
            if role.get("name") == "MEMBER" and expires:
                return _parse(expires)
        return None

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        target: GoogleGroupTarget = spec.target
        group = self.group_name(target.group_email)
        end = spec.expires_at.astimezone(UTC).replace(microsecond=0)
        ends = _stamp(end)
        details: dict[str, Any] = {"group": target.group_email, "expires": ends}
        name = self._membership(group, spec.principal)
        if name is None:
            name = self._create(group, spec.principal, ends)
            if name is not None:
                return {**details, "membership": name}
            name = self._membership(group, spec.principal)  # made meanwhile (409)
            if name is None:
                raise ProviderError("Google Groups: the membership came and went", transient=True)
        held = self._expiry(name)
        if held is None or held > end:
            # A standing member, or one until later: theirs, left exactly as it is.
            return {**details, "membership": name, "already_member": True,
                    "member_until": _stamp(held) if held else None}  # fmt: skip
        if held < end:
            self._set_expiry(name, ends)  # an extension, or an earlier end moved out
        return {**details, "membership": name}

    def _create(self, group: str, member: str, ends: str) -> str | None:
        """The new membership's name; None when Google says it exists already."""
        body = {
            "preferredMemberKey": {"id": member},
            "roles": [{"name": "MEMBER", "expiryDetail": {"expireTime": ends}}],
        }
        try:
            operation = self._run(
                "memberships.create",
                self._service.groups().memberships().create(parent=group, body=body),
            )
        except ProviderError as exc:
            if "ALREADY_EXISTS" in str(exc):
                return None
            raise
        if not operation.get("done"):
            # The API answers create finished; an operation still running is retried.
            raise ProviderError("Google Groups memberships.create did not finish", transient=True)
        return str(operation.get("response", {}).get("name", ""))

    def _set_expiry(self, name: str, ends: str) -> None:
        body = {
            "updateRolesParams": [
                {
                    "fieldMask": FIELD_MASK,
                    "membershipRole": {"name": "MEMBER", "expiryDetail": {"expireTime": ends}},
                }
            ]
        }
        memberships = self._service.groups().memberships()
        self._run(
            "memberships.modifyMembershipRoles",
            memberships.modifyMembershipRoles(name=name, body=body),
        )

    def revoke(self, spec: GrantSpec) -> dict[str, Any]:
        target: GoogleGroupTarget = spec.target
        details: dict[str, Any] = {"group": target.group_email}
        name = self._membership(self.group_name(target.group_email), spec.principal)
        if name is None:
            return {**details, "already_absent": True}  # Google ended it at its expiry
        gone = self._run(
            "memberships.delete",
            self._service.groups().memberships().delete(name=name),
            absent_ok=True,
        )
        return {**details, "membership": name, **({"already_absent": True} if gone is None else {})}

    def check(self, spec: GrantSpec) -> bool:
        target: GoogleGroupTarget = spec.target
        return self._membership(self.group_name(target.group_email), spec.principal) is not None

    def verify(self, target: GoogleGroupTarget) -> list[str]:
        """`flows check --online`: the group exists and its members can be read."""
        try:
            group = self.group_name(target.group_email)
        except ProviderError as exc:
            if exc.transient:
                raise
            return [str(exc)]
        memberships = self._service.groups().memberships()
        self._run("memberships.list", memberships.list(parent=group, pageSize=1))
        return []

    def member_scope(self, target: GoogleGroupTarget) -> str:
        return target.resource

    def members(self, target: GoogleGroupTarget) -> dict[str, set[str]]:
        """Every member's email, from one paged list of the group (reconciliation)."""
        memberships = self._service.groups().memberships()
        request = memberships.list(parent=self.group_name(target.group_email), pageSize=200)
        found: set[str] = set()
        while request is not None:
            page = self._run("memberships.list", request)
            found.update(
                str(m.get("preferredMemberKey", {}).get("id", "")).lower()
                for m in page.get("memberships", [])
            )
            request = memberships.list_next(request, page)
        return {target.resource: found - {""}}

    def lists_own(self, target: GoogleGroupTarget) -> bool:
        return False  # Google does not say who added a member: never judged as an orphan

    def principal_key(self, principal: str) -> str:
        return principal.lower()


def _reason(exc: Any) -> str:
    """Google's status word and message from an HttpError's body (ALREADY_EXISTS: …)."""
    try:
        error = json.loads(exc.content)["error"]
        return f"{error.get('status', '')}: {error.get('message', '')}"[:300]
    except (ValueError, KeyError, TypeError):
        return str(getattr(exc, "reason", ""))[:300]
