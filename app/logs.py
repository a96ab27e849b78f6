"""Logging: one line per event, with secrets kept out."""

from __future__ import annotations

import logging
import re

# Slack tokens, response URLs and anything that looks like an AWS secret never reach logs.
_SECRET_PATTERNS = [
    re.compile(r"xox[abposr]-[A-Za-z0-9-]+"),
    re.compile(r"xapp-[A-Za-z0-9-]+"),
    re.compile(r"https://hooks\.slack\.com/[^\s\"']+"),
    re.compile(r"(?i)(aws_secret_access_key|signing_secret|authorization)([\"'=:\s]+)[^\s\"',}]+"),
]


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(
            lambda m: (m.group(1) + m.group(2) + "[redacted]") if m.lastindex else "[redacted]",
            text,
        )
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # slack_sdk logs request bodies at DEBUG; keep them off even when we debug.
    logging.getLogger("slack_sdk").setLevel(max(logging.INFO, root.level))
