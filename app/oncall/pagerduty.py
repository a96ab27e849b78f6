"""PagerDuty's REST API v2, read only: who is on call, and how many incidents are open.

Calls: `GET /oncalls` ("List all of the on-calls",
https://developer.pagerduty.com/api-reference/3a6b910f11050-list-all-of-the-on-calls) and
`GET /incidents` ("List incidents"), both with classic pagination (`limit` at most 100,
`offset`, `more`). A 429 says in `ratelimit-reset` how many seconds to wait (developer docs,
"REST API Rate Limits"); we wait that long (5 s at most) and try again, 3 times. Redirects
are not followed: urllib would send the token on to wherever they point.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from email.message import Message
from typing import Any

from app.oncall.errors import OnCallError
from app.oncall.http import ApiClient

SERVICE = "PagerDuty"
PAGE = 100  # the largest page PagerDuty gives: fewer calls against 960 a minute
MAX_WAIT = 5.0  # seconds, whatever ratelimit-reset says: a person is waiting on a card


def _api_message(body: bytes) -> str | None:
    """PagerDuty's own words from an error answer: `{"error": {"message", "errors"}}`."""
    try:
        error = json.loads(body)["error"]
        details = "; ".join(str(e) for e in error.get("errors") or ())
        return str(error["message"]) + (f" ({details})" if details else "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _wait_after_429(headers: Message) -> float:
    """As long as `ratelimit-reset` says, within reason."""
    try:
        seconds = float(headers.get("ratelimit-reset") or 1)
    except ValueError:
        return 1.0
    return min(max(seconds, 0.0), MAX_WAIT) if math.isfinite(seconds) else 1.0


class PagerDutyClient(ApiClient):
    """A REST API token's view of PagerDuty (a read-only key is enough)."""

    service = SERVICE
    api_message = staticmethod(_api_message)
    wait_after_429 = staticmethod(_wait_after_429)

    def __init__(self, base_url: str, token: str, timeout: float = 5.0) -> None:
        super().__init__(
            base_url,
            {
                "Authorization": f"Token token={token}",
                "Accept": "application/vnd.pagerduty+json;version=2",
                "User-Agent": "latchkey-oncall",
            },
            timeout,
        )

    def oncall_emails(
        self,
        *,
        schedule_ids: Sequence[str] = (),
        escalation_policy_ids: Sequence[str] = (),
        max_level: int = 1,
    ) -> list[str]:
        """Emails of the people on call now for these schedules or escalation policies, at
        escalation levels 1 to `max_level`, each once, in PagerDuty's order."""
        if not (schedule_ids or escalation_policy_ids):
            # Without a filter PagerDuty lists everyone on call anywhere in the account.
            raise ValueError("name at least one schedule or escalation policy")
        query = [
            *(("schedule_ids[]", s) for s in schedule_ids),
            *(("escalation_policy_ids[]", e) for e in escalation_policy_ids),
            ("include[]", "users"),  # full users, with email, instead of references
            ("earliest", "true"),  # one entry per policy, level and user
            ("time_zone", "UTC"),
        ]
        emails: list[str] = []
        for oncall in self._pages("/oncalls", "oncalls", query):
            if not isinstance(oncall.get("escalation_level"), int):
                continue
            if oncall["escalation_level"] > max_level:
                continue
            user = oncall.get("user") or {}
            if not user.get("email"):
                raise OnCallError(
                    f"{SERVICE} GET /oncalls: on-call user {user.get('id')} came without an email"
                )
            if user["email"] not in emails:
                emails.append(user["email"])
        return emails

    def open_incidents(self, service_id: str) -> int:
        """How many incidents are triggered or acknowledged on the service now."""
        query = [
            ("service_ids[]", service_id),
            ("statuses[]", "triggered"),
            ("statuses[]", "acknowledged"),
            # Otherwise PagerDuty looks only at incidents created in the last month.
            ("date_range", "all"),
        ]
        return sum(1 for _ in self._pages("/incidents", "incidents", query))

    def _pages(self, path: str, key: str, query: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            body = self._get(path, [*query, ("limit", str(PAGE)), ("offset", str(offset))])
            items = body.get(key)
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise OnCallError(f"{SERVICE} GET {path}: the answer has no {key!r} list")
            yield from items
            if not body.get("more") or not items:
                return
            offset += len(items)
