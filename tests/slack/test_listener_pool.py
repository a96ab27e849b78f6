"""Bolt's listener pool follows gunicorn's --threads, however the operator set it."""

from __future__ import annotations

import pytest

from app import gunicorn_conf
from app.slack.app import listener_threads, server_threads


@pytest.mark.parametrize(
    ("cmd_args", "threads"),
    [
        ("", gunicorn_conf.threads),
        ("--threads 16", 16),
        ("--timeout 60 --threads=12 --graceful-timeout 30", 12),
        ("--threads nonsense", gunicorn_conf.threads),
        ("--threads 0", gunicorn_conf.threads),
    ],
)
def test_the_pool_follows_gunicorn_threads(cmd_args: str, threads: int) -> None:
    environ = {"GUNICORN_CMD_ARGS": cmd_args}
    assert server_threads(environ) == threads
    # One thread per request up to its ack, one for what each leaves after it.
    assert listener_threads(environ) == 2 * threads
