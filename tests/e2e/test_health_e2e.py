"""Health follows the real processes: heartbeats from the running worker and beat, and a
worker killed outright turns /healthz and `latchkey health` unhealthy, naming it."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from app.models import Heartbeat
from app.testing.stack import LocalStack, wait_until
from tests.factories import write_flow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LocalStack]:
    """A small stack of its own (SQLite): this module kills its worker."""
    workdir = tmp_path_factory.mktemp("health")
    flows_dir = workdir / "flows"
    flows_dir.mkdir()
    write_flow(flows_dir)
    redis.Redis.from_url(redis_url).flushdb()
    local = LocalStack(workdir=workdir, flows_dir=flows_dir, redis_url=redis_url)
    try:
        local.start()
        yield local
    except BaseException:
        print(local.all_logs())
        raise
    finally:
        local.stop(kill=True)
        redis.Redis.from_url(redis_url).flushdb()


def _healthz(stack: LocalStack) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{stack.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _cli_health(stack: LocalStack) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "health"],
        env=stack.env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _heartbeats(stack: LocalStack) -> dict[str, Heartbeat]:
    database = stack.database()
    try:
        with database.session() as session:
            return {h.kind: h for h in session.execute(select(Heartbeat)).scalars()}
    finally:
        database.dispose()


def test_worker_and_beat_keep_their_heartbeats_fresh(stack: LocalStack) -> None:
    first = _heartbeats(stack)
    assert set(first) == {"worker", "beat"}
    assert first["worker"].process.startswith(("worker-access@", "worker-messages@"))
    assert first["beat"].process.startswith("beat@")
    # Both write again within a couple of intervals (1 s each with a 1 s sweep).
    wait_until(
        lambda: all(_heartbeats(stack)[k].at > first[k].at for k in ("worker", "beat")),
        10,
        "the worker and the beat to write their heartbeats again",
    )
    status, body = _healthz(stack)
    assert status == 200, body
    assert body["status"] == "ok" and body["problems"] == []
    assert body["worker"] == "ok" and body["beat"] == "ok"
    assert body["worker_heartbeat_age_seconds"] < 5 and body["beat_heartbeat_age_seconds"] < 5
    assert body["schema"] == "ok" and body["overdue_grants"] == 0

    done = _cli_health(stack)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["status"] == "ok"


def test_a_killed_worker_turns_health_unavailable_naming_it(stack: LocalStack) -> None:
    stack.kill_process("worker")
    # Stale after max(3 x 1 s sweep, 15 s): well within 30 s.
    # Both pools go with the supervisor (one may go a moment before the other, which
    # /healthz names as an unserved queue); then the heartbeats go stale.
    _, body = wait_until(
        lambda: (result := _healthz(stack))[0] == 503 and result[1]["worker"] == "stale" and result,
        30,
        "/healthz to say 503, the worker stale",
    )
    assert body["status"] == "unavailable" and body["worker"] == "stale"
    assert body["beat"] == "ok" and body["database"] == "ok" and body["broker"] == "ok"
    assert len(body["problems"]) == 1
    assert body["problems"][0].startswith("worker: last heartbeat")
    assert "is `latchkey worker` running?" in body["problems"][0]

    done = _cli_health(stack)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "unavailable" and report["worker"] == "stale"

    # A worker back under the same name makes it healthy again: it writes on start.
    stack.start_process("worker")
    wait_until(lambda: _healthz(stack)[0] == 200, 30, "/healthz to say 200 again")
