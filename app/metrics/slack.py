"""Counting Slack Web API errors and 429s by method, from inside the SDK's retry loop."""

from __future__ import annotations

from typing import Any

from slack_sdk.http_retry.handler import RetryHandler

from app.metrics import process


def api_method(url: str) -> str:
    """`chat.postMessage` from `https://slack.com/api/chat.postMessage?…`."""
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "unknown"


class SlackErrorCounter(RetryHandler):
    """Sees every answer (the SDK asks each retry handler in turn) and never retries: put
    it first. Counts 429s in latchkey_slack_rate_limited_total, and `ok: false`, 5xx and
    connection errors in latchkey_slack_api_errors_total; a retried call counts each try."""

    def __init__(self) -> None:
        super().__init__(max_retry_count=1 << 30)

    def _can_retry(
        self, *, state: Any, request: Any, response: Any = None, error: Any = None
    ) -> bool:
        method = api_method(request.url)
        if response is None:
            process.slack_error(method, "connection" if error is not None else "unknown")
        elif response.status_code == 429:
            process.slack_rate_limited(method)
        elif response.status_code >= 500:
            process.slack_error(method, f"http_{response.status_code}")
        elif isinstance(response.body, dict) and response.body.get("ok") is False:
            process.slack_error(method, str(response.body.get("error") or "unknown")[:64])
        return False
