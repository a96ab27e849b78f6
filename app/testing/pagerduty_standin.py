"""A local stand-in for PagerDuty's REST API v2 (`GET /oncalls`, `GET /incidents`); what it
checks and answers is described in app.testing.oncall_standin."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.testing.oncall_standin import (
    _ONCALL_FILTERS,
    Query,
    _one,
    _parse,
    _Refusal,
    _stamp,
    _StandIn,
)


class PagerDutyStandIn(_StandIn):
    ONCALL_PARAMS = frozenset({"time_zone", "limit", "offset", "total", "include[]",
                               "user_ids[]", "escalation_policy_ids[]", "schedule_ids[]",
                               "since", "until", "earliest"})  # fmt: skip
    INCIDENT_PARAMS = frozenset({"date_range", "incident_key", "include[]", "limit", "offset",
                                 "total", "service_ids[]", "since", "sort_by[]", "statuses[]",
                                 "team_ids[]", "time_zone", "until", "urgencies[]",
                                 "user_ids[]"})  # fmt: skip

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self._oncalls: list[dict[str, Any]] = []
        self._incidents: dict[str, dict[str, Any]] = {}
        self._numbers = itertools.count(1)

    def set_oncalls(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Who is on call now: dicts of level, email, name, user_id, schedule_id (None: a
        user named directly in the policy) and escalation_policy_id."""
        with self._lock:
            self._oncalls = [dict(entry) for entry in entries]

    def open_incident(self, service_id: str, *, created_at: datetime | None = None) -> str:
        """A new triggered incident on the service; its id. `created_at`: when it began."""
        with self._lock:
            number = next(self._numbers)
            incident_id, created = f"Q{number:06d}", created_at or datetime.now(UTC)
            service = {"id": service_id, "type": "service_reference", "summary": service_id}
            self._incidents[incident_id] = {
                "id": incident_id, "type": "incident", "incident_number": number,
                "summary": f"[#{number}] Trouble on {service_id}", "status": "triggered",
                "title": f"Trouble on {service_id}", "urgency": "high", "service": service,
                "created_at": _stamp(created), "self": f"{self.url}/incidents/{incident_id}",
            }  # fmt: skip
            return incident_id

    def acknowledge_incident(self, incident_id: str) -> None:
        with self._lock:
            self._incidents[incident_id]["status"] = "acknowledged"

    def resolve_incident(self, incident_id: str) -> None:
        with self._lock:
            self._incidents[incident_id]["status"] = "resolved"

    def _too_many(self) -> _Refusal:
        body = {"error": {"message": "Rate Limit Exceeded", "code": 2020}}
        headers = {"ratelimit-limit": "960", "ratelimit-remaining": "0", "ratelimit-reset": "1"}
        return _Refusal(429, body, headers)

    def _authorise(self, authorization: str | None) -> None:
        if authorization != f"Token token={self.token}":
            raise _Refusal(401, {"error": {"message": "Invalid Token", "code": 2001}})

    def _answer(self, path: str, query: Query) -> Any:
        if path == "/oncalls":
            return self._list_oncalls(query)
        if path == "/incidents":
            return self._list_incidents(query)
        raise _Refusal(404, {"error": {"message": "Not Found", "code": 2100}})

    @staticmethod
    def _invalid(detail: str) -> _Refusal:
        return _Refusal(
            400, {"error": {"message": "Invalid Input Provided", "code": 2001, "errors": [detail]}}
        )

    def _check(self, query: Query, allowed: frozenset[str]) -> None:
        for name, values in query.items():
            if name not in allowed:
                raise self._invalid(f"{name} is not a parameter of this call")
            if not name.endswith("[]") and len(values) > 1:
                raise self._invalid(f"{name} is given more than once")
        for flag in ("earliest", "total"):
            if _one(query, flag, "false") not in ("true", "false"):
                raise self._invalid(f"{flag} must be true or false")
        try:
            ZoneInfo(_one(query, "time_zone", "UTC") or "")
        except (ValueError, KeyError):
            raise self._invalid("time_zone is not a time zone") from None

    def _page(self, key: str, items: list[dict[str, Any]], query: Query) -> dict[str, Any]:
        try:
            limit, offset = int(query.get("limit", ["25"])[0]), int(query.get("offset", ["0"])[0])
        except ValueError:
            raise self._invalid("limit and offset must be integers") from None
        limit = min(limit, 100)
        if limit < 1 or offset < 0 or offset + limit > 10000:
            raise self._invalid("limit must be 1 to 100, offset at least 0, their sum ≤ 10000")
        total = len(items) if _one(query, "total") == "true" else None
        return {key: items[offset : offset + limit], "limit": limit, "offset": offset,
                "more": offset + limit < len(items), "total": total}  # fmt: skip

    def _list_oncalls(self, query: Query) -> dict[str, Any]:
        self._check(query, self.ONCALL_PARAMS)
        include = set(query.get("include[]", []))
        if include - {"users", "schedules", "escalation_policies"}:
            raise self._invalid(f"include[] may not be {sorted(include)}")
        entries, seen = [], set()
        for e in self._oncalls:
            # A user named directly in a policy has no schedule: "null" in schedule_ids[].
            if any(p in query and (e[f] or "null") not in query[p] for p, f in _ONCALL_FILTERS):
                continue
            key = (e["escalation_policy_id"], e["level"], e["user_id"])
            if _one(query, "earliest") == "true" and key in seen:
                continue  # only the earliest on-call per policy, level and user
            seen.add(key)
            entries.append(self._oncall(e, include))
        return self._page("oncalls", entries, query)

    def _oncall(self, e: Mapping[str, Any], include: set[str]) -> dict[str, Any]:
        def ref(kind: str, ident: str, plural: str, **full: Any) -> dict[str, Any]:
            base = {"id": ident, "summary": full.pop("name", ident),
                    "self": f"{self.url}/{plural}/{ident}",
                    "html_url": f"https://latchkey.pagerduty.com/{plural}/{ident}"}  # fmt: skip
            if plural in include:
                return {**base, "type": kind, "name": base["summary"], **full}
            return {**base, "type": f"{kind}_reference"}

        now, permanent = datetime.now(UTC), e["schedule_id"] is None
        user = ref("user", e["user_id"], "users", name=e["name"], email=e["email"], time_zone="UTC")
        return {
            "escalation_policy": ref("escalation_policy", e["escalation_policy_id"],
                                     "escalation_policies"),
            "escalation_level": e["level"],
            "schedule": None if permanent else ref("schedule", e["schedule_id"], "schedules"),
            "user": user,
            "start": None if permanent else _stamp(now - timedelta(hours=1)),
            "end": None if permanent else _stamp(now + timedelta(hours=7)),
        }  # fmt: skip

    def _list_incidents(self, query: Query) -> dict[str, Any]:
        self._check(query, self.INCIDENT_PARAMS)
        statuses = query.get("statuses[]", [])
        if set(statuses) - {"triggered", "acknowledged", "resolved"}:
            raise self._invalid(f"statuses[] may not be {statuses}")
        services = query.get("service_ids[]")
        since = until = None
        if _one(query, "date_range") not in (None, "all"):
            raise self._invalid("date_range may only be all")
        if _one(query, "date_range") != "all":  # then since and until, a month by default
            try:
                until = _parse(_one(query, "until") or _stamp(datetime.now(UTC)))
                since = _parse(_one(query, "since") or _stamp(until - timedelta(days=30)))
            except ValueError:
                raise self._invalid("since and until must be ISO 8601 times") from None
            if not timedelta(0) <= until - since <= timedelta(days=180):
                raise self._invalid("the date range must be 0 to 6 months")
        found = [
            dict(i)
            for i in self._incidents.values()
            if not (services and i["service"]["id"] not in services)
            and not (statuses and i["status"] not in statuses)
            and not (since and until and not since <= _parse(i["created_at"]) <= until)
        ]
        return self._page("incidents", found, query)
