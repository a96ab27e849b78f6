"""compose.yaml agrees with the code: real subcommands, real settings, the image it builds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import build_parser
from app.config import Settings

ROOT = Path(__file__).resolve().parents[1]
LATCHKEY_SERVICES = {"migrate", "web", "worker", "beat"}
# Variables that are not Latchkey settings but are read by something we run: the bundled
# PostgreSQL and Redis images, boto3, `latchkey web` (gunicorn workers) and gunicorn itself.
OTHER_VARIABLES = re.compile(
    r"^(POSTGRES_\w+|AWS_\w+|REDIS_PASSWORD|WEB_CONCURRENCY|XDG_RUNTIME_DIR)$"
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_the_latchkey_services_build_one_image_from_the_containerfile(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) >= LATCHKEY_SERVICES
    assert (ROOT / "Containerfile").is_file()
    for name in LATCHKEY_SERVICES:
        service = services[name]
        assert service["build"] == ".", name
        assert service["image"] == "latchkey:local", name
        assert service["env_file"] == ".env", name


def test_every_command_is_a_latchkey_subcommand(compose: dict[str, Any]) -> None:
    parser = build_parser()
    for name in LATCHKEY_SERVICES:
        command = compose["services"][name]["command"]
        assert command[0] != "latchkey", f"{name}: the image's ENTRYPOINT is already latchkey"
        assert command[0] == name, f"{name} runs `latchkey {command[0]}`"
        parser.parse_args(command)  # SystemExit on an unknown subcommand or option


def test_health_checks_and_restarts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in LATCHKEY_SERVICES - {"migrate"}:
        assert services[name]["healthcheck"]["test"] == ["CMD", "latchkey", "health"], name
        assert services[name]["restart"] == "unless-stopped", name
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }, name
    # migrate is one-shot: run to completion, never restarted, no health to report.
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["healthcheck"] == {"disable": True}
    parser = build_parser()
    health = services["web"]["healthcheck"]["test"]
    parser.parse_args(health[2:])


def test_every_variable_is_a_setting_or_a_known_other(compose: dict[str, Any]) -> None:
    aliases = {field.alias for field in Settings.model_fields.values() if field.alias}
    for name, service in compose["services"].items():
        for variable in service.get("environment") or {}:
            assert variable in aliases or OTHER_VARIABLES.match(variable), (
                f"{name} sets {variable}: neither a Settings alias (app/config.py) nor a known "
                "non-Latchkey variable"
            )


def test_exactly_one_beat(compose: dict[str, Any]) -> None:
    beat = compose["services"]["beat"]
    assert beat["deploy"]["replicas"] == 1
    assert beat["environment"]["LATCHKEY_BEAT_SCHEDULE_FILE"].startswith("/var/lib/latchkey/")
    assert any(v.endswith(":/var/lib/latchkey") for v in beat["volumes"])
