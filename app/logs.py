"""Logging: one line per event, with secrets kept out and user text unable to forge lines."""

from __future__ import annotations

import logging
import re

# Separators and escapes a response_url may come in: plain, URL-encoded (once or twice),
# JSON-escaped (`\/`, Slack's own style), JSON-escaped then URL-encoded, or `\u002f`.
_SLASH = r"(?:/|\\\\?/|%2F|%252F|%5C%2F|\\u002[fF])"
_COLON = r"(?::|%3A|%253A)"

# Slack tokens, response URLs and anything that looks like an AWS secret never reach logs.
_SECRET_PATTERNS = [
    re.compile(r"xox[abposr]-[A-Za-z0-9-]+"),
    re.compile(r"xapp-[A-Za-z0-9-]+"),
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


class SafeFormatter(logging.Formatter):
    """Formats every record on one line: message and args redacted and control characters
    escaped, whoever logged them; a traceback follows on marked continuation lines."""

    def format(self, record: logging.LogRecord) -> str:
        safe = logging.makeLogRecord(record.__dict__)
        safe.msg, safe.args = one_line(redact(record.getMessage())), None
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


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter())
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
