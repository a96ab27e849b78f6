"""A local stand-in for the Okta Management API calls Latchkey makes, over plain http; `url`
plays the org URL (https://{yourOktaDomain}).

Imitated: `Authorization: SSWS {api_token}` or 401 E0000011; users by id, login or login
shortname (URL-encoded) and groups by id, 404 E0000007 "Not found: Resource not found: X (User)"
or "(UserGroup)"; PUT and DELETE /api/v1/groups/{gid}/users/{uid} answer 204 whether or not the
user was (still) a member, 403 E0000006 for a group that is not an OKTA_GROUP (APP_GROUP and
BUILT_IN memberships are not Okta's to change); group members paged by `limit` and an opaque
`after` cursor, with `Link: <…>; rel="self"` and, while there is more, `rel="next"` headers;
X-Rate-Limit-Limit/-Remaining/-Reset (UTC epoch seconds) and Date on every answer, and 429
E0000047 with Remaining 0 once the minute's budget is spent or on demand (`throttle`). Okta has
no membership expiry: taking members out again is Latchkey's job. Stricter than Okta: unknown
query parameters are refused (400 E0000001) rather than ignored.
"""

from __future__ import annotations

import email.utils
import json
import secrets
import string
import threading
import time
import urllib.parse
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from typing import Any, Self

from app.testing.http_standin import HttpStandIn, QuietHandler

LIMIT = 600  # requests a minute, as X-Rate-Limit-Limit reports for these endpoints
MOST = 10000  # a larger `limit` is cut down to this
Answer = tuple[int, Any, list[tuple[str, str]]]


class _Refusal(Exception):
    def __init__(self, status: int, code: str, summary: str) -> None:
        super().__init__(summary)
        error_id = "oae" + secrets.token_urlsafe(16)
        self.status, self.body = status, {"errorCode": code, "errorSummary": summary,
                                          "errorLink": code, "errorId": error_id,
                                          "errorCauses": []}  # fmt: skip


