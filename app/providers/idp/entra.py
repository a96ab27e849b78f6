"""Microsoft Entra ID group membership through Microsoft Graph, in the mode the flow names:

- `pim`: an active assignment through Privileged Identity Management for Groups
  (`assignmentScheduleRequests`, action adminAssign) that expires at the grant's end, so
  Entra itself ends it when every Latchkey process is down; an extension moves that end
  (adminExtend), a revoke removes it (adminRemove).
- `membership`: a plain member (`members/$ref`), ended by Latchkey's revoke and sweep.

The token comes from the client-credentials flow (msal, cached until it expires). A user is
found once by user principal name (an email by default) and its object id reused. Someone
already a member is reported and left as they are; in PIM mode an assignment that is
permanent or ends after the grant is never shortened or removed. Graph throttles with 429
and `Retry-After` (seconds): waited out and tried again.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from datetime import UTC, datetime
from typing import Any

from app.flows.targets import EntraGroupTarget
from app.providers.base import GrantSpec, ProviderError
from app.providers.idp.rest import Answer, RestApi, known_user
from app.ttlcache import TTLCache

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
PIM = "/v1.0/identityGovernance/privilegedAccess/group"
USER_ID_SECONDS = 3600.0
# A request in these states has done (or will do) what was asked; anything else (Denied,
# Failed, PendingApproval: the group's PIM policy wants its own approval) has not.
DONE = {"Provisioned", "Granted", "PendingProvisioning", "ScheduleCreated"}


def _retry_after(answer: Answer) -> float | None:
    try:
        return float(answer.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _error(answer: Answer) -> dict[str, Any]:
    body = answer.body if isinstance(answer.body, dict) else {}
    error = body.get("error")
    return error if isinstance(error, dict) else {}


def _error_text(answer: Answer) -> str:
    error = _error(answer)
    return f"{error.get('code', '?')}: {error.get('message', 'no message')}"[:300]


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


class EntraGroupProvider:
    name = "entra_group"
    # PIM assignments end at the grant's end; an extension grants again with the new end
    # (for plain membership that re-grant finds the member there and changes nothing).
    native_expiry = True

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        authority_url: str,
        graph_url: str,
    ) -> None:
        self._credentials = (tenant_id, client_id, client_secret, authority_url.rstrip("/"))
        self._msal: Any = None
        self._token_lock = threading.Lock()
        self._api = RestApi(
            "Microsoft Graph",
            graph_url,
            auth=self._auth,
            wait_after=_retry_after,
            error_text=_error_text,
        )
        self._user_ids = TTLCache(USER_ID_SECONDS, time.monotonic)

    # -- token and identities ------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}

    def _token(self) -> str:
        import msal  # only a worker granting in Entra loads it

        with self._token_lock:
            if self._msal is None:
                tenant, client_id, secret, authority = self._credentials
                # No instance discovery: the authority is the deployment's own setting, and
                # discovery would ask login.microsoftonline.com about any other host.
                self._msal = msal.ConfidentialClientApplication(
                    client_id,
                    client_credential=secret,
                    authority=f"{authority}/{tenant}",
                    instance_discovery=False,
                )
            try:
                result = self._msal.acquire_token_for_client(scopes=[GRAPH_SCOPE])
            except Exception as exc:  # network, TLS, a bad discovery document
                raise ProviderError(
                    f"Entra token: {type(exc).__name__}: {exc}", transient=True
                ) from None
        if "access_token" not in result:
            raise ProviderError(
                f"Entra token refused: {result.get('error')}: "
                f"{str(result.get('error_description', ''))[:300]}",
                transient=False,
            )
        return str(result["access_token"])

    def user_id(self, principal: str) -> str:
        return str(self._user_ids.get(principal.lower(), lambda: self._find_user(principal)))

    def _find_user(self, principal: str) -> str:
        path = f"/v1.0/users/{urllib.parse.quote(principal, safe='@')}"
        answer = self._api.call("GET", path, params={"$select": "id"}, accept=(404,))
        if answer.status == 404:
            raise ProviderError(f"Entra ID has no user {principal!r}", transient=False)
        return str(answer.body["id"])

    # -- the provider ---------------------------------------------------------------------

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        target: EntraGroupTarget = spec.target
        user_id = self.user_id(spec.principal)
        details = {"group_id": target.group_id, "entra_user_id": user_id, "mode": target.mode}
        if target.mode == "pim":
            return {**details, **self._assign(target, user_id, spec.expires_at)}
        answer = self._api.call(
            "POST",
            f"/v1.0/groups/{target.group_id}/members/$ref",
            json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{user_id}"},
            ok=(204,),
            accept=(400,),
        )
        if answer.status == 400:
            if "already exist" not in str(_error(answer).get("message", "")):
                raise ProviderError(f"Microsoft Graph: {_error_text(answer)}", transient=False)
            return {**details, "already_member": True}
        return details

    def revoke(self, spec: GrantSpec) -> dict[str, Any]:
        target: EntraGroupTarget = spec.target
        user_id = known_user(self.user_id, spec.principal)
        if user_id is None:
            return {"group_id": target.group_id, "already_absent": True, "why": "no such user"}
        details = {"group_id": target.group_id, "entra_user_id": user_id, "mode": target.mode}
        if target.mode == "pim":
            return {**details, **self._unassign(target, user_id)}
        answer = self._api.call(
            "DELETE", f"/v1.0/groups/{target.group_id}/members/{user_id}/$ref", accept=(404,)
        )
        return {**details, "already_absent": True} if answer.status == 404 else details

    def check(self, spec: GrantSpec) -> bool:
        target: EntraGroupTarget = spec.target
        user_id = self.user_id(spec.principal)
        if target.mode == "pim":
            return self._instance(target, user_id) is not None
        members = self._api.pages(
            f"/v1.0/groups/{target.group_id}/members", _next_link, **{"$select": "id"}
        )
        return any(m.get("id") == user_id for m in members)

    def verify(self, target: EntraGroupTarget) -> list[str]:
        answer = self._api.call("GET", f"/v1.0/groups/{target.group_id}", accept=(404,))
        if answer.status == 404:
            return [f"Entra group {target.group_id} does not exist"]
        if target.mode == "pim":
            # Reading the group's assignments needs the PIM permission granting does.
            self._api.call(
                "GET",
                f"{PIM}/assignmentScheduleInstances",
                params={"$filter": f"groupId eq '{target.group_id}'"},
            )
        return []

    def principal_key(self, principal: str) -> str:
        return principal.lower()

    # -- PIM for Groups -------------------------------------------------------------------

    def _request(self, target: EntraGroupTarget, user_id: str, action: str, **more: Any) -> Answer:
        body = {
            "accessId": "member",
            "principalId": user_id,
            "groupId": target.group_id,
            "action": action,
            "justification": "Latchkey: approved just-in-time access",
            **more,
        }
        return self._api.call("POST", f"{PIM}/assignmentScheduleRequests", json=body, accept=(400,))

    def _schedule(self, end: datetime) -> dict[str, Any]:
        return {
            "scheduleInfo": {
                "startDateTime": _stamp(datetime.now(UTC)),
                "expiration": {"type": "afterDateTime", "endDateTime": _stamp(end)},
            }
        }

    def _done(self, answer: Answer, action: str) -> None:
        status = answer.body.get("status") if isinstance(answer.body, dict) else None
        if status not in DONE:
            raise ProviderError(
                f"Entra PIM {action}: the request is {status} (a PIM policy on the group that "
                "asks for its own approval or refuses the duration?)",
                transient=False,
            )

    def _instance(self, target: EntraGroupTarget, user_id: str) -> dict[str, Any] | None:
        """The user's active member assignment of the group, or None."""
        answer = self._api.call(
            "GET",
            f"{PIM}/assignmentScheduleInstances",
            params={"$filter": f"groupId eq '{target.group_id}' and principalId eq '{user_id}'"},
        )
        found = [i for i in answer.body.get("value", []) if i.get("accessId") == "member"]
        return found[0] if found else None

    def _assign(self, target: EntraGroupTarget, user_id: str, end: datetime) -> dict[str, Any]:
        answer = self._request(target, user_id, "adminAssign", **self._schedule(end))
        if answer.status != 400:
            self._done(answer, "adminAssign")
            return {"pim_request": answer.body.get("id"), "ends": _stamp(end)}
        if _error(answer).get("code") != "RoleAssignmentExists":
            raise ProviderError(f"Entra PIM adminAssign: {_error_text(answer)}", transient=False)
        instance = self._instance(target, user_id)
        held = _parse(instance.get("endDateTime")) if instance else None
        if instance is not None and (held is None or held > end):
            # Permanent, or longer than this grant: someone else's; never shortened.
            return {"already_member": True, "assignment_ends": instance.get("endDateTime")}
        if held is not None and held == end:
            return {"ends": _stamp(end)}  # ours, granted before (a retry)
        moved = self._request(target, user_id, "adminExtend", **self._schedule(end))
        if moved.status == 400:
            raise ProviderError(f"Entra PIM adminExtend: {_error_text(moved)}", transient=False)
        self._done(moved, "adminExtend")
        return {"pim_request": moved.body.get("id"), "ends": _stamp(end), "extended": True}

    def _unassign(self, target: EntraGroupTarget, user_id: str) -> dict[str, Any]:
        # An assignment that was there before the grant never gets here: app.access leaves
        # it (the keyed `granted` event says so), whatever its end.
        answer = self._request(target, user_id, "adminRemove")
        if answer.status == 400:
            if _error(answer).get("code") == "RoleAssignmentDoesNotExist":
                return {"already_absent": True}  # ended by Entra at its end already
            raise ProviderError(f"Entra PIM adminRemove: {_error_text(answer)}", transient=False)
        return {"pim_request": answer.body.get("id")}


def _next_link(answer: Answer) -> str | None:
    return answer.body.get("@odata.nextLink") if isinstance(answer.body, dict) else None
