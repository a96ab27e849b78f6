"""Calling the admin's hooks: one place that catches their errors.

Hook naming: `get_*` returns a value, `on_*` may change a decision, `after_*` runs side
effects. A hook that raises is reported (the caller audits it) and its decision falls
back to "needs human approval": a broken hook never grants.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from app.flows.loader import LoadedFlow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HookRequest:
    """What a hook sees of a request: read-only facts, no handles on our state."""

    id: str
    flow: str
    target: str
    requester_id: str
    requester_email: str | None
    reason: str
    duration: timedelta

    @classmethod
    def of(cls, request: Any, email: str | None) -> HookRequest:
        """From an AccessRequest (typed loosely so flows never import our models)."""
        return cls(
            id=str(request.id),
            flow=request.flow,
            target=request.target,
            requester_id=request.requester_id,
            requester_email=email,
            reason=request.reason,
            duration=request.duration,
        )


@dataclass(frozen=True)
class HookDecision:
    """What an `on_request` hook returns to approve or deny, with the reason for the record."""

    approve: bool
    reason: str


def approve(reason: str) -> HookDecision:
    return HookDecision(True, reason)


def deny(reason: str) -> HookDecision:
    return HookDecision(False, reason)


@dataclass(frozen=True)
class HookResult:
    name: str
    defined: bool
    value: Any = None
    error: str | None = None

    def names(self) -> frozenset[str]:
        """A get_* hook's answer as a set of ids/emails; nobody when it failed or answered oddly."""
        if self.error is not None:
            return frozenset()
        try:
            return frozenset(str(item) for item in self.value or ())
        except TypeError:
            return frozenset()


def call_hook(loaded: LoadedFlow, name: str, *args: Any) -> HookResult:
    fn = loaded.hooks.get(name)
    if fn is None:
        return HookResult(name, defined=False)
    try:
        return HookResult(name, defined=True, value=fn(*args))
    except Exception as exc:
        log.warning("hook %s of flow %s raised %s", name, loaded.flow.name, type(exc).__name__)
        return HookResult(name, defined=True, error=f"{type(exc).__name__}: {exc}"[:500])
