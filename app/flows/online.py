"""`latchkey flows check --online`: ask each provider whether a flow's targets exist and
can be managed with the bot's credentials, so a typo in an account id or a missing
permission set is found before anyone requests it, not at grant time."""

from __future__ import annotations

from dataclasses import dataclass

from app.flows.loader import FlowRegistry
from app.flows.schema import provider_of
from app.providers.base import ProviderError
from app.providers.registry import ProviderRegistry


@dataclass(frozen=True)
class TargetCheck:
    flow: str
    target: str
    provider: str
    problems: tuple[str, ...]
    # False when the provider offers no online check (nothing was asked).
    checked: bool = True


def verify_targets(flows: FlowRegistry, providers: ProviderRegistry) -> list[TargetCheck]:
    results = []
    for loaded in flows:
        for target in loaded.flow.targets:
            name = provider_of(target)
            results.append(_verify(loaded.flow.name, target, name, providers))
    return results


def _verify(flow: str, target: object, name: str, providers: ProviderRegistry) -> TargetCheck:
    label = getattr(target, "name", "?")
    try:
        provider = providers.get(name)
        verify = getattr(provider, "verify", None)
        if verify is None:
            return TargetCheck(flow, label, name, (), checked=False)
        problems = tuple(verify(target))
    except ProviderError as exc:
        problems = (str(exc),)
    except Exception as exc:
        # Missing credentials, an unreachable endpoint: the check could not run at all.
        problems = (f"could not check: {type(exc).__name__}: {exc}",)
    return TargetCheck(flow, label, name, problems)
