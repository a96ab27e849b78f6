"""Load the admin's flow modules from LATCHKEY_FLOWS and report mistakes by file and field."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from app.flows.schema import BUILTIN_PROVIDERS, CustomTarget, Flow
from app.providers.custom import CustomProvider

HOOK_PREFIXES = ("get_", "on_", "after_")


class FlowError(Exception):
    """A flow file that cannot be used; `str()` names the file and the field."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = [f"{path}: {p}" for p in problems]
        super().__init__("\n".join(self.problems))

    @classmethod
    def combine(cls, errors: list[FlowError]) -> FlowError:
        combined = cls(errors[0].path, [])
        combined.problems = [line for e in errors for line in e.problems]
        combined.args = ("\n".join(combined.problems),)
        return combined


@dataclass(frozen=True)
class LoadedModule:
    """One module of the flows folder: its flow (if any), hooks and custom providers."""

    path: Path
    flow: Flow | None
    hooks: dict[str, Callable[..., Any]]
    providers: dict[str, type[CustomProvider]]


@dataclass(frozen=True)
class LoadedFlow:
    """A validated flow with the hooks its module defines (get_*, on_*, after_*)."""

    flow: Flow
    path: Path
    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)


class FlowRegistry:
    """All flows by name, loaded once per process."""

    def __init__(
        self,
        flows: list[LoadedFlow],
        providers: dict[str, type[CustomProvider]] | None = None,
    ) -> None:
        self._by_name = {loaded.flow.name: loaded for loaded in flows}
        # Custom provider classes by registered name (built by the ProviderRegistry).
        self.providers = dict(providers or {})

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> LoadedFlow | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)


def _validation_problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "flow"
        problems.append(f"{where}: {err['msg']}")
    return problems


def load_flow_file(path: Path) -> LoadedFlow:
    """One flow module (which must define a Flow)."""
    loaded = load_module(path)
    if loaded.flow is None:
        raise FlowError(path, ["must define exactly one Flow (found 0)"])
    return LoadedFlow(flow=loaded.flow, path=path, hooks=loaded.hooks)


def load_module(path: Path) -> LoadedModule:
    """A module of the flows folder: a flow, custom providers, or both."""
    module_name = f"latchkey_flows.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise FlowError(path, ["cannot be imported as a Python module"])
    module = importlib.util.module_from_spec(spec)
    # Registered so dataclasses/pickling inside flow modules can find their module.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except ValidationError as exc:
        raise FlowError(path, _validation_problems(exc)) from None
    except Exception as exc:
        raise FlowError(path, [f"raised {type(exc).__name__} while loading: {exc}"]) from None
    providers = _providers(module, path)
    flows = [v for v in vars(module).values() if isinstance(v, Flow)]
    if len(flows) > 1 or (not flows and not providers):
        raise FlowError(path, [f"must define exactly one Flow (found {len(flows)})"])
    return LoadedModule(path, flows[0] if flows else None, _hooks(module), providers)


def _providers(module: ModuleType, path: Path) -> dict[str, type[CustomProvider]]:
    found: dict[str, type[CustomProvider]] = {}
    for value in vars(module).values():
        if not (
            isinstance(value, type)
            and issubclass(value, CustomProvider)
            and value.__module__ == module.__name__
        ):
            continue
        name = getattr(value, "name", None)
        if not isinstance(name, str) or not name:
            raise FlowError(path, [f"{value.__name__}: a custom provider must set `name`"])
        if name in BUILTIN_PROVIDERS:
            raise FlowError(path, [f"{value.__name__}: {name!r} is a built-in provider's name"])
        found[name] = value
    return found


def _custom_target_problems(item: LoadedFlow, known: dict[str, type[CustomProvider]]) -> list[str]:
    """Each custom target names a provider that exists and gives it settings it accepts."""
    problems = []
    for index, target in enumerate(item.flow.targets):
        if not isinstance(target, CustomTarget):
            continue
        if target.using not in known:
            names = ", ".join(sorted(known)) or "none are defined"
            problems.append(
                f"targets.{index}.using: no custom provider named {target.using!r} ({names})"
            )
            continue
        try:
            found = known[target.using].settings_problems(dict(target.settings))
        except Exception as exc:
            found = [f"settings: the provider's check raised {type(exc).__name__}: {exc}"]
        problems.extend(f"targets.{index}.{problem}" for problem in found)
    return problems


def _hooks(module: ModuleType) -> dict[str, Callable[..., Any]]:
    return {
        name: value
        for name, value in vars(module).items()
        if name.startswith(HOOK_PREFIXES)
        and callable(value)
        and value.__module__ == module.__name__
    }


def _escalation_hook_problems(item: LoadedFlow) -> list[str]:
    """Each escalation step's hook is a function of the flow's own module."""
    return [
        f"escalation.{index}.hook: no function {step.hook}() in this file"
        for index, step in enumerate(item.flow.escalation)
        if step.hook is not None and step.hook not in item.hooks
    ]


def load_flows(directory: Path) -> FlowRegistry:
    """Load every `*.py` in the folder (files starting with `_` are helpers, not flows).

    Collects every file's problems before failing, so one run of `latchkey flows check`
    shows all of them.
    """
    if not directory.is_dir():
        raise FlowError(directory, ["LATCHKEY_FLOWS is not a folder"])
    loaded: list[LoadedFlow] = []
    errors: list[FlowError] = []
    seen: dict[str, Path] = {}
    providers: dict[str, type[CustomProvider]] = {}
    provider_paths: dict[str, Path] = {}
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            module = load_module(path)
        except FlowError as exc:
            errors.append(exc)
            continue
        for name, cls in module.providers.items():
            if name in providers:
                errors.append(
                    FlowError(
                        path, [f"provider {name!r} is already defined in {provider_paths[name]}"]
                    )
                )
            providers[name], provider_paths[name] = cls, path
        if module.flow is None:
            continue
        item = LoadedFlow(flow=module.flow, path=path, hooks=module.hooks)
        if item.flow.name in seen:
            errors.append(
                FlowError(
                    path, [f"name: {item.flow.name!r} is already used by {seen[item.flow.name]}"]
                )
            )
            continue
        seen[item.flow.name] = path
        loaded.append(item)
    for item in loaded:
        unknown = _custom_target_problems(item, providers) + _escalation_hook_problems(item)
        if unknown:
            errors.append(FlowError(item.path, unknown))
    if errors:
        raise FlowError.combine(errors)
    if not loaded:
        raise FlowError(directory, ["no flows found (add a flow module, see flows/README.md)"])
    return FlowRegistry(loaded, providers)
