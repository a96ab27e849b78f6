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

from app.providers.base import GrantSpec


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
