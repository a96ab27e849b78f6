"""A local stand-in for the Cloud Identity Groups API v1 (cloudidentity.googleapis.com), over
plain http, for google-api-python-client built with `client_options={"api_endpoint": url}` and
AnonymousCredentials: no Authorization header is sent, so none is checked.

Imitated: groups.lookup (403 PERMISSION_DENIED for a group one cannot see: Cloud Identity says
403, not 404), memberships lookup (404), get, list (`view`, `pageSize` with the documented
defaults of 200 for BASIC and 50 for FULL, `pageToken`), create and delete (answered with an
Operation that is already done), modifyMembershipRoles (updateRolesParams, in which only
`expiry_detail.expire_time` may be updated; addRoles and removeRoles are not imitated); 409 ALREADY_EXISTS "Error(4003)…" for a duplicate; 400 INVALID_ARGUMENT with a
google.rpc.BadRequest detail for a bad body; errors in the google.rpc.Status JSON shape; 429
RESOURCE_EXHAUSTED on demand (`throttle`). MEMBER expiry (`expiryDetail.expireTime`) is native:
a membership past its expireTime no longer exists, because Google ends access even while
Latchkey is down. Stricter than Google: unknown query parameters and body fields are refused
(Google refuses most), and expireTime must be Z-normalized ("RFC 3339 UTC").
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from typing import Any, Self

from app.testing.http_standin import HttpStandIn, QuietHandler

MEMBERSHIP_TYPE = "type.googleapis.com/google.apps.cloudidentity.groups.v1.Membership"
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"
# Parameters every Google API takes; googleapiclient always adds alt=json.
_SYSTEM = frozenset({"alt", "fields", "key", "prettyPrint", "quotaUser", "$.xgafv", "callback",
                     "access_token", "oauth_token", "uploadType", "upload_protocol"})  # fmt: skip
_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED"}  # fmt: skip
_ZULU = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z")
_FIELD_MASKS = frozenset({"expiry_detail.expire_time", "expiryDetail.expireTime"})
_ROLES = ("OWNER", "MANAGER", "MEMBER")
_ID = r"([^/:]+)"


class _Refusal(Exception):
    def __init__(self, code: int, message: str, violation: tuple[str, str] | None = None) -> None:
        super().__init__(message)
        error: dict[str, Any] = {"code": code, "message": message, "status": _STATUS[code]}
        if violation:
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                                 "fieldViolations": [{"field": violation[0],
                                                      "description": violation[1]}]}]  # fmt: skip
        self.code, self.body = code, {"error": error}


def _invalid(where: str, description: str) -> _Refusal:
    return _Refusal(400, "Request contains an invalid argument.", (where, description))


def _denied(resource: str) -> _Refusal:
    # 403, not 404: Cloud Identity does not say whether a group it will not show exists.
    return _Refusal(403, f"Error(2028): Permission denied for resource {resource} (or it may "
                         "not exist).")  # fmt: skip


def _stamp(moment: datetime) -> str:
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def _expire_time(value: Any, where: str) -> datetime:
    """A google-datetime that must be Z-normalized and still to come."""
    match = _ZULU.fullmatch(value) if isinstance(value, str) else None
    try:
        assert match is not None
        micro = int(((match.group(2) or "") + "000000")[:6])
        moment = datetime.fromisoformat(match.group(1)).replace(tzinfo=UTC, microsecond=micro)
    except (AssertionError, ValueError):
        raise _invalid(where, f"Invalid value {value!r}: not an RFC 3339 UTC timestamp") from None
    if moment <= datetime.now(UTC):
        raise _invalid(where, "The expiration time must be in the future.")
    return moment


def _known(obj: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _Refusal(400, f"Invalid JSON payload received. '{where}' must be an object.")
    for name in obj:
        if name not in allowed:
            raise _Refusal(400, f"Invalid JSON payload received. Unknown name \"{name}\" "
                                f"at '{where}': Cannot find field.")  # fmt: skip
    return obj


@dataclass
class _Membership:
    mid: str
    email: str
    kind: str  # USER, or GROUP when the member is a group this stand-in knows
    roles: list[str]
    expires: datetime | None  # of the MEMBER role; the only role that can expire
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated: datetime = field(default_factory=lambda: datetime.now(UTC))


class GoogleGroupsStandIn(HttpStandIn):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._emails: dict[str, str] = {}  # group email -> group id
        self._groups: dict[str, dict[str, _Membership]] = {}  # group id -> mid -> membership
        self._throttled = 0
        self.calls: list[tuple[str, str]] = []  # (method, path without query), refused ones too
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Any], set[str]]] = [
            ("GET", re.compile(r"/v1/groups:lookup"), self._lookup_group,
             {"groupKey.id", "groupKey.namespace"}),
            ("GET", re.compile(rf"/v1/groups/{_ID}/memberships:lookup"), self._lookup,
             {"memberKey.id", "memberKey.namespace"}),
            ("GET", re.compile(rf"/v1/groups/{_ID}/memberships"), self._list,
             {"view", "pageSize", "pageToken"}),
            ("POST", re.compile(rf"/v1/groups/{_ID}/memberships"), self._create, set()),
            ("GET", re.compile(rf"/v1/groups/{_ID}/memberships/{_ID}"), self._get, set()),
            ("DELETE", re.compile(rf"/v1/groups/{_ID}/memberships/{_ID}"), self._delete, set()),
            ("POST", re.compile(rf"/v1/groups/{_ID}/memberships/{_ID}:modifyMembershipRoles"),
             self._modify, set()),
        ]  # fmt: skip

    # -- the test's side -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_group(self, email: str) -> str:
        """A new group; its resource name, "groups/<id>"."""
        with self._lock:
            gid = "0" + secrets.token_hex(7)
            self._emails[email.lower()] = gid
            self._groups[gid] = {}
            return f"groups/{gid}"

    def add_member(self, group_email: str, member_email: str,
                   expire_time: datetime | None = None) -> None:  # fmt: skip
        """Make (or keep) `member_email` a MEMBER, until `expire_time` (None: for good)."""
        with self._lock:
            members = self._groups[self._emails[group_email.lower()]]
            found = self._find(members, member_email)
            if found is None:
                found = self._new(member_email, ["MEMBER"], None)
                members[found.mid] = found
            found.expires = expire_time

    def members(self, group_email: str) -> dict[str, datetime | None]:
        """The group's live members: email -> when the membership expires (None: never)."""
        with self._lock:
            self._expire()
            members = self._groups[self._emails[group_email.lower()]]
            return {m.email: m.expires for m in members.values()}

    def throttle(self, count: int) -> None:
        """The next `count` API calls are answered 429 RESOURCE_EXHAUSTED."""
        with self._lock:
            self._throttled = count

    # -- the API ---------------------------------------------------------------------------

    def _handle(self, method: str, target: str, body: bytes) -> tuple[int, Any]:
        parts = urllib.parse.urlsplit(target)
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        with self._lock:
            self.calls.append((method, parts.path))
            try:
                if self._throttled:
                    self._throttled -= 1
                    raise _Refusal(429, "Quota exceeded for quota metric 'Read requests' and limit "
                                        "'Read requests per minute per user' of service "
                                        "'cloudidentity.googleapis.com'.")  # fmt: skip
                self._expire()
                path = urllib.parse.unquote(parts.path)
                for verb, pattern, answer, params in self._routes:
                    match = pattern.fullmatch(path)
                    if verb == method and match:
                        q = self._params(query, params)
                        return 200, answer(q, body, *match.groups())
                raise _Refusal(404, f"The requested URL {parts.path} was not found on this server.")
            except _Refusal as refusal:
                return refusal.code, refusal.body

    def _expire(self) -> None:
        now = datetime.now(UTC)
        for members in self._groups.values():
            for mid in [mid for mid, m in members.items() if m.expires and m.expires <= now]:
                del members[mid]

    @staticmethod
    def _params(query: dict[str, list[str]], allowed: set[str]) -> dict[str, str]:
        for name, values in query.items():
            if name not in allowed | _SYSTEM:
                raise _Refusal(400, f"Invalid JSON payload received. Unknown name \"{name}\": "
                                    "Cannot bind query parameter.")  # fmt: skip
            if len(values) > 1:
                raise _invalid(name, "given more than once")
        if query.get("alt", ["json"]) != ["json"]:
            raise _invalid("alt", "only alt=json is served")
        return {name: values[0] for name, values in query.items()}

    def _group(self, gid: str) -> dict[str, _Membership]:
        if gid not in self._groups:
            raise _denied(f"groups/{gid}")
        return self._groups[gid]

    def _membership(self, gid: str, mid: str) -> _Membership:
        found = self._group(gid).get(mid)
        if found is None:
            raise _Refusal(404, f"Membership groups/{gid}/memberships/{mid} does not exist.")
        return found

    @staticmethod
    def _find(members: dict[str, _Membership], email: str) -> _Membership | None:
        return next((m for m in members.values() if m.email == email.lower()), None)

    def _new(self, email: str, roles: list[str], expires: datetime | None) -> _Membership:
        kind = "GROUP" if email.lower() in self._emails else "USER"
        return _Membership(str(10**20 + secrets.randbelow(9 * 10**20)), email.lower(), kind,
                           roles, expires)  # fmt: skip

    @staticmethod
    def _json(gid: str, m: _Membership) -> dict[str, Any]:
        roles: list[dict[str, Any]] = [{"name": name} for name in m.roles]
        for role in roles:
            if role["name"] == "MEMBER" and m.expires:
                role["expiryDetail"] = {"expireTime": _stamp(m.expires)}
        return {"name": f"groups/{gid}/memberships/{m.mid}", "preferredMemberKey": {"id": m.email},
                "roles": roles, "type": m.kind, "createTime": _stamp(m.created),
                "updateTime": _stamp(m.updated)}  # fmt: skip

    @staticmethod
    def _body(raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise _Refusal(400, "Invalid JSON payload received. Unexpected token.") from None
        if not isinstance(body, dict):
            raise _Refusal(400, "Invalid JSON payload received. The body must be an object.")
        return body

    def _lookup_group(self, q: dict[str, str], _: bytes) -> dict[str, Any]:
        if not q.get("groupKey.id"):
            raise _invalid("group_key.id", "Required")
        gid = self._emails.get(q["groupKey.id"].lower())
        if gid is None:
            raise _denied(q["groupKey.id"])
        return {"name": f"groups/{gid}"}

    def _lookup(self, q: dict[str, str], _: bytes, gid: str) -> dict[str, Any]:
        if not q.get("memberKey.id"):
            raise _invalid("member_key.id", "Required")
        found = self._find(self._group(gid), q["memberKey.id"])
        if found is None:
            raise _Refusal(404, f"Membership {q['memberKey.id']} does not exist in groups/{gid}.")
        return {"name": f"groups/{gid}/memberships/{found.mid}"}

    def _list(self, q: dict[str, str], _: bytes, gid: str) -> dict[str, Any]:
        members = sorted(self._group(gid).values(), key=lambda m: m.mid)
        view = q.get("view", "BASIC")
        if view not in ("VIEW_UNSPECIFIED", "BASIC", "FULL"):
            raise _invalid("view", f"Invalid value {view!r}")
        most, default = (500, 50) if view == "FULL" else (1000, 200)
        try:
            size = int(q.get("pageSize", "0")) or default
            after = base64.urlsafe_b64decode(q["pageToken"]).decode() if q.get("pageToken") else ""
        except (ValueError, binascii.Error):
            raise _invalid("page_size", "pageSize or pageToken is malformed") from None
        if not 0 < size <= most:
            raise _invalid("page_size", f"Must not be greater than {most} for view {view}")
        rest = [m for m in members if m.mid > after]
        answer: dict[str, Any] = {"memberships": [self._json(gid, m) for m in rest[:size]]}
        if len(rest) > size:  # the token is the last name given: a cursor, safe under deletes
            answer["nextPageToken"] = base64.urlsafe_b64encode(rest[size - 1].mid.encode()).decode()
        return answer

    def _get(self, _: dict[str, str], __: bytes, gid: str, mid: str) -> dict[str, Any]:
        return self._json(gid, self._membership(gid, mid))

    def _create(self, _: dict[str, str], raw: bytes, gid: str) -> dict[str, Any]:
        members, body = self._group(gid), self._body(raw)
        _known(body, {"name", "preferredMemberKey", "roles", "type", "createTime", "updateTime",
                      "deliverySetting"}, "membership")  # fmt: skip
        key = _known(body.get("preferredMemberKey", {}), {"id", "namespace"},
                     "membership.preferred_member_key")  # fmt: skip
        if not isinstance(key.get("id"), str) or not key["id"]:
            raise _invalid("membership.preferred_member_key.id", "Required")
        roles, expires = self._roles(body.get("roles") or [{"name": "MEMBER"}])
        if self._find(members, key["id"]) is not None:
            raise _Refusal(409, f"Error(4003): Cannot create membership '{key['id']}' in "
                                f"'groups/{gid}' because it already exists.")  # fmt: skip
        created = self._new(key["id"], roles, expires)
        members[created.mid] = created
        return {"done": True, "response": {"@type": MEMBERSHIP_TYPE, **self._json(gid, created)}}

    @staticmethod
    def _roles(roles: Any) -> tuple[list[str], datetime | None]:
        if not isinstance(roles, list):
            raise _invalid("membership.roles", "must be a list")
        names: list[str] = []
        expires = None
        for i, role in enumerate(roles):
            where = f"membership.roles[{i}]"
            _known(role, {"name", "expiryDetail", "restrictionEvaluations"}, where)
            if role.get("name") not in _ROLES or role["name"] in names:
                raise _invalid(f"{where}.name", "Must be OWNER, MANAGER or MEMBER, once each")
            names.append(role["name"])
            if "expiryDetail" in role:
                if role["name"] != "MEMBER":
                    only = "Expiry details are only supported for MEMBER roles."
                    raise _invalid(f"{where}.expiry_detail", only)
                detail = _known(role["expiryDetail"], {"expireTime"}, f"{where}.expiry_detail")
                expires = _expire_time(detail.get("expireTime"), f"{where}.expiry_detail")
        if "MEMBER" not in names:  # OWNER and MANAGER come on top of MEMBER, never alone
            raise _invalid("membership.roles", "Every membership holds the MEMBER role.")
        return names, expires

    def _modify(self, _: dict[str, str], raw: bytes, gid: str, mid: str) -> dict[str, Any]:
        found, body = self._membership(gid, mid), self._body(raw)
        _known(body, {"addRoles", "removeRoles", "updateRolesParams"}, "request")
        updates = body.get("updateRolesParams") or []
        if updates and (body.get("addRoles") or body.get("removeRoles")):
            raise _invalid("update_roles_params", "Updating roles in the same request as "
                           "adding or removing roles is not supported.")  # fmt: skip
        if not updates or not isinstance(updates, list):  # Latchkey only ever changes expiry
            raise _invalid("update_roles_params", "This stand-in only imitates updateRolesParams.")
        expires = found.expires  # all is checked before anything changes
        for i, update in enumerate(updates):
            where = f"update_roles_params[{i}]"
            _known(update, {"fieldMask", "membershipRole"}, where)
            if update.get("fieldMask") not in _FIELD_MASKS:
                only = "May only contain the field `expiry_detail.expire_time`."
                raise _invalid(f"{where}.field_mask", only)
            role = _known(update.get("membershipRole"), {"name", "expiryDetail"}, f"{where}.role")
            if role.get("name") != "MEMBER":
                raise _invalid(f"{where}.membership_role.name",
                               "Only MEMBER MembershipRole can currently be updated.")  # fmt: skip
            detail = _known(role.get("expiryDetail", {}), {"expireTime"}, f"{where}.expiry_detail")
            expires = (  # no expireTime under the mask: the expiry is cleared
                _expire_time(detail["expireTime"], f"{where}.expiry_detail.expire_time")
                if "expireTime" in detail else None
            )  # fmt: skip
        found.expires, found.updated = expires, datetime.now(UTC)
        return {"membership": self._json(gid, found)}

    def _delete(self, _: dict[str, str], __: bytes, gid: str, mid: str) -> dict[str, Any]:
        self._membership(gid, mid)
        del self._groups[gid][mid]
        return {"done": True, "response": {"@type": EMPTY_TYPE}}

    # -- the server ------------------------------------------------------------------------

    def start(self) -> Self:
        standin = self

        class Handler(QuietHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status, body = standin._handle(self.command, self.path, self.rfile.read(length))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

        return self._listen(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
