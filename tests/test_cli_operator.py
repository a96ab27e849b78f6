"""The operator's CLI: --version, help on everything, migrate --current / --to, and
gunicorn settings that GUNICORN_CMD_ARGS overrides."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from app.cli import build_parser
from app.health import migrations_head

ROOT = Path(__file__).resolve().parents[1]


def latchkey(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "LATCHKEY_"))}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**base, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_is_the_installed_distributions(tmp_path: Path) -> None:
    done = latchkey(["--version"], {}, tmp_path)
    assert done.returncode == 0
    assert done.stdout.strip() == f"latchkey {version('latchkey')}"


def _parsers(parser: argparse.ArgumentParser, path: str = "latchkey"):  # type: ignore[no-untyped-def]
    """(command path, parser, help of the subcommand) for the parser and every subcommand."""
    yield path, parser, "top"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                yield from _with_help(_parsers(child, f"{path} {name}"), helps.get(name))


def _with_help(found, first_help):  # type: ignore[no-untyped-def]
    for n, (path, parser, help_) in enumerate(found):
        yield path, parser, first_help if n == 0 else help_


def test_every_subcommand_and_flag_has_help() -> None:
    missing = []
    for path, parser, help_ in _parsers(build_parser()):
        if not help_:
            missing.append(path)
        missing += [
            f"{path} {'/'.join(a.option_strings) or a.dest}"
            for a in parser._actions
            if not a.help and not isinstance(a, argparse._SubParsersAction)
        ]
    assert missing == []


def test_migrate_current_then_to_a_revision_down_and_up(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}"}
    head = migrations_head()

    def current() -> list[str]:
        done = latchkey(["migrate", "--current"], env, tmp_path)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert current() == ["database:", "none", "(never", "migrated)", "head:", head]
    up = latchkey(["migrate", "--to", "0006"], env, tmp_path)
    assert up.returncode == 0 and "upgraded from an empty database to 0006" in up.stdout
    assert current() == ["database:", "0006", "head:", head]
    assert latchkey(["migrate"], env, tmp_path).returncode == 0
    assert current() == ["database:", head, "head:", head]
    down = latchkey(["migrate", "--to", "0005"], env, tmp_path)
    assert down.returncode == 0 and f"downgraded from {head} to 0005" in down.stdout
    assert current() == ["database:", "0005", "head:", head]
    unknown = latchkey(["migrate", "--to", "9999"], env, tmp_path)
    assert unknown.returncode == 1 and "9999" in unknown.stderr
    assert current() == ["database:", "0005", "head:", head]


def _gunicorn_config(monkeypatch: pytest.MonkeyPatch, cmd_args: str | None):  # type: ignore[no-untyped-def]
    """gunicorn's own configuration, loaded as `latchkey web` starts it, without serving."""
    from gunicorn.app.wsgiapp import WSGIApplication

    if cmd_args is None:
        monkeypatch.delenv("GUNICORN_CMD_ARGS", raising=False)
    else:
        monkeypatch.setenv("GUNICORN_CMD_ARGS", cmd_args)
    monkeypatch.setenv("PORT", "3456")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setattr(
        sys, "argv", ["gunicorn", "-c", "python:app.gunicorn_conf", "app.web:wsgi()"]
    )
    sys.modules.pop("app.gunicorn_conf", None)  # read PORT and WEB_CONCURRENCY again
    return WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").cfg


def test_gunicorn_settings_come_from_the_config_module(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _gunicorn_config(monkeypatch, None)
    assert cfg.bind == ["0.0.0.0:3456"] and cfg.workers == 3
    assert cfg.worker_class_str == "gthread" and cfg.threads == 8
    assert (cfg.limit_request_line, cfg.limit_request_fields) == (2048, 50)
    assert cfg.limit_request_field_size == 4096
    assert (cfg.timeout, cfg.graceful_timeout, cfg.keepalive) == (30, 20, 5)
    assert cfg.accesslog is None
    assert cfg.child_exit.__module__ == "app.gunicorn_conf"


def test_gunicorn_cmd_args_override_the_config_module(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _gunicorn_config(monkeypatch, "--timeout 77 --threads 16 --workers 5")
    assert (cfg.timeout, cfg.threads, cfg.workers) == (77, 16, 5)
    assert cfg.limit_request_line == 2048  # the rest as configured
