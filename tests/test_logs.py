"""The log formatter: one line per record whatever users type; no response_url, token or secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest

from app.logs import (
    ContextFilter,
    SafeFormatter,
    SafeJsonFormatter,
    bind,
    build_formatter,
    configure_logging,
    log_context,
    redact,
)

HOOK = "https://hooks.slack.com/commands/T0LATCHKEY/1234567890/fakeResponseSecret"
FORGED = "\r\n2026-01-01 00:00:00,000 INFO app.access granted admin principal=ceo@example.com"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("tests.logs")
    logger.handlers[:], logger.propagate, logger.level = [handler], False, logging.DEBUG
    yield logger, out
    logger.handlers[:], logger.propagate = [], True


@pytest.mark.parametrize(
    "encoded",
    [
        HOOK,
        quote(HOOK, safe=""),  # a form body: response_url=https%3A%2F%2Fhooks…
        quote(quote(HOOK, safe=""), safe=""),  # encoded twice
        json.dumps({"response_url": HOOK}).replace("/", "\\/"),  # Slack's JSON: https:\/\/…
        urlencode({"payload": json.dumps({"response_url": HOOK}).replace("/", "\\/")}),
        repr(json.dumps({"response_url": HOOK}).replace("/", "\\/")),  # \\/ inside a repr
        HOOK.replace("/", "\\u002f"),
        HOOK.upper().replace("HTTPS", "https"),
        "https://hooks.slack-gov.com/actions/T0/1/secret",
    ],
)
def test_response_urls_are_redacted_in_every_encoding(encoded: str) -> None:
    cleaned = redact(f"request body: command=/access&{encoded}&trigger_id=tr-1")
    assert "fakeResponseSecret".lower() not in cleaned.lower() and "secret" not in cleaned
    assert "[redacted]" in cleaned and cleaned.startswith("request body: command=/access&")


def test_tokens_and_secrets_are_redacted() -> None:
    cleaned = redact("token xoxb-123-abc app xapp-1-A-2 signing_secret=s3cr3t Authorization: Bx")
    assert "xoxb-123" not in cleaned and "xapp-1" not in cleaned
    assert "s3cr3t" not in cleaned and "Bx" not in cleaned


def test_user_text_cannot_start_a_new_line(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = captured
    logger.info("reason given: %s", f"deploy{FORGED}")
    logger.warning(f"message itself {FORGED}\x1b[2J\u2028\x85 end")
    logger.info("args as a dict: %(reason)s", {"reason": FORGED})
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert all(" tests.logs " in line for line in lines)
    assert not any(line.startswith("2026-01-01") for line in lines)
    assert "\\r\\n2026-01-01 00:00:00,000 INFO app.access granted" in lines[0]
    assert "\\x1b[2J\\u2028\\x85 end" in lines[1]


def test_a_traceback_quoting_user_text_stays_attached(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    try:
        raise ValueError(f"bad reason {FORGED} {HOOK}")
    except ValueError:
        logger.exception("listener failed for %s", "U0SAM")
    first, *rest = out.getvalue().splitlines()
    assert "listener failed for U0SAM" in first
    assert rest and all(line.startswith("  | ") for line in rest)
    assert "fakeResponseSecret" not in out.getvalue()


def test_configure_logging_keeps_bolt_and_the_sdk_quiet_when_debugging() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("DEBUG")
        for name in ("slack_bolt", "slack_sdk", "app.slack"):
            assert logging.getLogger(name).getEffectiveLevel() == logging.INFO, name
        assert isinstance(root.handlers[0].formatter, SafeFormatter)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name in ("slack_bolt", "slack_sdk", "app.slack"):
            logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.fixture
def json_captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(build_formatter("json"))
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("tests.logs.json")
    logger.handlers[:], logger.propagate, logger.level = [handler], False, logging.DEBUG
    yield logger, out
    logger.handlers[:], logger.propagate = [], True


def _records(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_parse_and_carry_the_context_fields(
    json_captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = json_captured
    logger.info("before any request")
    with log_context(request_id="req-1", user="U0SAM"):
        bind(flow="prod-admin")
        logger.info("interaction %s", "command /access", extra={"status": "200"})
        with log_context(task_id="task-9", request_id="acc-2"):
            logger.warning("in a task")
        logger.info("back in the request")
    logger.info("after it")
    before, during, task, back, after = _records(out)
    context = ("request_id", "user", "flow", "task_id")
    assert [before[k] for k in context] == [None, None, None, None]
    assert [during[k] for k in context] == ["req-1", "U0SAM", "prod-admin", None]
    assert during["message"] == "interaction command /access" and during["status"] == "200"
    assert (during["level"], during["logger"]) == ("INFO", "tests.logs.json")
    assert [task[k] for k in context] == ["acc-2", None, None, "task-9"]
    assert back == {**back, "request_id": "req-1", "user": "U0SAM", "flow": "prod-admin"}
    assert [after[k] for k in context] == [None, None, None, None]


def test_json_lines_stay_one_line_and_redacted_in_every_field(
    json_captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = json_captured
    with log_context(user=f"U0SAM{FORGED}"):
        logger.info("reason: %s", f"deploy{FORGED}\u2028 {HOOK}", extra={"body": {"url": HOOK}})
        try:
            raise ValueError(f"bad {HOOK} xoxb-123-abc")
        except ValueError:
            logger.exception("failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert "\\r\\n2026-01-01" in first["message"] and "\\u2028" in first["message"]
    assert first["body"] == {"url": "[redacted]"} and "\r" not in first["user"]
    assert "Traceback" in second["exc_info"] and "xoxb-123" not in second["exc_info"]
    assert "fakeResponseSecret" not in out.getvalue() and "hooks.slack" not in out.getvalue()


def test_text_lines_carry_the_context_fields_that_are_set(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    logger.handlers[0].addFilter(ContextFilter())
    with log_context(request_id="req-1", user="U0SAM", task_id="t-1"):
        logger.info("hello")
    logger.info("bye")
    hello, bye = out.getvalue().splitlines()
    assert hello.endswith(" hello request_id=req-1 user=U0SAM task_id=t-1")
    assert bye.endswith(" bye")


def test_configure_logging_picks_the_format() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", "json")
        assert isinstance(root.handlers[0].formatter, SafeJsonFormatter)
        assert any(isinstance(f, ContextFilter) for f in root.handlers[0].filters)
        configure_logging("INFO", "text")
        assert isinstance(root.handlers[0].formatter, SafeFormatter)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name in ("slack_bolt", "slack_sdk", "app.slack"):
            logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        ("command=%2Faccess&user_id=U0SAM&text=", "", ("command /access", "U0SAM", None)),
        (
            urlencode(
                {
                    "payload": json.dumps(
                        {
                            "type": "block_actions",
                            "user": {"id": "U0ANN"},
                            "actions": [{"action_id": "approve"}],
                        }
                    )
                }
            ),
            "application/x-www-form-urlencoded",
            ("block_actions approve", "U0ANN", None),
        ),
        (
            urlencode(
                {
                    "payload": json.dumps(
                        {
                            "type": "view_submission",
                            "user": {"id": "U0SAM"},
                            "view": {
                                "callback_id": "latchkey.request",
                                "state": {
                                    "values": {
                                        "flow": {
                                            "flow_select": {"selected_option": {"value": "prod"}}
                                        }
                                    }
                                },
                            },
                        }
                    )
                }
            ),
            "",
            ("view_submission latchkey.request", "U0SAM", "prod"),
        ),
        (
            json.dumps(
                {"type": "event_callback", "event": {"type": "app_home_opened", "user": "U0X"}}
            ),
            "application/json",
            ("event app_home_opened", "U0X", None),
        ),
        (
            json.dumps({"type": "url_verification"}),
            "application/json",
            ("url_verification", None, None),
        ),
    ],
)
def test_the_interaction_line_says_what_who_and_which_flow(
    body: str, content_type: str, expected: tuple[str, str | None, str | None]
) -> None:
    from slack_bolt.request.internals import parse_body

    from app.slack.edge import interaction

    # Parsed as the edge parses it: once, by Bolt's own parser.
    assert interaction(parse_body(body, content_type or None)) == expected
