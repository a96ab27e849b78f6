"""Start-up checks: each misconfiguration stops web, worker and beat alike with one line
naming the setting (no traceback), and `latchkey check` reports the same problems.

Real processes (`python -m app.cli …`), a real SQLite database and the test run's Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from app.audit import AuditLog
from app.cli import migrate
from app.db import Database
from tests.factories import AUDIT_KEY, write_flow

ROOT = Path(__file__).resolve().parents[1]
Env = dict[str, str]


def latchkey(args: list[str], env: Env, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI in its own process, with only the settings given (no .env, no LATCHKEY_*)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "LATCHKEY_"))}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**base, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def good_env(tmp_path: Path, redis_url: str) -> Env:
    """Everything right: a migrated SQLite database, a valid flow, the test Redis."""
    flows = tmp_path / "flows"
    flows.mkdir()
    write_flow(flows)
    url = f"sqlite:///{tmp_path / 'latchkey.db'}"
    migrate(url)
    return {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "secret",
        "LATCHKEY_AUDIT_KEY": AUDIT_KEY,
        "LATCHKEY_FLOWS": str(flows),
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "LATCHKEY_STARTUP_TIMEOUT_SECONDS": "2",
        "LATCHKEY_BEAT_SCHEDULE_FILE": str(tmp_path / "celerybeat-schedule"),
        "PORT": "1",  # never reached: every case here stops before serving
    }


def _unreachable_database(env: Env, tmp_path: Path) -> Env:
    return {**env, "DATABASE_URL": "postgresql://nope:1/x"}


def _garbage_database_url(env: Env, tmp_path: Path) -> Env:
    return {**env, "DATABASE_URL": "not-a-url"}


def _unmigrated_database(env: Env, tmp_path: Path) -> Env:
    return {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}


def _schema_behind(env: Env, tmp_path: Path) -> Env:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate(url, "0006")
    return {**env, "DATABASE_URL": url}


def _redis_unreachable(env: Env, tmp_path: Path) -> Env:
    return {**env, "REDIS_URL": "redis://127.0.0.1:1/0"}


def _broken_flow(env: Env, tmp_path: Path) -> Env:
    write_flow(Path(env["LATCHKEY_FLOWS"]), name="Broken Flow", filename="broken.py")
    return env


def _wrong_audit_key(env: Env, tmp_path: Path) -> Env:
    db = Database(env["DATABASE_URL"])
    try:
        with db.session() as session:
            AuditLog(AUDIT_KEY.encode()).append(session, event="requested", actor="U1")
    finally:
        db.dispose()
    return {**env, "LATCHKEY_AUDIT_KEY": "another-key-0123456789abcdef"}


def _passkey_flow_without_public_url(env: Env, tmp_path: Path) -> Env:
    flows = Path(env["LATCHKEY_FLOWS"])
    write_flow(flows, name="vault", filename="vault.py", extra='approval_assurance="passkey",')
    return env


def _passkey_flow_in_socket_mode(env: Env, tmp_path: Path) -> Env:
    _passkey_flow_without_public_url(env, tmp_path)
    return {
        **env,
        "LATCHKEY_PUBLIC_URL": "https://latchkey.example.com",
        "SLACK_APP_TOKEN": "xapp-1",
    }


def _verified_identity_flow_without_oidc(env: Env, tmp_path: Path) -> Env:
    flows = Path(env["LATCHKEY_FLOWS"])
    write_flow(
        flows, name="linked", filename="linked.py", extra="identity=Identity(verified=True),"
    )
    return {**env, "LATCHKEY_PUBLIC_URL": "https://latchkey.example.com"}


# (misconfiguration, the setting the one line must name, words of the fix)
CASES: list[tuple[Callable[[Env, Path], Env], str, str]] = [
    (_unreachable_database, "DATABASE_URL", "did not answer after 2 s"),
    (_garbage_database_url, "DATABASE_URL", "is not a database URL"),
    (_unmigrated_database, "DATABASE_URL", "run `latchkey migrate`"),
    (_schema_behind, "DATABASE_URL", "run `latchkey migrate`"),
    (_redis_unreachable, "REDIS_URL", "did not answer after 2 s"),
    (_broken_flow, "LATCHKEY_FLOWS", "must be lowercase"),
    (_wrong_audit_key, "LATCHKEY_AUDIT_KEY", "latchkey audit rotate-key"),
    (_passkey_flow_without_public_url, "LATCHKEY_PUBLIC_URL", "vault: a passkey (approval_"),
    (_passkey_flow_in_socket_mode, "SLACK_APP_TOKEN", "in Socket Mode"),
    (
        _verified_identity_flow_without_oidc,
        "LATCHKEY_OIDC_ISSUER",
        "linked: Identity(verified=True) needs verified identity links",
    ),
]


@pytest.mark.parametrize("process", ["web", "worker", "beat"])
@pytest.mark.parametrize(
    ("misconfigure", "setting", "fix"), CASES, ids=[c[0].__name__.strip("_") for c in CASES]
)
def test_each_misconfiguration_stops_every_process_with_one_line_naming_it(
    process: str,
    misconfigure: Callable[[Env, Path], Env],
    setting: str,
    fix: str,
    good_env: Env,
    tmp_path: Path,
) -> None:
    done = latchkey([process], misconfigure(good_env, tmp_path), tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0
    assert len(lines) == 1, done.stderr
    assert setting in lines[0] and fix in lines[0], lines[0]
    assert "Traceback" not in done.stderr


def test_check_passes_on_a_good_configuration(good_env: Env, tmp_path: Path) -> None:
    done = latchkey(["check"], good_env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    assert "ok   database" in done.stdout and "ok   redis" in done.stdout


def test_check_names_every_problem_and_exits_1(good_env: Env, tmp_path: Path) -> None:
    env = _redis_unreachable(_schema_behind(good_env, tmp_path), tmp_path)
    done = latchkey(["check"], env, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 2, done.stdout
    assert "FAIL schema: DATABASE_URL: the schema is behind" in failed[0]
    assert "FAIL redis: REDIS_URL: Redis at 127.0.0.1:1/0 did not answer at once" in failed[1]


def test_check_stops_with_2_on_settings_that_do_not_parse(good_env: Env, tmp_path: Path) -> None:
    done = latchkey(["check"], {**good_env, "PORT": "not-a-port"}, tmp_path)
    assert done.returncode == 2
    assert "PORT" in done.stderr and len(done.stderr.strip().splitlines()) == 1
