"""Opsgenie's REST API, read only: who is on call, and how many incidents are open.

Calls: `GET /v2/schedules/{name}/on-calls?scheduleIdentifierType=name&flat=true`
(https://docs.opsgenie.com/docs/who-is-on-call-api), whose `data.onCallRecipients` are the
on-call users' usernames, which in Opsgenie are their emails; and `GET /v1/incidents`
(https://docs.opsgenie.com/docs/incident-api) with a search query
(https://support.atlassian.com/opsgenie/docs/search-syntax-for-incidents/), paged by
`offset`/`limit` (at most 100) with `paging.next` while there is more
(https://docs.opsgenie.com/docs/pagination). Incidents are searched by service *name*:
the query's `services` field is the name, not the id. A 429 carries no hint of how long to
wait, so we wait 1 s and try again, 3 times. Redirects are not followed (the key would go
along).
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from app.oncall.errors import OnCallError, http_problem, transport_problem

SERVICE = "Opsgenie"
PAGE = 100  # Opsgenie's largest page
RETRIES = 3  # after a 429
WAIT = 1.0  # seconds before each retry
_BARE = re.compile(r"[\w.@-]+")  # a search value that needs no quotes


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: urllib then raises HTTPError with the 3xx status."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


def _api_message(body: bytes) -> str | None:
    """Opsgenie's own words from an error answer: `{"message", "took", "requestId"}`."""
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return None


def _search_value(value: str) -> str:
    if _BARE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class OpsgenieClient:
    """An API integration's key (GenieKey) view of Opsgenie."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 5.0) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise OnCallError(f"{SERVICE}: base URL {base_url!r} is not http(s)")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = {
            "Authorization": f"GenieKey {api_key}",
            "Accept": "application/json",
            "User-Agent": "latchkey-oncall",
        }

    def oncall_emails(self, schedule: str) -> list[str]:
        """Emails of the people on call now in the schedule of this name, each once."""
        path = f"/v2/schedules/{urllib.parse.quote(schedule, safe='')}/on-calls"
        body = self._get(path, [("scheduleIdentifierType", "name"), ("flat", "true")])
        data = body.get("data")
        recipients = data.get("onCallRecipients") if isinstance(data, dict) else None
        if not isinstance(recipients, list):
            raise OnCallError(f"{SERVICE} GET {path}: the answer has no data.onCallRecipients")
        return list(dict.fromkeys(str(r) for r in recipients))

    def open_incidents(self, service: str) -> int:
        """How many incidents are open now on the service of this name (resolved and closed
        ones are not open)."""
        query = f"status: open AND services: {_search_value(service)}"
        count, offset = 0, 0
        while True:
            body = self._get(
                "/v1/incidents",
                [("query", query), ("offset", str(offset)), ("limit", str(PAGE))],
            )
            data = body.get("data")
            if not isinstance(data, list):
                raise OnCallError(f"{SERVICE} GET /v1/incidents: the answer has no data list")
            count += len(data)
            paging = body.get("paging")
            more = isinstance(paging, dict) and bool(paging.get("next"))
            if not data or not (more or len(data) == PAGE):
                return count
            offset += len(data)

    def _get(self, path: str, query: list[tuple[str, str]]) -> dict[str, Any]:
        call = f"{SERVICE} GET {path}"
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(query)}"
        for attempt in range(RETRIES + 1):
            request = urllib.request.Request(url, headers=self._headers)  # noqa: S310 - http(s) checked
            try:
                with _OPENER.open(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                try:
                    body = exc.read()
                except (OSError, http.client.HTTPException):
                    body = b""
                finally:
                    exc.close()
                if exc.code == 429 and attempt < RETRIES:
                    time.sleep(WAIT)
                    continue
                problem = http_problem(exc.code, _api_message(body), attempt)
                raise OnCallError(f"{call}: {problem}") from None
            except (OSError, http.client.HTTPException) as exc:
                problem = transport_problem(exc, self.base_url, self.timeout)
                raise OnCallError(f"{call}: {problem}") from None
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = None
            if not isinstance(answer, dict):
                raise OnCallError(f"{call}: the answer is not a JSON object")
            return answer
        raise AssertionError("unreachable: the last attempt returns or raises")
