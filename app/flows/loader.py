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

from app.flows.schema import Flow

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
class LoadedFlow:
    """A validated flow with the hooks its module defines (get_*, on_*, after_*)."""

    flow: Flow
    path: Path
    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)


class FlowRegistry:
    """All flows by name, loaded once per process."""

    def __init__(self, flows: list[LoadedFlow]) -> None:
        self._by_name = {loaded.flow.name: loaded for loaded in flows}

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
    return LoadedFlow(flow=_the_flow(module, path), path=path, hooks=_hooks(module))


def _the_flow(module: ModuleType, path: Path) -> Flow:
    flows = [v for v in vars(module).values() if isinstance(v, Flow)]
    if len(flows) != 1:
        raise FlowError(path, [f"must define exactly one Flow (found {len(flows)})"])
    return flows[0]


def _hooks(module: ModuleType) -> dict[str, Callable[..., Any]]:
    return {
        name: value
        for name, value in vars(module).items()
        if name.startswith(HOOK_PREFIXES)
        and callable(value)
        and value.__module__ == module.__name__
    }


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
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            item = load_flow_file(path)
        except FlowError as exc:
            errors.append(exc)
            continue
        if item.flow.name in seen:
            errors.append(
                FlowError(
                    path, [f"name: {item.flow.name!r} is already used by {seen[item.flow.name]}"]
                )
            )
            continue
        seen[item.flow.name] = path
        loaded.append(item)
    if errors:
        raise FlowError.combine(errors)
    if not loaded:
        raise FlowError(directory, ["no flows found (add a flow module, see flows/README.md)"])
    return FlowRegistry(loaded)
