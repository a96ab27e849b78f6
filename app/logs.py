"""Logging: one line per event, with secrets kept out and user text unable to forge lines.

Two encodings (LATCHKEY_LOG_FORMAT): `text`, and `json` — one JSON object per line. Both
carry what the process is working for: the request id, the Slack user, the flow and, in
a Celery task, the task id. Those come from context variables that the web's edge
(per HTTP request) and the worker's task signals set, and a filter copies onto every
record (`log_context`, `bind`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

# Separators and escapes a response_url may come in: plain, URL-encoded (once or twice),
# JSON-escaped (`\/`, Slack's own style), JSON-escaped then URL-encoded, or `\u002f`.
_SLASH = r"(?:/|\\\\?/|%2F|%252F|%5C%2F|\\u002[fF])"
_COLON = r"(?::|%3A|%253A)"

# Slack and API tokens, response URLs and anything that looks like an AWS secret never reach logs.
_SECRET_PATTERNS = [
    re.compile(r"xox[abposr]-[A-Za-z0-9-]+"),
    re.compile(r"xapp-[A-Za-z0-9-]+"),
    # Service clients' API tokens (app.clients.tokens).
    re.compile(r"lkc_[A-Za-z0-9_-]{8,}"),
    re.compile(
        rf"(?i)https?{_COLON}{_SLASH}{_SLASH}hooks\.slack(?:-gov)?\.com{_SLASH}[^\s\"'&<>,;)}}\]]*"
    ),
    re.compile(r"(?i)(aws_secret_access_key|signing_secret|authorization)([\"'=:\s]+)[^\s\"',}]+"),
]

# C0 and C1 controls, DEL and the Unicode line and paragraph separators: anything a log
# viewer or a line splitter could take for the end of a line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(
            lambda m: (m.group(1) + m.group(2) + "[redacted]") if m.lastindex else "[redacted]",
            text,
        )
    return text


def one_line(text: str) -> str:
    """`text` with every control character shown as an escape (`\\n`, `\\r`, `\\x1b`…)."""
    return _CONTROL.sub(
        lambda m: (
            _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}")
            if ord(m.group()) < 0x100
            else f"\\u{ord(m.group()):04x}"
        ),
        text,
    )


def _continuation(text: str) -> str:
    """A traceback or stack, redacted, each of its lines marked as belonging to the record
    above, so no line of it (an exception message quoting user text included) can pass
    for a record of its own."""
    return "\n".join(f"  | {one_line(line)}" for line in redact(text).splitlines())


# What every record carries, when known (None otherwise): see the module docstring.
CONTEXT_FIELDS = ("request_id", "user", "flow", "task_id")
_CONTEXT: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"latchkey_log_{name}", default=None) for name in CONTEXT_FIELDS
}
_MAX_CONTEXT_CHARS = 100


def _clean(value: object) -> str | None:
    if value is None or value == "":
        return None
    return one_line(redact(str(value)))[:_MAX_CONTEXT_CHARS]


def bind(**values: object) -> None:
    """Set context fields (request_id, user, flow, task_id) for what this thread logs next."""
    for name, value in values.items():
        _CONTEXT[name].set(_clean(value))


def current_context() -> dict[str, str | None]:
    return {name: var.get() for name, var in _CONTEXT.items()}


@contextmanager
def log_context(**values: object) -> Iterator[None]:
    """Every field set to `values` (the others emptied) inside the block, restored after.

    A thread serves request after request: nothing of one may stick to the next.
    """
    tokens = [(var, var.set(_clean(values.get(name)))) for name, var in _CONTEXT.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Copies the context fields onto each record (a record's own `extra` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


def _context_suffix(record: logging.LogRecord) -> str:
    fields = ((name, getattr(record, name, None)) for name in CONTEXT_FIELDS)
    return "".join(f" {name}={_clean(value)}" for name, value in fields if value)


class SafeFormatter(logging.Formatter):
    """Formats every record on one line: message and args redacted and control characters
    escaped, whoever logged them; a traceback follows on marked continuation lines. The
    context fields that are set follow the message as `name=value`."""

    def format(self, record: logging.LogRecord) -> str:
        safe = logging.makeLogRecord(record.__dict__)
        message = one_line(redact(record.getMessage())) + _context_suffix(record)
        safe.msg, safe.args = message, None
        # exc_text may have been cached by another handler's formatter: rebuild it here.
        if safe.exc_info:
            safe.exc_text = None
        elif safe.exc_text:
            safe.exc_text = _continuation(safe.exc_text)
        return super().format(safe)

    def formatException(self, ei) -> str:  # type: ignore[no-untyped-def]
        return _continuation(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _continuation(stack_info)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def _redact_value(value: Any) -> Any:
    """A JSON field's value with every string in it redacted (escaping is json's job)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    return redact(str(value))


class SafeJsonFormatter(JsonFormatter):
    """One JSON object per record: `time` (ISO 8601, UTC), `level`, `logger`, `message`, the context fields
    (null when unknown), any `extra`, and `exc_info` as one string. Every string value is
    redacted; JSON's own escaping (ASCII only) keeps it on one line."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            defaults=dict.fromkeys(CONTEXT_FIELDS),
            timestamp="time",  # ISO 8601, UTC
            json_ensure_ascii=True,
        )

    def format(self, record: logging.LogRecord) -> str:
        safe = logging.makeLogRecord(record.__dict__)
        safe.msg, safe.args = one_line(redact(record.getMessage())), None
        if safe.exc_info:
            safe.exc_text = None  # may have been cached by another formatter: rebuilt here
        return super().format(safe)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        first = ("time", "level", "logger", "message", *CONTEXT_FIELDS)
        ordered = {key: log_data.get(key) for key in first}
        ordered.update(log_data)
        return {key: _redact_value(value) for key, value in ordered.items()}


def build_formatter(log_format: str = "text") -> logging.Formatter:
    if log_format == "json":
        return SafeJsonFormatter()
    return SafeFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(build_formatter(log_format))
    handler.addFilter(RedactingFilter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # slack_sdk logs request bodies at DEBUG, and Bolt logs request bodies and responses
    # at DEBUG (and an unverified body at INFO): keep them at INFO or above even when we
    # debug. Bolt copies app.slack's level into its own loggers when the app is built,
    # so this must run before create_app().
    quiet = max(logging.INFO, root.level)
    for name in ("slack_sdk", "slack_bolt", "app.slack"):
        logging.getLogger(name).setLevel(quiet)
