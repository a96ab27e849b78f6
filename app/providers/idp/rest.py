"""JSON over HTTPS for the identity-provider group APIs (Graph, Okta): a timeout on every
call, no redirects (a redirect would carry our token wherever it points), a throttled
call waited out and tried again, and every failure a ProviderError naming the call.

Throttling is retried here a few times, each wait capped, so a burst of grants rides out a
short rate limit without failing; a longer one is a transient ProviderError, which the
grant task retries with backoff (a throttled grant is never failed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from app.providers.base import ProviderError

TIMEOUT = 15.0
RETRIES = 3  # after a 429 (or a 503 that says when to come back)
MAX_WAIT = 10.0  # seconds; longer waits go back to the task's own backoff
Headers = Mapping[str, str]


class Answer:
    """A response, read once: its status, headers and JSON body (None when not JSON)."""

    def __init__(self, response: requests.Response) -> None:
        self.status = response.status_code
        self.headers = response.headers
        self.links = response.links
        try:
            self.body: Any = response.json() if response.content else None
        except ValueError:
            self.body = None


class RestApi:
    """One service's base URL, how it authenticates, how it words errors and throttling."""

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        auth: Callable[[], Headers],
        wait_after: Callable[[Answer], float | None],
        error_text: Callable[[Answer], str],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.service, self.base_url = service, base_url.rstrip("/")
        self._auth, self._wait_after, self._error_text = auth, wait_after, error_text
        self._sleep = sleep
        self._session = requests.Session()
        # Proxies and CA bundles from the environment still apply; .netrc credentials
        # must never be sent to an identity provider, so the session's auth stays None.
        self._session.auth = None

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
        accept: tuple[int, ...] = (),
    ) -> Answer:
        """The answer to `method path` (a full URL for a next page); statuses in `ok` and
        `accept` return, anything else raises ProviderError (transient for 429/5xx and
        network failures)."""
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
        what = f"{self.service} {method} {path.split('?')[0]}"
        for attempt in range(RETRIES + 1):
            try:
                response = self._session.request(
                    method,
                    url,
                    json=json,
                    params=params,
                    headers=dict(self._auth()),
                    timeout=TIMEOUT,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                raise ProviderError(
                    f"{what}: {type(exc).__name__}: {exc}", transient=True
                ) from None
            answer = Answer(response)
            if answer.status in ok or answer.status in accept:
                return answer
            wait = self._wait_after(answer) if answer.status in (429, 503) else None
            if wait is not None and attempt < RETRIES and wait <= MAX_WAIT:
                self._sleep(max(wait, 0.0))
                continue
            transient = answer.status in (408, 429) or answer.status >= 500
            raise ProviderError(
                f"{what}: HTTP {answer.status}: {self._error_text(answer)}", transient=transient
            )
        raise AssertionError("unreachable: the last attempt returns or raises")

    def pages(self, path: str, next_of: Callable[[Answer], str | None], **params: str) -> list[Any]:
        """Every item of a paged list: `next_of` reads the next page's URL from an answer."""
        items: list[Any] = []
        answer = self.call("GET", path, params=params or None)
        while True:
            body = answer.body
            items.extend(body.get("value", []) if isinstance(body, dict) else body or [])
            following = next_of(answer)
            if not following:
                return items
            if not following.startswith(f"{self.base_url}/"):
                # Our token goes only to the service it is for.
                raise ProviderError(
                    f"{self.service}: a next page outside {self.base_url}: {following[:200]}",
                    transient=False,
                )
            answer = self.call("GET", following)


def known_user(lookup: Callable[[str], str], principal: str) -> str | None:
    """The provider's id for `principal`; None when the provider has no such user (for a
    revoke, access already absent). Transient failures raise."""
    try:
        return lookup(principal)
    except ProviderError as exc:
        if exc.transient:
            raise
        return None
