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
    """Required: `name`, `grant`, `revoke`, `check`.

    Optional, looked up with getattr so a custom provider can stay small:
    - `native_expiry: bool` — the provider itself ends access at `spec.expires_at`
      (so an extension re-grants with the new end, and overlapping grants of the same
      access are granted with the latest end among them);
    (The format of a principal is checked when a request is made: built-ins in
    `app.providers.principals`, custom providers by their `principal_problem`; custom
    targets' settings by `settings_problems` when flows load. See `CustomProvider`.)
    - `verify(target) -> list[str]` — online checks for `latchkey flows check --online`
      (does the account, role, permission set or project exist and can we manage it?).
    - `provisioned(target) -> list[str] | None` — the principals holding access to the
      target's resource that Latchkey made (a binding titled "latchkey", a `latchkey-<role>`
      policy, an exclusive group's members), for reconciliation's orphan pass; None when
      this provider cannot tell Latchkey's access from anyone else's.
    - `member_scope(target) -> str` with `members(target) -> dict[str, set[str]]` — for
      reconciliation on a budget: one read (paged) of everyone holding access in the
      target's scope (an IAM group; a GCP policy, every role on it), as
      {resource: principals}, in place of one `check` per grant; targets with the same
      scope share the read. `lists_own(target) -> bool` says whether every principal
      listed for the target is Latchkey's to judge (an exclusive group, Latchkey's own
      bindings), so the same read also finds orphans.
    - `principal_key(principal) -> str` — the form in which two spellings of one identity
      compare equal (`user:Ann@x.com` and `ann@x.com` at Google); the identity by default.
    """

    name: str

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        """Apply the access; applying what exists is success. Returns details for the audit."""

    def revoke(self, spec: GrantSpec) -> dict[str, Any]:
        """Remove the access; removing what is gone is success."""

    def check(self, spec: GrantSpec) -> bool:
        """Is the access present at the provider right now? (reconciliation)"""
