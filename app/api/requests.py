"""What the API's endpoints do, for a client the edge (app.api.http) has authenticated.

A request goes through the same steps as one made in Slack's modal (app.slack.listeners
.requests): the flow's own checks of target, duration and reason (check_request), the
requester's eligibility and principal (request_problem: for a client, its token's scope,
the flow's `service_clients` and its principal's format), lifecycle.submit, then the
worker's process_submission, which posts the card for people to decide.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app import lifecycle
from app.api import idempotency
from app.clients.store import Client
from app.eligibility import request_problem
from app.flows.policy import RequestInput, check_request
from app.logins import REFUSED, NoCredentials, has_login, view_credentials
from app.models import AccessRequest, Grant
from app.queries import grant_of
from app.runtime import Runtime

log = logging.getLogger(__name__)

REFUSED_EVENT = "api_refused"
_FIELDS = ("flow", "target", "duration", "minutes", "reason")
_DURATION = re.compile(r"^\s*(?:\d+\s*[dhms]\s*)+$")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


class ApiError(Exception):
    """An answer other than success: its HTTP status, what is wrong, and which input
    fields are at fault (field -> problem)."""

    def __init__(self, status: int, error: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.fields = status, error, fields or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, **({"fields": self.fields} if self.fields else {})}


def audit_refusal(
    rt: Runtime,
    client: Client,
    reason: str,
    *,
    flow: str | None = None,
    request_id: uuid.UUID | None = None,
) -> None:
    """Record a refusal of a known client, in a transaction of its own (never rolled back
    with the refusal)."""
    with rt.db.session() as session:
        rt.audit.append(
            session,
            event=REFUSED_EVENT,
            actor=client.requester_id,
            subject=client.requester_id,
            flow=flow,
            request_id=request_id,
            details={"reason": reason},
        )


def parse_duration(value: object) -> timedelta | None:
    """'30m', '1h 30m', '45s', '2d' (as Latchkey prints durations); None for anything else."""
    if not isinstance(value, str) or not _DURATION.match(value):
        return None
    seconds = sum(int(n) * _UNITS[unit] for n, unit in re.findall(r"(\d+)\s*([dhms])", value))
    return timedelta(seconds=seconds) if seconds > 0 else None


def read_ask(body: dict[str, Any]) -> RequestInput:
    """The request a body describes, or ApiError(400) naming every field at fault."""
    problems: dict[str, str] = {}
    for name in sorted(set(body) - set(_FIELDS)):
        problems[name[:40]] = f"unknown field (the fields are {', '.join(_FIELDS)})"
    texts: dict[str, str] = {}
    for name in ("flow", "target", "reason"):
        value = body.get(name)
        if not isinstance(value, str) or (name != "reason" and not value.strip()):
            problems[name] = f"{name} is required, as a string"
        else:
            texts[name] = value.strip() if name != "reason" else value
    duration: timedelta | None = None
    if ("duration" in body) == ("minutes" in body):
        problems["duration"] = 'give either "duration" (like "30m" or "1h") or "minutes"'
    elif "minutes" in body:
        minutes = body["minutes"]
        if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes <= 0:
            problems["minutes"] = "minutes must be a whole number above 0"
        else:
            duration = timedelta(minutes=minutes)
    else:
        duration = parse_duration(body["duration"])
        if duration is None:
            problems["duration"] = 'duration must be like "45s", "30m", "1h 30m" or "2d"'
    if problems:
        raise ApiError(400, "the request is not valid: " + _said(problems), problems)
    assert duration is not None
    return RequestInput(texts["flow"], texts["target"], duration, texts["reason"])


def submit(
    rt: Runtime, client: Client, body: dict[str, Any], key: str | None = None
) -> tuple[int, dict[str, Any]]:
    """POST /api/requests: store the request and hand it to the worker; 202 and its id.
    With an Idempotency-Key the client used before, the request it made then (200)."""
    ask = read_ask(body)
    if key is not None:
        with rt.db.session() as session:
            earlier = _earlier(session, client, key, ask)
        if earlier is not None:
            return 200, {**_made(earlier), "replayed": True}
    if ask.flow not in client.flows:
        audit_refusal(rt, client, "flow not in the token's scope", flow=ask.flow[:100])
        raise ApiError(
            403,
            f"this token is not scoped to the {ask.flow} flow "
            f"(service client {client.name} may request: {', '.join(client.flows)})",
        )
    loaded = rt.flows.get(ask.flow)
    if loaded is None:
        raise ApiError(400, f"there is no flow named {ask.flow}", {"flow": "no such flow"})
    problems = check_request(loaded.flow, ask)
    if problems:
        raise ApiError(400, "the request is not valid: " + _said(problems), problems)
    problem = request_problem(rt, loaded, ask.target, client.requester_id)
    if problem is not None:
        audit_refusal(rt, client, problem, flow=ask.flow)
        raise ApiError(403, problem)
    try:
        with rt.db.session() as session:
            request = lifecycle.submit(
                session=session,
                audit=rt.audit,
                flow=loaded.flow,
                requester_id=client.requester_id,
                ask=ask,
            )
            if key is not None:  # in the same transaction: one request per key, whatever races
                idempotency.remember(session, client.name, key, request.id)
    except IntegrityError:
        # The same key's other POST stored its request first: that one is the answer.
        with rt.db.session() as session:
            earlier = _earlier(session, client, key or "", ask)
        if earlier is None:
            raise
        return 200, {**_made(earlier), "replayed": True}
    # A broker that is down only delays the card: the sweep finds a pending request
    # without one (DESIGN.md, invariant 1).
    rt.tasks.process_submission(request.id)
    log.info("api request stored request=%s flow=%s client=%s", request.id, ask.flow, client.name)
    return 202, _made(request)


def _earlier(session: Session, client: Client, key: str, ask: RequestInput) -> AccessRequest | None:
    try:
        return idempotency.earlier(session, client.name, key, ask)
    except idempotency.KeyReused as reused:
        raise ApiError(422, str(reused), {"Idempotency-Key": "used for another request"}) from None


def _made(request: AccessRequest) -> dict[str, Any]:
    return {
        "id": str(request.id),
        "status": request.status.value,
        "url": f"/api/requests/{request.id}",
    }


def status(rt: Runtime, client: Client, raw_id: str) -> tuple[int, dict[str, Any]]:
    """GET /api/requests/{id}: where the client's own request stands, with the
    credentials of its live login-making grant. Another's request is not found."""
    try:
        request_id = uuid.UUID(raw_id)
    except ValueError:
        raise ApiError(404, "no such request: the id is not a request id") from None
    with rt.db.session() as session:
        request = session.get(AccessRequest, request_id)
        grant = grant_of(session, request_id) if request is not None else None
    if request is None or request.requester_id != client.requester_id:
        # One answer for both, so a client cannot learn which ids exist.
        audit_refusal(
            rt,
            client,
            "not its request" if request is not None else "no such request",
            request_id=request_id if request is not None else None,
        )
        raise ApiError(404, f"service client {client.name} has no request {request_id}")
    body = view(request, grant)
    if grant is not None and has_login(rt, grant) and request.status.value == "active":
        try:
            creds, _ = view_credentials(rt, request, client.requester_id)
            body["credentials"] = creds
        except NoCredentials as none:
            with rt.db.session() as session:
                lifecycle.record(
                    session,
                    rt.audit,
                    request,
                    REFUSED,
                    client.requester_id,
                    {"reason": none.reason},
                )
            body["credentials_problem"] = none.told
    return 200, body


def view(request: AccessRequest, grant: Grant | None) -> dict[str, Any]:
    """A request as the API shows it (times in ISO 8601, UTC)."""
    body: dict[str, Any] = {
        "id": str(request.id),
        "status": request.status.value,
        "final": request.status.is_final,
        "flow": request.flow,
        "target": request.target,
        "reason": request.reason,
        "duration_seconds": int(request.duration.total_seconds()),
        "requested_seconds": request.requested_seconds,
        "created_at": request.created_at.isoformat(),
        "failure": request.failure,
    }
    if grant is not None:
        body.update(
            principal=grant.principal,
            granted_at=grant.granted_at.isoformat(),
            expires_at=grant.expires_at.isoformat(),
            ended_at=grant.ended_at.isoformat() if grant.ended_at else None,
            end_cause=grant.end_cause,
        )
    return body


def _said(problems: dict[str, str]) -> str:
    return "; ".join(f"{field}: {problem}" for field, problem in problems.items())
