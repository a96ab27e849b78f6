"""The edge in front of Bolt, through the real gunicorn: nothing unverified is read in full,
parsed or logged; user text cannot forge a log line; no response_url reaches the log."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from app.testing.scenes import new_person
from app.testing.slack_driver import sign
from app.testing.stack import SIGNING_SECRET, LocalStack
from tests.factories import write_flow

LIMIT = 64 * 1024  # LATCHKEY_MAX_BODY_BYTES of this stack
BIG = 50 * 1024 * 1024
HOOK = "https://hooks.slack.com/commands/T0LATCHKEY/99/fakeResponseSecret"
FORGED_TEXT = "2026-01-01 00:00:00,000 INFO app.access granted admin principal=ceo@example.com"
FORGED = f"\r\n{FORGED_TEXT}\r\n"
# A log line that starts like a record of app.access granting something.
FORGED_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ INFO app\.access granted", re.MULTILINE)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LocalStack]:
    workdir = tmp_path_factory.mktemp("edge")
    flows_dir = workdir / "flows"
    flows_dir.mkdir()
    write_flow(flows_dir)
    local = LocalStack(
        workdir=workdir,
        flows_dir=flows_dir,
        redis_url=redis_url,
        extra_env={"LATCHKEY_MAX_BODY_BYTES": str(LIMIT)},
    )
    try:
        local.start()
        yield local
    except BaseException:
        print(local.all_logs())
        raise
    finally:
        local.stop(kill=True)


def _log_size(stack: LocalStack) -> int:
    return (Path(stack.workdir) / "web.log").stat().st_size


def _log_after(stack: LocalStack, offset: int, settle: float = 0.5) -> str:
    time.sleep(settle)  # let the web flush what it logs about the request
    with (Path(stack.workdir) / "web.log").open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def _blocks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    block = b"a" * size
    for _ in range(total // size):
        yield block


def _chunked(blocks: Iterable[bytes]) -> Iterator[bytes]:
    for block in blocks:
        yield f"{len(block):x}\r\n".encode() + block + b"\r\n"
    yield b"0\r\n\r\n"


def _raw_post(port: int, headers: dict[str, str], body: Iterable[bytes]) -> tuple[int, float]:
    """Send a request the way a hostile client would: headers, then body for as long as the
    server lets it, while reading the answer. Returns (status, seconds to the status line)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = "POST /slack/events HTTP/1.1\r\nHost: latchkey\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    started = time.monotonic()

    def send() -> None:
        try:
            sock.sendall(head.encode())
            for part in body:
                sock.sendall(part)
        except OSError:
            pass  # the server closed the connection: it would not take the rest

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = b""
    try:
        while b"\r\n" not in answer:
            part = sock.recv(4096)
            if not part:
                break
            answer += part
    finally:
        elapsed = time.monotonic() - started
        with_status = answer.split(b" ")
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        sender.join(5)
    return (int(with_status[1]) if answer.startswith(b"HTTP/") else 0), elapsed


@pytest.mark.parametrize("shape", ["unsigned, declared length", "signed headers, chunked"])
def test_a_50_mib_body_is_refused_in_time_without_reading_or_logging_it(
    stack: LocalStack, shape: str
) -> None:
    before = _log_size(stack)
    if shape == "unsigned, declared length":
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(BIG)}
        status, elapsed = _raw_post(stack.port, headers, _blocks(BIG))
        assert status in (401, 413)
    else:
        # Passes the header checks (a fresh timestamp, some signature), so the edge has to
        # read the body, and stops one byte past the limit.
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Transfer-Encoding": "chunked",
            "X-Slack-Request-Timestamp": str(int(time.time())),
            "X-Slack-Signature": "v0=" + "0" * 64,
        }
        status, elapsed = _raw_post(stack.port, headers, _chunked(_blocks(BIG)))
        assert status == 413
    assert elapsed < 2.0, f"refused after {elapsed:.2f}s"
    grown = _log_size(stack) - before
    assert grown < 10 * 1024, _log_after(stack, before)
    assert "aaaaaaaa" not in _log_after(stack, before)


