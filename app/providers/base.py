"""What every provider does: apply, remove and check one kind of access, idempotently."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


class ProviderError(Exception):
    """A provider call failed. `transient` errors are retried; others fail the grant."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class GrantSpec:
    """What a provider needs to know: who, what (the flow's target), until when."""

    principal: str
    target: Any
    expires_at: datetime


class Provider(Protocol):
    name: str

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        """Apply the access; applying what exists is success. Returns details for the audit."""

    def revoke(self, spec: GrantSpec) -> dict[str, Any]:
        """Remove the access; removing what is gone is success."""

    def check(self, spec: GrantSpec) -> bool:
        """Is the access present at the provider right now? (reconciliation)"""
