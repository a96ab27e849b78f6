"""LATCHKEY_LOG_FORMAT=json on the real processes: a request to a grant leaves web and
worker lines that parse, carry who and which request or task, and hold no secret."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from app.slack import ids
from app.testing.scenes import (
    approval_card_for,
    click,
    dm_to,
    new_person,
    request_id_on,
    submit_request,
)
from app.testing.stack import AUDIT_KEY, BOT_TOKEN, SIGNING_SECRET, LocalStack
from tests.factories import APPROVER, GROUP_NAME, write_flow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LocalStack]:
    workdir = tmp_path_factory.mktemp("json-logs")
    flows_dir = workdir / "flows"
    flows_dir.mkdir()
    write_flow(flows_dir)
    redis.Redis.from_url(redis_url).flushdb()
    local = LocalStack(
        workdir=workdir,
        flows_dir=flows_dir,
        redis_url=redis_url,
        extra_env={"LATCHKEY_LOG_FORMAT": "json", "LATCHKEY_LOG_LEVEL": "DEBUG"},
    )
    try:
        local.start()
        local.slack.add_user(APPROVER, name="ann", email="ann@example.com")
        local.iam().create_group(GroupName=GROUP_NAME)
        yield local
    except BaseException:
        print(local.all_logs())
        raise
    finally:
        local.stop(kill=True)
        redis.Redis.from_url(redis_url).flushdb()


def _json_lines(stack: LocalStack, name: str) -> list[dict[str, Any]]:
    """Every line of a process's log that is a JSON record (gunicorn's own are not)."""
    records = []
    for line in stack.log(name).splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))  # fails the test when a record does not parse
    return records


def test_a_request_to_a_grant_logs_parseable_attributed_lines_without_secrets(
    stack: LocalStack,
) -> None:
    person = new_person(stack)
    submit_request(stack, person, flow="test-admin", target="admins", seconds=3600, reason="fix")
    card = approval_card_for(stack, person)
    request_id = request_id_on(card)
    assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
    dm_to(stack, person, "You now have")

    web = _json_lines(stack, "web")
    interactions = [r for r in web if r["logger"] == "app.slack.edge" and r.get("interaction")]
    submitted = [
        r for r in interactions if r["interaction"] == f"view_submission {ids.REQUEST_VIEW}"
    ]
    clicked = [r for r in interactions if r["interaction"] == f"block_actions {ids.APPROVE_ACTION}"]
    assert submitted and clicked, [r["message"] for r in web]
    assert all(r["request_id"] and r["status"] == "200" for r in interactions)
    assert submitted[-1]["user"] == person.user_id and submitted[-1]["flow"] == "test-admin"
    assert clicked[-1]["user"] == APPROVER
    assert len({r["request_id"] for r in interactions}) == len(interactions)  # one per request

    worker = _json_lines(stack, "worker")
    in_tasks = [r for r in worker if r["task_id"]]
    assert in_tasks, [r["message"] for r in worker]
    about_it = [r for r in in_tasks if r["request_id"] == request_id]
    assert about_it and all(r["flow"] == "test-admin" for r in about_it)
    assert {r["user"] for r in about_it} == {person.user_id}
    # What the tasks themselves log (app.*, celery's trace) carries the task id.
    task_lines = [r for r in worker if r["logger"] in ("celery.app.trace", "app.worker.tasks")]
    assert task_lines and all(r["task_id"] for r in task_lines if "succeeded" in r["message"])

    everything = stack.log("web") + stack.log("worker")
    for secret in (BOT_TOKEN, SIGNING_SECRET, AUDIT_KEY, "hooks.slack.com", "/response/"):
        assert secret not in everything, secret


def test_liveness_and_readiness(stack: LocalStack) -> None:
    base = f"http://127.0.0.1:{stack.port}"
    with urllib.request.urlopen(f"{base}/livez", timeout=5) as live:  # noqa: S310 - loopback
        assert (live.status, live.read()) == (200, b"ok\n")
    for path in ("/readyz", "/healthz"):
        try:
            with urllib.request.urlopen(f"{base}{path}", timeout=5) as ready:  # noqa: S310
                status, body = ready.status, json.loads(ready.read())
        except urllib.error.HTTPError as refused:  # 503 while e.g. a heartbeat is late
            status, body = refused.code, json.loads(refused.read())
        assert status in (200, 503) and {"status", "problems", "database"} <= body.keys()
