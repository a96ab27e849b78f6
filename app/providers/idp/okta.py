"""Okta group membership through Okta's Groups API: the requester's Okta user (found once by
login, an email by default) is added to an OKTA_GROUP and removed at the end.

Okta keeps no expiry on a membership, so the end is Latchkey's revoke (a timed task and the
sweep) with reconciliation behind it. Someone already in the group when the grant is made
is reported and left there at the end (app.access reads that from the keyed `granted`
event). Okta throttles by the minute and says when the window resets
(`X-Rate-Limit-Reset`, UTC epoch seconds): a throttled call waits for it and tries again.
"""

from __future__ import annotations

import time
import urllib.parse
from email.utils import parsedate_to_datetime
from typing import Any

from app.flows.targets import OktaGroupTarget
from app.providers.base import GrantSpec, ProviderError
from app.providers.idp.rest import Answer, RestApi, known_user
from app.ttlcache import TTLCache

# How long a login's Okta user id is reused: ids never change; a deleted and re-created
# user gets a new one, seen within this time.
USER_ID_SECONDS = 3600.0


def _reset_wait(answer: Answer) -> float | None:
    """Seconds until Okta's rate-limit window resets, by Okta's own clock (its Date header),
    plus one, as Okta's SDKs wait."""
    reset = answer.headers.get("X-Rate-Limit-Reset")
    if reset is None:
        return None
    try:
        now = parsedate_to_datetime(answer.headers["Date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        now = time.time()
    try:
        return max(float(reset) - now, 0.0) + 1.0
    except ValueError:
        return None


def _next_link(answer: Answer) -> str | None:
    return answer.links.get("next", {}).get("url")


def _error_text(answer: Answer) -> str:
    body = answer.body if isinstance(answer.body, dict) else {}
    summary = body.get("errorSummary") or "no error summary"
    return f"{body.get('errorCode', '?')} {summary}"[:300]


class OktaGroupProvider:
    name = "okta_group"
    native_expiry = False

    def __init__(self, org_url: str, api_token: str) -> None:
        self._api = RestApi(
            "Okta",
            org_url,
            auth=lambda: {"Authorization": f"SSWS {api_token}", "Accept": "application/json"},
            wait_after=_reset_wait,
            error_text=_error_text,
        )
        self._user_ids = TTLCache(USER_ID_SECONDS, time.monotonic)

    def user_id(self, login: str) -> str:
        """The Okta user id of a login, looked up once (per USER_ID_SECONDS)."""
        return str(self._user_ids.get(login.lower(), lambda: self._find_user(login)))

    def _find_user(self, login: str) -> str:
        path = f"/api/v1/users/{urllib.parse.quote(login, safe='')}"
        answer = self._api.call("GET", path, accept=(404,))
        if answer.status == 404:
            raise ProviderError(f"Okta has no user with login {login!r}", transient=False)
        return str(answer.body["id"])

    def _is_member(self, group_id: str, user_id: str) -> bool:
        return any(u.get("id") == user_id for u in self._group_users(group_id))

    def _group_users(self, group_id: str) -> list[dict[str, Any]]:
        # Okta pages with a Link header (rel="next"); 200 a page is its recommended size.
        return self._api.pages(f"/api/v1/groups/{group_id}/users", _next_link, limit="200")

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        target: OktaGroupTarget = spec.target
        user_id = self.user_id(spec.principal)
        details: dict[str, Any] = {"group_id": target.group_id, "okta_user_id": user_id}
        # Okta answers 204 whether or not the user was in the group: ask first, so someone
        # already a member is reported and left a member at the end.
        if self._is_member(target.group_id, user_id):
            return {**details, "already_member": True}
        self._api.call("PUT", f"/api/v1/groups/{target.group_id}/users/{user_id}", ok=(204,))
        return details

    def revoke(self, spec: GrantSpec) -> dict[str, Any]:
        target: OktaGroupTarget = spec.target
        user_id = known_user(self.user_id, spec.principal)
        if user_id is None:
            return {"group_id": target.group_id, "already_absent": True, "why": "no such user"}
        answer = self._api.call(
            "DELETE", f"/api/v1/groups/{target.group_id}/users/{user_id}", accept=(404,)
        )
        details = {"group_id": target.group_id, "okta_user_id": user_id}
        return {**details, "already_absent": True} if answer.status == 404 else details

    def check(self, spec: GrantSpec) -> bool:
        target: OktaGroupTarget = spec.target
        return self._is_member(target.group_id, self.user_id(spec.principal))

    def verify(self, target: OktaGroupTarget) -> list[str]:
        """`flows check --online`: the group exists and is one Okta lets us change."""
        answer = self._api.call("GET", f"/api/v1/groups/{target.group_id}", accept=(404,))
        if answer.status == 404:
            return [f"Okta group {target.group_id} does not exist"]
        kind = answer.body.get("type")
        if kind != "OKTA_GROUP":
            return [
                f"Okta group {target.group_id} is a {kind}: only OKTA_GROUP memberships can be "
                "changed through the API (app groups are imported from their app)"
            ]
        return []

    def member_scope(self, target: OktaGroupTarget) -> str:
        return target.resource

    def members(self, target: OktaGroupTarget) -> dict[str, set[str]]:
        """Every member's login, from one paged read of the group (reconciliation)."""
        logins = {
            str(u.get("profile", {}).get("login", "")).lower()
            for u in self._group_users(target.group_id)
        }
        return {target.resource: logins - {""}}

    def lists_own(self, target: OktaGroupTarget) -> bool:
        return False  # Okta does not say who added a member: never judged as an orphan

    def principal_key(self, principal: str) -> str:
        return principal.lower()  # Okta logins compare without case
