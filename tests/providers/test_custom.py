"""A custom provider that raises something unexpected fails one call with its name, never
the task loop or a whole reconciliation run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.db import utcnow
from app.flows.schema import CustomTarget
from app.providers.base import GrantSpec, ProviderError
from app.providers.custom import CustomProvider
from app.providers.registry import default_providers


class Flaky(CustomProvider):
    name = "flaky_panel"

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        raise KeyError("role")

    def check(self, spec: GrantSpec) -> bool:
        raise RuntimeError("panel returned HTML")


class Unbuildable(CustomProvider):
    name = "unbuildable"

    def __init__(self) -> None:
        raise OSError("ADMIN_PANEL_TOKEN is not set")


SPEC = GrantSpec(
    principal="ann@example.com",
    target=CustomTarget(name="panel", using="flaky_panel"),
    expires_at=utcnow() + timedelta(minutes=5),
)


def test_unexpected_exceptions_become_provider_errors_naming_the_provider() -> None:
    providers = default_providers(custom={"flaky_panel": Flaky, "unbuildable": Unbuildable})
    panel = providers.get("flaky_panel")
    with pytest.raises(ProviderError) as granted:
        panel.grant(SPEC)
    assert str(granted.value) == "custom provider flaky_panel failed to grant: KeyError: 'role'"
    assert granted.value.transient is False
    with pytest.raises(ProviderError, match="failed to check: RuntimeError: panel returned HTML"):
        panel.check(SPEC)
    with pytest.raises(ProviderError) as built:
        providers.get("unbuildable")
    assert str(built.value) == (
        "custom provider unbuildable failed to start: OSError: ADMIN_PANEL_TOKEN is not set"
    )
    # A provider without the optional online check offers none.
    assert getattr(panel, "verify", None) is None
