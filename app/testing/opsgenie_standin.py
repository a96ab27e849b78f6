"""A local stand-in for Opsgenie's REST API (`GET /v2/schedules/{id or name}/on-calls`,
`GET /v1/incidents`); what it checks and answers is described in app.testing.oncall_standin."""

from __future__ import annotations

import itertools
import re
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from app.testing.oncall_standin import (  # noqa: F401
    _ONCALL_FILTERS,
    Query,
    _one,
    _parse,
    _Refusal,
    _stamp,
    _StandIn,
)


class OpsgenieStandIn(_StandIn):
    SEARCH_FIELDS = frozenset({"status", "services", "id", "tinyId", "priority", "message"})
    _TERM = re.compile(r'(\w+)\s*:\s*(?:"((?:[^"\\]|\\.)*)"|([^\s"()]+))')

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self._schedules: dict[str, tuple[str, list[str]]] = {}  # name -> (id, emails)
        self._services: dict[str, str] = {}  # name -> id
        self._incidents: dict[str, dict[str, Any]] = {}
        self._tiny_ids = itertools.count(1)

    def set_oncall(self, schedule_name: str, emails: Iterable[str]) -> None:
        """Who is on call now in the schedule (created if new): their usernames, i.e. emails."""
        with self._lock:
            schedule_id = self._schedules.get(schedule_name, (str(uuid.uuid4()), []))[0]
            self._schedules[schedule_name] = (schedule_id, list(emails))

    def open_incident(self, service: str) -> str:
        """A new open incident impacting the service of this name; its id."""
        with self._lock:
            service_id = self._services.setdefault(service, str(uuid.uuid4()))
            incident_id, tiny_id = str(uuid.uuid4()), next(self._tiny_ids)
            now = datetime.now(UTC) + timedelta(milliseconds=tiny_id)  # distinct, ordered
            self._incidents[incident_id] = {
                "id": incident_id, "tinyId": str(tiny_id), "message": f"{service} is down",
                "status": "open", "tags": [], "priority": "P3", "ownerTeam": "",
                "createdAt": _stamp(now), "updatedAt": _stamp(now), "responders": [],
                "extraProperties": {}, "impactedServices": [service_id],
                "service": service,  # the name the search matches; not on the wire
            }  # fmt: skip
            return incident_id

    def close_incident(self, incident_id: str) -> None:
        with self._lock:
            incident = self._incidents[incident_id]
            incident.update(status="closed", updatedAt=_stamp(datetime.now(UTC)))

    @staticmethod
    def _error(status: int, message: str, headers: dict[str, str] | None = None) -> _Refusal:
        body = {"message": message, "took": 0.001, "requestId": str(uuid.uuid4())}
        return _Refusal(status, body, headers)

    def _too_many(self) -> _Refusal:
        return self._error(
            429,
            "You are making too many requests! To avoid errors, we recommend you limit requests.",
        )

    def _authorise(self, authorization: str | None) -> None:
        if authorization != f"GenieKey {self.api_key}":
            raise self._error(401, "Could not authenticate")

    def _answer(self, path: str, query: Query) -> Any:
        match = re.fullmatch(r"/v2/schedules/([^/]+)/on-calls", path)
        if match:
            data = self._on_calls(urllib.parse.unquote(match[1]), query)
            return {"data": data, "took": 0.001, "requestId": str(uuid.uuid4())}
        if path == "/v1/incidents":
            return self._list_incidents(query)
        raise self._error(404, "Could not find a handler for this request")

    def _check(self, query: Query, allowed: set[str]) -> None:
        for name, values in query.items():
            if name not in allowed or len(values) > 1:
                raise self._error(422, f"Invalid parameter: {name}")

    def _on_calls(self, identifier: str, query: Query) -> dict[str, Any]:
        self._check(query, {"scheduleIdentifierType", "flat", "date"})
        kind, flat = _one(query, "scheduleIdentifierType", "id"), _one(query, "flat", "false")
        if kind not in ("id", "name") or flat not in ("true", "false"):
            raise self._error(422, "scheduleIdentifierType must be id or name, flat true or false")
        if "date" in query:
            try:
                datetime.strptime(query["date"][0], "%Y-%m-%dT%H:%M:%S%z")
            except ValueError:
                raise self._error(422, "date must be like 2017-01-15T08:00:00+02:00") from None
        for name, (schedule_id, emails) in self._schedules.items():
            if identifier == (name if kind == "name" else schedule_id):
                parent = {"id": schedule_id, "name": name, "enabled": True}
                if flat == "true":
                    return {"_parent": parent, "onCallRecipients": list(emails)}
                people = [
                    {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, e)), "name": e, "type": "user"}
                    for e in emails
                ]
                return {"_parent": parent, "onCallParticipants": people}
        raise self._error(404, f"No schedule exists with {kind} [{identifier}]")

    def _matches(self, incident: Mapping[str, Any], search: str) -> bool:
        for term in re.split(r"\s+AND\s+", search.strip()):
            match = self._TERM.fullmatch(term.strip())
            if match is None or match[1] not in self.SEARCH_FIELDS:
                raise self._error(422, f"Invalid search query: {search}")
            field = "service" if match[1] == "services" else match[1]
            value = re.sub(r"\\(.)", r"\1", match[2]) if match[2] is not None else match[3]
            if field == "message" and value.lower() not in incident["message"].lower():
                return False
            if field != "message" and incident[field] != value:
                return False
        return True

    def _list_incidents(self, query: Query) -> dict[str, Any]:
        self._check(query, {"query", "offset", "limit", "sort", "order"})
        if "query" not in query:
            raise self._error(422, "query is mandatory")
        try:
            offset, limit = int(query.get("offset", ["0"])[0]), int(query.get("limit", ["20"])[0])
        except ValueError:
            raise self._error(422, "offset and limit must be integers") from None
        sort, order = _one(query, "sort", "createdAt"), _one(query, "order", "desc")
        if offset < 0 or not 1 <= limit <= 100 or order not in ("asc", "desc"):
            raise self._error(422, "offset must be at least 0, limit 1 to 100, order asc or desc")
        if sort not in ("createdAt", "updatedAt", "tinyId"):
            raise self._error(422, f"Invalid sort field: {sort}")
        found = [i for i in self._incidents.values() if self._matches(i, query["query"][0])]
        found.sort(
            key=lambda i: int(i[sort]) if sort == "tinyId" else i[sort], reverse=order == "desc"
        )
        page = [
            {k: v for k, v in i.items() if k != "service"} for i in found[offset : offset + limit]
        ]

        def link(at: int) -> str:
            params = dict(query=query["query"][0], offset=at, limit=limit, sort=sort, order=order)
            return f"{self.url}/v1/incidents?{urllib.parse.urlencode(params)}"

        paging = {"first": link(0), "last": link(max(len(found) - 1, 0) // limit * limit)}
        if offset + limit < len(found):
            paging["next"] = link(offset + limit)
        return {"data": page, "paging": paging, "took": 0.002, "requestId": str(uuid.uuid4())}
