"""The one GET both on-call clients make: JSON over HTTPS with their key, a few retries
after a 429, no redirects (app.outbound), and every failure an `OnCallError` that names
the service and the call."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from email.message import Message
from typing import Any

from app.oncall.errors import OnCallError, http_problem, transport_problem
from app.outbound import NO_REDIRECTS

RETRIES = 3  # after a 429


def checked_base_url(service: str, base_url: str) -> str:
    if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
        raise OnCallError(f"{service}: base URL {base_url!r} is not http(s)")
    return base_url.rstrip("/")


def get_json(
    service: str,
    base_url: str,
    path: str,
    query: list[tuple[str, str]],
    *,
    headers: Mapping[str, str],
    timeout: float,
    api_message: Callable[[bytes], str | None],
    wait_after_429: Callable[[Message], float],
) -> dict[str, Any]:
    """The JSON object at `path`; on a 429 wait as long as `wait_after_429` says, given
    the answer's headers, and try again, RETRIES times."""
    call = f"{service} GET {path}"
    url = f"{base_url}{path}?{urllib.parse.urlencode(query)}"
    for attempt in range(RETRIES + 1):
        request = urllib.request.Request(url, headers=dict(headers))  # noqa: S310 - http(s) checked
        try:
            with NO_REDIRECTS.open(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            try:
                body = exc.read()
            except (OSError, http.client.HTTPException):
                body = b""
            finally:
                exc.close()
            if exc.code == 429 and attempt < RETRIES:
                time.sleep(wait_after_429(exc.headers))
                continue
            problem = http_problem(exc.code, api_message(body), attempt)
            raise OnCallError(f"{call}: {problem}") from None
        except (OSError, http.client.HTTPException) as exc:
            problem = transport_problem(exc, base_url, timeout)
            raise OnCallError(f"{call}: {problem}") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise OnCallError(f"{call}: the answer is not a JSON object")
        return answer
    raise AssertionError("unreachable: the last attempt returns or raises")


class ApiClient:
    """A read-only JSON API client: its service's name, base URL, headers (the key) and
    timeout; subclasses say how the service words an error and how long a 429 means."""

    service = "the service"

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout: float) -> None:
        self.base_url = checked_base_url(self.service, base_url)
        self.timeout = timeout
        self._headers = dict(headers)

    @staticmethod
    def api_message(body: bytes) -> str | None:
        return None

    @staticmethod
    def wait_after_429(headers: Message) -> float:
        return 1.0

    def _get(self, path: str, query: list[tuple[str, str]]) -> dict[str, Any]:
        return get_json(
            self.service,
            self.base_url,
            path,
            query,
            headers=self._headers,
            timeout=self.timeout,
            api_message=self.api_message,
            wait_after_429=self.wait_after_429,
        )
