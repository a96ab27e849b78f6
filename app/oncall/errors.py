"""The one error the on-call clients raise, and how they word what went wrong."""

from __future__ import annotations

import urllib.error
from http import HTTPStatus


class OnCallError(RuntimeError):
    """PagerDuty or Opsgenie could not answer: the message names the service, the call and
    the problem (e.g. "PagerDuty GET /oncalls: 401 Unauthorized: Invalid Token"), so the
    audit trail says why Latchkey fell back to human approval. It never holds a token."""


def http_problem(code: int, api_message: str | None, retries: int = 0) -> str:
    """An error answer in a few words: "401 Unauthorized: Invalid Token"."""
    try:
        text = f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        text = str(code)
    if 300 <= code < 400:
        text += " (redirects are not followed)"
    if api_message:
        text += f": {api_message}"
    if code == 429 and retries:
        text += f" (still limited after {retries} retries)"
    return text


def transport_problem(exc: BaseException, base_url: str, timeout: float) -> str:
    """Why no answer came at all: a timeout, a refused connection, a broken one."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect to {base_url}: {reason}"
    return f"connection failed: {type(exc).__name__}: {exc}"