def test_a_signed_body_over_the_limit_is_413(stack: LocalStack) -> None:
    person = new_person(stack, iam_user=False)
    opened = len(stack.slack.calls("views.open"))
    body = urlencode({"command": "/access", "user_id": person.user_id, "text": "x" * LIMIT})
    response = stack.driver.post(body)
    assert response.status == 413
    assert json.loads(response.body) == {"error": f"body over {LIMIT} bytes"}
    time.sleep(0.3)  # a handler that (wrongly) ran would have called Slack by now
    assert len(stack.slack.calls("views.open")) == opened


def test_a_forged_log_line_never_appears(stack: LocalStack) -> None:
    person = new_person(stack, iam_user=False)
    before = _log_size(stack)
    # Raw CR/LF, as an attacker sends them (a form would carry them as %0D%0A).
    raw_form = f"command=/access&user_id={person.user_id}&text=hello{FORGED}"
    raw_json = '{"type": "event_callback", "text": "hello' + FORGED + '"}'
    for unsigned in (raw_form, raw_json):
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        assert stack.driver.send_raw(unsigned, headers).status == 401
        assert stack.driver.post(unsigned, secret="not-the-secret").status == 401
        stale = int(time.time()) - 10 * 60
        assert stack.driver.post(unsigned, timestamp=stale).status == 401
    # Signed: the text reaches the listeners, which refuse it and log the refusal.
    assert stack.driver.slash_command(person.user_id, f"revoke {FORGED} because").status == 200
    assert stack.driver.slash_command(person.user_id, FORGED).status == 200
    logged = _log_after(stack, before, settle=1.0)
    assert not FORGED_LINE.search(logged), logged
    assert "principal=ceo@example.com" not in "\n".join(
        line for line in logged.splitlines() if line.startswith("2026-01-01")
    )


def test_a_malformed_signed_payload_is_400_without_a_traceback(stack: LocalStack) -> None:
    before = _log_size(stack)
    for body in ("payload=notjson", "payload=%5B1%2C2%5D", '{"type": "event_callback",'):
        response = stack.driver.post(body)
        assert response.status == 400, (body, response)
        assert set(json.loads(response.body)) == {"error"}
    logged = _log_after(stack, before)
    assert "Traceback" not in logged and "notjson" not in logged
    assert len(logged.splitlines()) <= 3, logged


@pytest.mark.parametrize("case", ["stale", "wrong secret", "unsigned"])
def test_a_refused_request_leaves_no_response_url_in_the_log(stack: LocalStack, case: str) -> None:
    person = new_person(stack, iam_user=False)
    form = urlencode({"command": "/access", "user_id": person.user_id, "response_url": HOOK})
    payload = json.dumps({"type": "block_actions", "response_url": HOOK}).replace("/", "\\/")
    before = _log_size(stack)
    for body in (form, urlencode({"payload": payload}), payload):
        if case == "stale":
            response = stack.driver.post(body, timestamp=int(time.time()) - 6 * 60)
        elif case == "wrong secret":
            response = stack.driver.post(body, secret="not-the-signing-secret")
        else:
            response = stack.driver.send_raw(body, {"Content-Type": "text/plain"})
        assert response.status == 401
    logged = _log_after(stack, before)
    for encoded in (HOOK, quote(HOOK, safe=""), HOOK.replace("/", "\\/")):
        assert encoded not in logged
    assert "fakeResponseSecret" not in logged and "hooks.slack.com" not in logged
    # One bounded line per refusal, naming what was refused and why.
    refusals = [line for line in logged.splitlines() if "refused POST /slack/events" in line]
    assert len(refusals) == 3 and all(len(line) < 300 for line in refusals), logged


def test_signed_requests_are_still_served(stack: LocalStack) -> None:
    person = new_person(stack, iam_user=False)
    response = stack.driver.slash_command(person.user_id)
    assert response.status == 200
    trigger = stack.driver.last_trigger_id
    stack.slack.wait_for("views.open", lambda a: a.get("trigger_id") == trigger)
    body = urlencode({"command": "/access", "user_id": person.user_id})
    headers = sign(body, SIGNING_SECRET)
    assert stack.driver.send_raw(body.replace("access", "accesz"), headers).status == 401
