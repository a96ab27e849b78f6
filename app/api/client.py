"""`latchkey request`: a pipeline asks for access and waits for people to decide in Slack.

    export LATCHKEY_CLIENT_TOKEN=lkc_…      (never a flag: flags show in `ps`)
    latchkey request --url https://latchkey.example.com --flow migrations \\
        --target prod-db --duration 30m --reason "deploy 1234: schema migration"

Submits the request, says on stderr that it waits, polls with backoff and, once the access
is live, prints the request as JSON on stdout (its end, principal and any credentials)
and exits 0. Any other outcome exits with its own code (EXIT below, docs/api.md). Only the
standard library, so it runs wherever Latchkey is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

TOKEN_ENV = "LATCHKEY_CLIENT_TOKEN"  # noqa: S105 - the variable's name
URL_ENV = "LATCHKEY_URL"

# Exit codes, one per outcome, so a pipeline can branch on them.
EXIT = {
    "active": 0,
    "usage": 2,  # bad arguments, or the API said the input is not valid (400)
    "refused": 3,  # the token or its scope (401, 403, 404)
    "denied": 4,
    "timed_out": 5,  # nobody decided within the flow's pending timeout
    "failed": 6,  # approved, but granting failed
    "ended": 7,  # cancelled, or ended before this command saw it live
    "timeout": 8,  # --timeout passed while waiting
    "unreachable": 9,  # Latchkey did not answer (or answered with a server error)
}
_ENDED = {"cancelled", "expired", "revoked", "revoking", "revoke_failed", "extended"}
# Polling: the first look soon (an approver may be quick), then less often.
FIRST_POLL, POLL_FACTOR, MAX_POLL = 1.0, 1.5, 15.0
# A POST that got no answer is sent again (same key) this many times in all: 1+2+4+8 s.
POST_TRIES = 5


class Unreachable(Exception):
    """No answer, or a server error: worth trying again until the timeout."""


def call(
    url: str,
    token: str,
    method: str = "GET",
    body: dict[str, Any] | None = None,
    key: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """One API call: (HTTP status, JSON body). `key`: the POST's Idempotency-Key."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) checked by main
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Idempotency-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        if error.code >= 500:
            raise Unreachable(f"Latchkey answered {error.code}") from None
        try:
            return error.code, json.loads(error.read() or b"{}")
        except ValueError:
            return error.code, {"error": f"HTTP {error.code}"}
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise Unreachable(str(getattr(error, "reason", error))) from None


def submit(
    url: str,
    token: str,
    ask: dict[str, Any],
    *,
    tries: int = POST_TRIES,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, dict[str, Any]]:
    """POST the request, again with the same Idempotency-Key while Latchkey does not answer
    (a lost answer must not become a second request, and a second card for approvers)."""
    key = uuid.uuid4().hex
    for attempt in range(tries):
        try:
            return call(url, token, "POST", ask, key=key)
        except Unreachable:
            if attempt == tries - 1:
                raise
            sleep(FIRST_POLL * 2**attempt)
    raise AssertionError("unreachable")  # the loop returns or raises


def wait_for_decision(
    poll: Callable[[], tuple[int, dict[str, Any]]],
    *,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[str, dict[str, Any]]:
    """Poll until the request is live or over, or `timeout` seconds pass: (outcome, body)."""
    deadline = clock() + timeout
    interval, body, unreachable = FIRST_POLL, {}, None
    while True:
        try:
            code, body = poll()
            unreachable = None
        except Unreachable as error:
            code, unreachable = 0, str(error)
        if code == 200:
            state = str(body.get("status"))
            if state == "active":
                return "active", body
            if state in ("denied", "timed_out", "failed"):
                return state, body
            if state in _ENDED:
                return "ended", body
        elif code:
            return "refused", body
        if clock() + interval > deadline:
            if unreachable:
                return "unreachable", {"error": unreachable}
            return "timeout", body
        sleep(interval)
        interval = min(interval * POLL_FACTOR, MAX_POLL)


def _message(outcome: str, body: dict[str, Any]) -> str:
    failure = f": {body['failure']}" if body.get("failure") else ""
    return {
        "denied": "denied in Slack",
        "timed_out": "nobody decided in time (timed out)",
        "failed": f"approved, but granting failed{failure}",
        "ended": f"the request ended before it was seen live ({body.get('status')})",
        "timeout": f"still {body.get('status', 'waiting')} when --timeout ran out",
        "unreachable": f"Latchkey did not answer: {body.get('error')}",
        "refused": f"refused: {body.get('error')}",
    }.get(outcome, outcome)


def run(args: argparse.Namespace, env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    token = env.get(TOKEN_ENV, "").strip()
    base = (args.url or env.get(URL_ENV, "")).rstrip("/")
    if not token:
        print(f"latchkey request: set {TOKEN_ENV} to the client's token", file=sys.stderr)
        return EXIT["usage"]
    if not base.startswith(("https://", "http://")):
        print(f"latchkey request: --url (or {URL_ENV}) must be http(s)://…", file=sys.stderr)
        return EXIT["usage"]
    ask: dict[str, Any] = {"flow": args.flow, "target": args.target, "reason": args.reason}
    if args.minutes is not None:
        ask["minutes"] = args.minutes
    else:
        ask["duration"] = args.duration
    try:
        code, body = submit(f"{base}/api/requests", token, ask)
    except Unreachable as error:
        print(f"latchkey request: Latchkey did not answer: {error}", file=sys.stderr)
        return EXIT["unreachable"]
    if code not in (200, 202):
        print(f"latchkey request: {body.get('error', f'HTTP {code}')}", file=sys.stderr)
        return EXIT["usage"] if code == 400 else EXIT["refused"]
    request_id = body["id"]
    print(f"request {request_id}: waiting for approval in Slack…", file=sys.stderr)
    outcome, body = wait_for_decision(
        lambda: call(f"{base}/api/requests/{request_id}", token), timeout=args.timeout
    )
    if outcome == "active":
        print(json.dumps(body, indent=2))
        return EXIT["active"]
    print(f"latchkey request: {request_id}: {_message(outcome, body)}", file=sys.stderr)
    return EXIT[outcome]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "request",
        help=f"ask for access as a service client ({TOKEN_ENV}) and wait for the decision",
    )
    parser.add_argument("--url", help=f"Latchkey's web address (default: ${URL_ENV})")
    parser.add_argument("--flow", required=True, help="the flow to request")
    parser.add_argument("--target", required=True, help="the flow's target")
    how_long = parser.add_mutually_exclusive_group(required=True)
    how_long.add_argument("--duration", help="one of the flow's durations: 30m, 1h, 45s…")
    how_long.add_argument("--minutes", type=int, help="the duration in minutes")
    parser.add_argument("--reason", required=True, help="why, as the approvers will read it")
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="seconds to wait for the access to be live (default: 3600)",
    )
    parser.set_defaults(fn=run)
