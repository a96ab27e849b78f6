"""What the web's own pages (passkeys, identity links) share: the HTML frame, JSON answers
and the headers every answer carries — no-store, no-referrer (tokens travel in paths),
framed by nobody, and a Content-Security-Policy allowing only our one script."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
HEADERS = [
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
]
STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem}"
    "dt{font-weight:600}dd{margin:0 0 .6rem}button{font-size:1rem;padding:.6rem 1.2rem}"
    ".ok{color:#116b2e}.refused{color:#a4161a}"
)


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def page(start_response: StartResponse, status: str, title: str, body: str) -> Iterable[bytes]:
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · Latchkey</title><style>{STYLE}</style>"
        '<script src="/passkey/page.js" defer></script></head>'
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return answer(start_response, status, "text/html; charset=utf-8", document.encode())


def json_answer(
    start_response: StartResponse, status: str, ok: bool, message: str
) -> Iterable[bytes]:
    payload = json.dumps({"ok": ok, "message": message}).encode()
    return answer(start_response, status, "application/json", payload)


def answer(
    start_response: StartResponse, status: str, content_type: str, payload: bytes
) -> Iterable[bytes]:
    start_response(
        status,
        [("Content-Type", content_type), ("Content-Length", str(len(payload))), *HEADERS],
    )
    return [payload]
