"""A web process is ready when it starts: the first `/access` of each worker opens its modal
inside Slack's trigger window, and Slack being down at start leaves the web serving
/healthz (naming Slack) until Slack returns, instead of crash-looping."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from app.testing.scenes import new_person
from app.testing.stack import LocalStack, wait_until
from tests.factories import write_flow

TRIGGER_WINDOW = 2.5  # Slack allows 3 s; leave room for the network between Slack and us


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LocalStack]:
    workdir = tmp_path_factory.mktemp("cold")
    flows_dir = workdir / "flows"
    flows_dir.mkdir()
    write_flow(flows_dir)
    # Two workers, as in production (WEB_CONCURRENCY): each must be ready on its own.
    local = LocalStack(
        workdir=workdir,
        flows_dir=flows_dir,
        redis_url=redis_url,
        extra_env={"WEB_CONCURRENCY": "2"},
    )
    try:
        local.start()
        yield local
    except BaseException:
        print(local.all_logs())
        raise
    finally:
        local.slack.set_unreachable(False)
        local.stop(kill=True)


def _healthz(stack: LocalStack) -> tuple[int, dict[str, Any]] | None:
    url = f"http://127.0.0.1:{stack.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return None


def _start_web_without_waiting(stack: LocalStack) -> subprocess.Popen[bytes]:
    """LocalStack.start_process("web") waits for /healthz "ok", which never comes while
    Slack is down: start the same command with the same environment, and wait here."""
    with (stack.workdir / "web.log").open("ab") as log:
        process = subprocess.Popen(
            stack._command("web"),
            env=stack.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack._processes["web"] = process
    return process


def _open_modal(stack: LocalStack, user_id: str, trigger: str) -> float:
    """Seconds from sending `/access` to the stand-in receiving its views.open."""
    sent = time.monotonic()
    response = stack.driver.slash_command(user_id, trigger_id=trigger)
    assert response.status == 200, response
    call = stack.slack.wait_for("views.open", lambda a: a.get("trigger_id") == trigger, timeout=10)
    return call.at - sent


def test_the_first_access_commands_open_their_modal_inside_the_trigger_window(
    stack: LocalStack,
) -> None:
    people = [new_person(stack, iam_user=False) for _ in range(4)]
    stack.stop_process("web")
    stack.start_process("web")  # returns as soon as /healthz says ok
    took: dict[str, float] = {}

    def send(n: int) -> None:
        took[f"tr-cold-{n}"] = _open_modal(stack, people[n].user_id, f"tr-cold-{n}")

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert len(took) == 4, took
    assert max(took.values()) < TRIGGER_WINDOW, took
    opened = [c for c in stack.slack.calls("views.open") if c.args["trigger_id"] in took]
    assert len(opened) == 4 and all(c.ok for c in opened)


def test_web_starts_while_slack_is_down_and_recovers_when_it_returns(stack: LocalStack) -> None:
    person = new_person(stack, iam_user=False)
    stack.stop_process("web")
    stack.slack.set_unreachable(True)
    try:
        web = _start_web_without_waiting(stack)
        status, report = wait_until(
            lambda: _healthz(stack), 30, "the web to answer /healthz while Slack is down"
        )
        assert status == 503
        assert report["slack"].startswith("unreachable"), report
        assert any(p.startswith("slack: unreachable") for p in report["problems"]), report
        assert (report["database"], report["broker"]) == ("ok", "ok")
        time.sleep(2)  # a crash-looping web would have died by now
        assert web.poll() is None, stack.log("web")[-3000:]
        assert _healthz(stack) is not None
        # Asked meanwhile, the person hears why nothing happens.
        answer = stack.driver.slash_command(person.user_id, trigger_id="tr-while-down")
        assert answer.status == 200 and "cannot reach Slack" in answer.body, answer
    finally:
        stack.slack.set_unreachable(False)
    # Slack is back: the very next /access works, and health turns ok.
    assert _open_modal(stack, person.user_id, "tr-after-outage") < TRIGGER_WINDOW
    wait_until(
        lambda: (_healthz(stack) or (0, {}))[1].get("status") == "ok",
        30,
        "/healthz to say ok once Slack is back",
    )
    assert web.poll() is None
    assert "Worker failed to boot" not in stack.log("web")


def test_web_starts_with_a_refused_token_and_says_so(stack: LocalStack) -> None:
    stack.stop_process("web")
    stack.extra_env["SLACK_BOT_TOKEN"] = "xoxb-revoked-token"
    try:
        web = _start_web_without_waiting(stack)
        status, report = wait_until(lambda: _healthz(stack), 30, "/healthz with a refused token")
        assert status == 503 and report["slack"] == "error: auth.test answered invalid_auth"
        time.sleep(1)
        assert web.poll() is None, stack.log("web")[-3000:]
    finally:
        del stack.extra_env["SLACK_BOT_TOKEN"]
        stack.stop_process("web")
    stack.start_process("web")  # the right token again: healthy
    assert stack.health()["slack"] == "ok"
