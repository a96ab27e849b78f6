"""What the local stand-ins for PagerDuty's REST API v2 and Opsgenie's REST API: the read calls
Latchkey makes, answered as the documented APIs answer them, and strictly.

PagerDuty (`GET /oncalls`, `GET /incidents`): `Authorization: Token token=…` or 401;
an unknown parameter or a bad value is 400 "Invalid Input Provided" (stricter than
PagerDuty, which ignores unknown ones: a misspelt `schedule_ids` must not pass); user
references unless `include[]=users`; classic pagination (`limit` 25 by default, at most
100; `offset`; `more`; `total` only with `total=true`); `/incidents` looks only at the
last 30 days unless `date_range=all`; a 429 carries `ratelimit-reset`.

Opsgenie (`GET /v2/schedules/{id or name}/on-calls`, `GET /v1/incidents`):
`Authorization: GenieKey …` or 401 "Could not authenticate"; an unknown schedule is 404; a
bad parameter or search query is 422; incidents are searched with `field: value` terms
joined by AND (`status`, `services` by name, `id`, `tinyId`, `priority`, `message`);
`paging.next` while there is more; a 429 carries no hint of when to come back.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from typing import Any, Self

from app.testing.http_standin import HttpStandIn, QuietHandler

Query = dict[str, list[str]]


class _Refusal(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _StandIn(HttpStandIn):
    """The server, the record of requests and the rate limiting both stand-ins share."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limited = 0
        # (method, path, query as parse_qs gives it), every request, refused ones too.
        self.requests: list[tuple[str, str, Query]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        standin = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                status, body, headers = standin._serve(self.path, self.headers.get("Authorization"))
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return self._listen(ThreadingHTTPServer(("127.0.0.1", 0), Handler))

    def rate_limit_next(self, n: int) -> None:
        """The next `n` requests are answered 429, whatever they ask."""
        with self._lock:
            self._limited = n

    def _serve(self, target: str, authorization: str | None) -> tuple[int, Any, dict[str, str]]:
        path, _, raw_query = target.partition("?")
        query = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
        with self._lock:
            self.requests.append(("GET", path, query))
            try:
                if self._limited:
                    self._limited -= 1
                    raise self._too_many()
                self._authorise(authorization)
                return 200, self._answer(path, query), {}
            except _Refusal as refusal:
                return refusal.status, refusal.body, refusal.headers

    def _too_many(self) -> _Refusal:
        raise NotImplementedError

    def _authorise(self, authorization: str | None) -> None:
        raise NotImplementedError

    def _answer(self, path: str, query: Query) -> Any:
        raise NotImplementedError


def _one(query: Query, name: str, default: str | None = None) -> str | None:
    return query[name][0] if name in query else default


_ONCALL_FILTERS = (("schedule_ids[]", "schedule_id"), ("user_ids[]", "user_id"),
                   ("escalation_policy_ids[]", "escalation_policy_id"))  # fmt: skip