def _okta_id(prefix: str) -> str:
    """Okta ids: 20 characters, 00u… for users and 00g… for groups."""
    return prefix + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(17))


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class OktaStandIn(HttpStandIn):
    def __init__(self, api_token: str) -> None:
        self.api_token = api_token
        self._lock = threading.Lock()
        self._users: dict[str, dict[str, Any]] = {}  # id -> user object
        self._groups: dict[str, dict[str, Any]] = {}  # id -> group object
        self._members: dict[str, set[str]] = {}  # group id -> user ids
        self._throttled, self._reset_in = 0, 1
        self._window, self._used = 0, 0  # the current minute's reset (epoch) and its count
        self.calls: list[tuple[str, str]] = []  # (method, path without query), refused ones too

    # -- the test's side -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_user(self, login: str, email: str | None = None) -> str:
        """An ACTIVE user; its id ("00u…")."""
        with self._lock:
            user_id, now = _okta_id("00u"), _stamp(datetime.now(UTC))
            first, _, last = login.split("@")[0].partition(".")
            self._users[user_id] = {
                "id": user_id, "status": "ACTIVE", "created": now, "activated": now,
                "statusChanged": now, "lastLogin": None, "lastUpdated": now,
                "type": {"id": "oty1a2b3c4d5e6f7g8h9"},
                "profile": {"firstName": first.title(), "lastName": last.title() or None,
                            "login": login, "email": email or login},
                "_links": {"self": {"href": f"{self.url}/api/v1/users/{user_id}"}},
            }  # fmt: skip
            return user_id

    def add_group(self, name: str, type: str = "OKTA_GROUP", description: str = "") -> str:
        """A group (OKTA_GROUP, or APP_GROUP or BUILT_IN whose members Okta will not change
        through this API); its id ("00g…")."""
        with self._lock:
            group_id, now = _okta_id("00g"), _stamp(datetime.now(UTC))
            self._groups[group_id] = {
                "id": group_id, "created": now, "lastUpdated": now, "lastMembershipUpdated": now,
                "objectClass": ["okta:user_group"], "type": type,
                "profile": {"name": name, "description": description},
                "_links": {"self": {"href": f"{self.url}/api/v1/groups/{group_id}"}},
            }  # fmt: skip
            self._members[group_id] = set()
            return group_id

    def add_member(self, group_id: str, user_id: str) -> None:
        with self._lock:
            self._members[group_id].add(user_id)

    def remove_member(self, group_id: str, user_id: str) -> None:
        """As an admin removing someone by hand in the Admin console."""
        with self._lock:
            self._members[group_id].discard(user_id)

    def members(self, group_id: str) -> set[str]:
        with self._lock:
            return set(self._members[group_id])

    def throttle(self, count: int, reset_in: int = 1) -> None:
        """The next `count` calls are answered 429, with X-Rate-Limit-Reset `reset_in` seconds
        after their Date."""
        with self._lock:
            self._throttled, self._reset_in = count, reset_in

    # -- the API ---------------------------------------------------------------------------

    def _handle(self, method: str, target: str, authorization: str | None) -> Answer:
        parts = urllib.parse.urlsplit(target)
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        now = int(time.time())  # Date and X-Rate-Limit-Reset share it, to the second
        with self._lock:
            self.calls.append((method, parts.path))
            if now >= self._window:
                self._window, self._used = now + 60, 0
            self._used += 1
            remaining, reset = max(LIMIT - self._used, 0), self._window
            limited = self._used > LIMIT  # the last request of the budget still passes
            if self._throttled:
                self._throttled, remaining, reset = self._throttled - 1, 0, now + self._reset_in
                limited = True
            headers = [("Date", email.utils.formatdate(now, usegmt=True)),
                       ("X-Rate-Limit-Limit", str(LIMIT)),
                       ("X-Rate-Limit-Remaining", str(remaining)),
                       ("X-Rate-Limit-Reset", str(reset))]  # fmt: skip
            try:
                if limited:
                    raise _Refusal(429, "E0000047", "API call exceeded rate limit due to too "
                                                    "many requests.")  # fmt: skip
                if authorization != f"SSWS {self.api_token}":
                    raise _Refusal(401, "E0000011", "Invalid token provided")
                status, body, more = self._route(method, parts.path, query)
                return status, body, headers + more
            except _Refusal as refusal:
                return refusal.status, refusal.body, headers

    def _route(self, method: str, path: str, query: dict[str, list[str]]) -> Answer:
        segments = [urllib.parse.unquote(s) for s in path.split("/")]
        paged = segments[-1] == "users" and len(segments) == 6
        for name in set(query) - ({"limit", "after"} if paged else set()):
            raise _Refusal(400, "E0000001", f"Api validation failed: {name} is not a parameter "
                                            "of this call")  # fmt: skip
        match method, segments:
            case "GET", ["", "api", "v1", "users", ident]:
                return 200, self._user(ident), []
            case "GET", ["", "api", "v1", "groups", gid]:
                return 200, self._group(gid), []
            case "GET", ["", "api", "v1", "groups", gid, "users"]:
                return self._list(gid, query)
            case (("PUT" | "DELETE"), ["", "api", "v1", "groups", gid, "users", user_id]):
                return self._change(method, gid, user_id)
        raise _Refusal(404, "E0000007", f"Not found: Resource not found: {method} {path} "
                                        "(Resource)")  # fmt: skip

    def _user(self, ident: str) -> dict[str, Any]:
        """By id, by login, or by the login's shortname when no other user shares it."""
        if ident in self._users:
            return self._users[ident]
        wanted = ident.lower()
        found = [u for u in self._users.values() if u["profile"]["login"].lower() == wanted]
        found = found or [u for u in self._users.values()
                          if u["profile"]["login"].lower().split("@")[0] == wanted]  # fmt: skip
        if len(found) != 1:
            raise _Refusal(404, "E0000007", f"Not found: Resource not found: {ident} (User)")
        return found[0]

    def _group(self, gid: str) -> dict[str, Any]:
        if gid not in self._groups:
            raise _Refusal(404, "E0000007", f"Not found: Resource not found: {gid} (UserGroup)")
        return self._groups[gid]

    def _list(self, gid: str, query: dict[str, list[str]]) -> Answer:
        self._group(gid)
        try:
            limit = min(int(query.get("limit", ["1000"])[-1]), MOST)
            assert limit > 0
        except (ValueError, AssertionError):
            raise _Refusal(400, "E0000001", "Api validation failed: limit") from None
        after = query.get("after", [""])[-1]  # opaque to clients; here the last id given
        rest = sorted(u for u in self._members[gid] if u > after)
        base = f"{self.url}/api/v1/groups/{gid}/users"
        asked = urllib.parse.urlencode({k: v[-1] for k, v in query.items()})
        links = [("Link", f'<{base}{"?" if asked else ""}{asked}>; rel="self"')]
        if len(rest) > limit:
            more = urllib.parse.urlencode({"after": rest[limit - 1], "limit": limit})
            links.append(("Link", f'<{base}?{more}>; rel="next"'))
        return 200, [self._users[u] for u in rest[:limit]], links

    def _change(self, method: str, gid: str, user_id: str) -> Answer:
        group = self._group(gid)
        if user_id not in self._users:  # an id only: logins are not taken here
            raise _Refusal(404, "E0000007", f"Not found: Resource not found: {user_id} (User)")
        if group["type"] != "OKTA_GROUP":
            raise _Refusal(403, "E0000006", "You do not have permission to perform the "
                                            "requested action")  # fmt: skip
        if method == "PUT":
            self._members[gid].add(user_id)
        else:
            self._members[gid].discard(user_id)
        group["lastMembershipUpdated"] = _stamp(datetime.now(UTC))
        return 204, None, []

    # -- the server ------------------------------------------------------------------------

    def start(self) -> Self:
        standin = self

        class Handler(QuietHandler):
            def _serve(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))  # unused
                status, body, headers = standin._handle(
                    self.command, self.path, self.headers.get("Authorization")
                )
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response_only(status)  # Date is ours: it must match the Reset
                if body is not None:
                    headers.append(("Content-Type", "application/json"))
                for name, value in [*headers, ("Content-Length", str(len(data)))]:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        return self._listen(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
