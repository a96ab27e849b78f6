"""What flows need of the deployment's settings: checked by `latchkey flows check` and at
every process's start, so a flow that cannot work as written never starts half working."""

from __future__ import annotations

from pathlib import Path

from app.config import Settings
from app.flows.loader import FlowRegistry
from app.flows.targets import provider_of


def settings_problems(registry: FlowRegistry, settings: Settings) -> list[tuple[Path, str]]:
    """(flow file, problem) for each flow the settings cannot serve."""
    problems: list[tuple[Path, str]] = []
    for loaded in registry:
        for provider in sorted({provider_of(t) for t in loaded.flow.targets}):
            missing = settings.provider_problem(provider)
            if missing:
                problems.append(
                    (loaded.path, f"{loaded.flow.name}: its {provider} targets need {missing}")
                )
        if loaded.flow.identity.verified and settings.oidc_problem:
            problems.append(
                (
                    loaded.path,
                    f"{loaded.flow.name}: Identity(verified=True) needs verified identity "
                    f"links: {settings.oidc_problem}",
                )
            )
        if loaded.flow.identity.verified and settings.socket_mode:
            problems.append(
                (
                    loaded.path,
                    f"{loaded.flow.name}: Identity(verified=True) needs the web process serving "
                    "HTTP at LATCHKEY_PUBLIC_URL (the identity provider's callback); in Socket "
                    "Mode (SLACK_APP_TOKEN set) it serves no pages",
                )
            )
        if "passkey" not in (loaded.flow.approval_assurance, loaded.flow.requester_assurance):
            continue
        if not settings.public_url:
            problems.append(
                (
                    loaded.path,
                    f"{loaded.flow.name}: a passkey (approval_assurance or requester_assurance) "
                    "needs LATCHKEY_PUBLIC_URL, "
                    "the address where people open Latchkey's passkey pages",
                )
            )
        elif settings.socket_mode:
            problems.append(
                (
                    loaded.path,
                    f"{loaded.flow.name}: a passkey (approval_assurance or requester_assurance) "
                    "needs the web process "
                    "serving HTTP at LATCHKEY_PUBLIC_URL; in Socket Mode (SLACK_APP_TOKEN set) "
                    "it serves no pages. Serve Slack over HTTP (unset SLACK_APP_TOKEN) or drop "
                    "the passkey requirement",
                )
            )
    return problems
