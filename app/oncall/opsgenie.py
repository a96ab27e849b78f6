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

import json
import re
import urllib.parse
from email.message import Message

from app.oncall.errors import OnCallError
from app.oncall.http import ApiClient

SERVICE = "Opsgenie"
PAGE = 100  # Opsgenie's largest page
WAIT = 1.0  # seconds before each retry
_BARE = re.compile(r"[\w.@-]+")  # a search value that needs no quotes


def _api_message(body: bytes) -> str | None:
    """Opsgenie's own words from an error answer: `{"message", "took", "requestId"}`."""
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return None


def _wait_after_429(headers: Message) -> float:
    """Opsgenie's 429 says nothing of how long to wait."""
    return WAIT


def _search_value(value: str) -> str:
    if _BARE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class OpsgenieClient(ApiClient):
    """An API integration's key (GenieKey) view of Opsgenie."""

    service = SERVICE
    api_message = staticmethod(_api_message)
    wait_after_429 = staticmethod(_wait_after_429)

    def __init__(self, base_url: str, api_key: str, timeout: float = 5.0) -> None:
        super().__init__(
            base_url,
            {
                "Authorization": f"GenieKey {api_key}",
                "Accept": "application/json",
                "User-Agent": "latchkey-oncall",
            },
            timeout,
        )

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
