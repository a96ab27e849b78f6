"""Custom providers: grant anything Latchkey has no built-in provider for.

A custom provider is a class in a module of the flows folder that subclasses
`CustomProvider` and sets `name`. The flow loader registers it by that name; a flow's
`CustomTarget(using=<name>, settings={...})` is granted by it. One instance is built per
process, on first use, with no arguments: read connection settings (never secrets in the
flow file) from the environment in `__init__`.

`flows/provider_postgres_role.py` is a worked example.
"""

from __future__ import annotations

from typing import Any, ClassVar

from app.providers.base import GrantSpec, ProviderError


class CustomProvider:
    """Subclass this; implement grant, revoke and check. The rest is optional."""

    name: ClassVar[str]
    # True when the system granted into ends access at `spec.expires_at` by itself.
    native_expiry: ClassVar[bool] = False

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        raise NotImplementedError

    def revoke(self, spec: GrantSpec) -> dict[str, Any]:
        raise NotImplementedError

    def check(self, spec: GrantSpec) -> bool:
        raise NotImplementedError

    # Class methods: `latchkey flows check` and the request modal call them without building
    # the provider (no connections from the web process).
    @classmethod
    def settings_problems(cls, settings: dict[str, Any]) -> list[str]:
        """What is wrong with a target's `settings`, each problem naming the key."""
        return []

    @classmethod
    def principal_problem(cls, principal: str) -> str | None:
        """Why `principal` cannot be one here (None: it can)."""
        return None


class Guarded:
    """A custom provider as Latchkey calls it: whatever it raises becomes a ProviderError
    naming the provider, so an unexpected exception fails one grant (or is retried, for a
    revoke) instead of stopping a task loop or a reconciliation run for everyone."""

    def __init__(self, cls: type[CustomProvider]) -> None:
        self.name = cls.name
        self.native_expiry = bool(getattr(cls, "native_expiry", False))
        self._inner = self._call("start", cls)
        if hasattr(self._inner, "verify"):
            self.verify = lambda target: self._call("verify", self._inner.verify, target)
        if hasattr(self._inner, "provisioned"):
            self.provisioned = lambda target: self._call(
                "list what it provisioned", self._inner.provisioned, target
            )
        if hasattr(self._inner, "credentials"):
            # A shared account it lends (CustomTarget(checkout=…)): the holder's login.
            self.credentials = lambda spec: self._call(
                "show credentials", self._inner.credentials, spec
            )
        if all(hasattr(self._inner, m) for m in ("member_scope", "members", "lists_own")):
            # Reconciliation reads the scope once for all its grants (see Provider).
            self.member_scope = lambda target: self._call(
                "name a scope", self._inner.member_scope, target
            )
            self.members = lambda target: self._call("list members", self._inner.members, target)
            self.lists_own = lambda target: bool(
                self._call("tell its own", self._inner.lists_own, target)
            )

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        return self._call("grant", self._inner.grant, spec)  # type: ignore[no-any-return]

    def revoke(self, spec: GrantSpec) -> dict[str, Any]:
        return self._call("revoke", self._inner.revoke, spec)  # type: ignore[no-any-return]

    def check(self, spec: GrantSpec) -> bool:
        return bool(self._call("check", self._inner.check, spec))

    def _call(self, step: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(
                f"custom provider {self.name} failed to {step}: {type(exc).__name__}: {exc}",
                transient=False,
            ) from exc
