"""Who is on call now, as Slack users, and whether an incident is open: what flows ask of
PagerDuty and Opsgenie (approvers, escalation steps, auto-approval).

Answers are cached for LATCHKEY_ONCALL_CACHE_SECONDS (30 s) per source, so a burst of
clicks asks the service once. Every failure raises OnCallError; callers fall back to human approval and
audit it, as they do a hook's failure.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from app import lifecycle
from app.flows.schema import OnCall, OpenIncident, OpsgenieOnCall, PagerDutyOnCall
from app.oncall.errors import OnCallError
from app.runtime import Runtime
from app.ttlcache import TTLCache

log = logging.getLogger(__name__)
T = TypeVar("T")

# The time-to-live is the setting's, given at each read.
_cache = TTLCache(ttl=30.0, clock=time.monotonic)


def _cached(rt: Runtime, key: str, load: Callable[[], T]) -> T:
    return _cache.get(key, load, ttl=rt.settings.oncall_cache_seconds)  # type: ignore[no-any-return]


def _pagerduty(rt: Runtime) -> Any:
    from app.oncall.pagerduty import PagerDutyClient

    token = rt.settings.pagerduty_token.get_secret_value()
    if not token:
        raise OnCallError("PagerDuty: LATCHKEY_PAGERDUTY_TOKEN is not set")
    return PagerDutyClient(rt.settings.pagerduty_url, token)


def _opsgenie(rt: Runtime) -> Any:
    from app.oncall.opsgenie import OpsgenieClient

    key = rt.settings.opsgenie_api_key.get_secret_value()
    if not key:
        raise OnCallError("Opsgenie: LATCHKEY_OPSGENIE_API_KEY is not set")
    return OpsgenieClient(rt.settings.opsgenie_url, key)


def _emails(rt: Runtime, source: OnCall) -> list[str]:
    if isinstance(source, PagerDutyOnCall):
        return _pagerduty(rt).oncall_emails(  # type: ignore[no-any-return]
            schedule_ids=[source.schedule] if source.schedule else [],
            escalation_policy_ids=[source.escalation_policy] if source.escalation_policy else [],
            max_level=source.max_level,
        )
    assert isinstance(source, OpsgenieOnCall)
    return _opsgenie(rt).oncall_emails(source.schedule)  # type: ignore[no-any-return]


def on_call_people(rt: Runtime, sources: tuple[OnCall, ...]) -> dict[str, str]:
    """Slack user id -> why (which source has them on call), for every source. Someone on
    call with no Slack user of that email is left out (and cannot approve)."""
    found: dict[str, str] = {}
    for source in sources:
        emails = _cached(rt, source.model_dump_json(), lambda s=source: _emails(rt, s))
        for email in emails:
            user_id = rt.directory.user_id_for_email(email)
            if user_id is not None:
                found.setdefault(user_id, source.describe())
    return found


def incident_open(rt: Runtime, check: OpenIncident) -> bool:
    def load() -> bool:
        client = _pagerduty(rt) if check.source == "pagerduty" else _opsgenie(rt)
        return bool(client.open_incidents(check.service))

    return bool(_cached(rt, check.model_dump_json(), load))


def audited(rt: Runtime, request_id: uuid.UUID, what: str, ask: Callable[[], T]) -> T | None:
    """`ask()`, or None when PagerDuty or Opsgenie failed: the failure is recorded on the
    request (`oncall_failed`, naming what was asked) and the caller falls back to people."""
    try:
        return ask()
    except OnCallError as exc:
        log.warning("on-call lookup failed for request=%s (%s): %s", request_id, what, exc)
        with rt.db.session() as session:
            lifecycle.audit_failed_lookup(
                session=session,
                audit=rt.audit,
                request_id=request_id,
                event="oncall_failed",
                details={"asked": what, "error": str(exc)},
            )
        return None
