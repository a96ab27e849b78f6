"""Fail closed: the processes refuse to start on bad settings or an invalid flow, naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import AUDIT_KEY, write_flow


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "LATCHKEY_"))}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def good_env(tmp_path: Path) -> dict[str, str]:
    flows = tmp_path / "flows"
    flows.mkdir()
    write_flow(flows)
    return {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "secret",
        "LATCHKEY_AUDIT_KEY": AUDIT_KEY,
        "LATCHKEY_FLOWS": str(flows),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }


@pytest.mark.parametrize("process", ["web", "worker"])
def test_http_web_and_worker_refuse_to_start_without_signing_secret(
    process: str, good_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**good_env, "SLACK_SIGNING_SECRET": ""}
    done = _run([process], env, tmp_path)
    assert done.returncode == 2
    assert "SLACK_SIGNING_SECRET is not set" in done.stderr


@pytest.mark.parametrize("process", ["web", "worker"])
def test_invalid_flow_stops_start_up_with_file_and_field(
    process: str, good_env: dict[str, str], tmp_path: Path
) -> None:
    flows = Path(good_env["LATCHKEY_FLOWS"])
    write_flow(flows, name="Broken Flow", filename="broken.py")
    done = _run([process], good_env, tmp_path)
    assert done.returncode == 2
    assert f"{flows / 'broken.py'}: name: Value error, must be lowercase" in done.stderr


@pytest.mark.parametrize("process", ["web", "worker"])
def test_web_and_worker_refuse_to_start_without_the_bot_token(
    process: str, good_env: dict[str, str], tmp_path: Path
) -> None:
    done = _run([process], {**good_env, "SLACK_BOT_TOKEN": ""}, tmp_path)
    assert done.returncode == 2
    assert "SLACK_BOT_TOKEN is not set" in done.stderr


@pytest.mark.parametrize("process", ["web", "worker", "beat"])
def test_missing_audit_key_stops_start_up(
    process: str, good_env: dict[str, str], tmp_path: Path
) -> None:
    done = _run([process], {**good_env, "LATCHKEY_AUDIT_KEY": ""}, tmp_path)
    assert done.returncode == 2 and "LATCHKEY_AUDIT_KEY" in done.stderr
