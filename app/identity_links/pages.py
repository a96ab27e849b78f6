"""The web's identity-link routes.

    GET /identity/link/<token>   starts a login at the identity provider (a cookie binds it
                                 to this browser), for the Slack user the link was made for
    GET /identity/callback       the provider sends the browser back: code exchanged, ID
                                 token checked, the link stored (keyed), the page says who

A callback in another browser than the one that opened the link is refused: otherwise
someone could send their own sign-in link to a colleague and link the colleague's identity
to their own Slack user."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from app import weblinks
from app.identity_links import oidc
from app.identity_links.store import link
from app.runtime import Runtime
from app.webpage import HEADERS, StartResponse, page, paragraph

log = logging.getLogger(__name__)
COOKIE = "latchkey_login"
_START = re.compile(r"^/identity/link/([A-Za-z0-9_-]{20,100})$")


def handles(path: str) -> bool:
    return path.startswith("/identity/")


def serve(rt: Runtime, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
    if method != "GET":
        return page(
            start_response, "405 Method Not Allowed", "Not here", paragraph("Use the link.")
        )
    if rt.settings.oidc_problem:
        return page(
            start_response,
            "503 Service Unavailable",
            "Identity links are not set up",
            paragraph(f"Ask your Latchkey admin: {rt.settings.oidc_problem}."),
        )
    started = _START.match(path)
    if started:
        return _start(rt, start_response, started.group(1))
    if path == "/identity/callback":
        return _callback(rt, environ, start_response)
    return page(start_response, "404 Not Found", "Not found", paragraph("No such page."))


def _start(rt: Runtime, start_response: StartResponse, token: str) -> Iterable[bytes]:
    state = secrets.token_urlsafe(32)
    with rt.db.session() as session:
        try:
            found = weblinks.open_link(session, token, weblinks.IDENTITY)
        except weblinks.LinkRefused as refused:
            return page(start_response, "410 Gone", "Link not valid", paragraph(str(refused)))
        found.challenge = state  # the login this link started; checked at the callback
        session.add(found)
    try:
        target = oidc.authorize_url(rt.settings, state)
    except oidc.OidcFailed as failed:
        return page(
            start_response, "502 Bad Gateway", "Sign-in unavailable", paragraph(str(failed))
        )
    secure = "; Secure" if (rt.settings.public_url or "").startswith("https:") else ""
    cookie = (
        f"{COOKIE}={state}; Path=/identity; HttpOnly; SameSite=Lax"
        f"; Max-Age={int(rt.settings.link_seconds)}{secure}"
    )
    start_response(
        "302 Found",
        [("Location", target), ("Set-Cookie", cookie), ("Content-Length", "0"), *HEADERS],
    )
    return [b""]


def _callback(
    rt: Runtime, environ: dict[str, Any], start_response: StartResponse
) -> Iterable[bytes]:
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    state = query.get("state", "")
    if "error" in query:
        said = query.get("error_description") or query["error"]
        return page(
            start_response,
            "400 Bad Request",
            "Not linked",
            paragraph(f"The sign-in ended: {said}."),
        )
    cookies = SimpleCookie(environ.get("HTTP_COOKIE", ""))
    mine = cookies.get(COOKIE)
    with rt.db.session() as session:
        try:
            found = weblinks.open_login(session, state) if state else None
        except weblinks.LinkRefused as refused:
            return page(start_response, "410 Gone", "Not linked", paragraph(str(refused)))
        if found is None or mine is None or not secrets.compare_digest(mine.value, state):
            return page(
                start_response,
                "403 Forbidden",
                "Not linked",
                paragraph(
                    "This sign-in was started in another browser. Open the link from Slack "
                    "in this browser and sign in again."
                ),
            )
        user_id = found.user_id
        weblinks.use_link(session, found)  # spent whatever happens next: no second try
    try:
        who = oidc.finish_login(rt.settings, query.get("code", ""), state)
    except oidc.OidcFailed as failed:
        _audit_refusal(rt, user_id, str(failed))
        return page(start_response, "400 Bad Request", "Not linked", paragraph(str(failed)))
    with rt.db.session() as session:
        link(
            session,
            rt.audit,
            user_id=user_id,
            issuer=who.issuer,
            subject=who.subject,
            email=who.email,
        )
    log.info("identity linked for %s", user_id)
    body = paragraph(
        f"Your Slack account is now linked to {who.email} at {who.issuer}. Access from flows "
        "that require a verified identity goes to this identity, whatever your Slack "
        "profile says. You can unlink it from Latchkey's App Home."
    )
    return page(start_response, "200 OK", "Identity linked", f'<div class="ok">{body}</div>')


def _audit_refusal(rt: Runtime, user_id: str, why: str) -> None:
    with rt.db.session() as session:
        rt.audit.append(
            session,
            event="identity_link_refused",
            actor=user_id,
            subject=user_id,
            details={"reason": why[:500]},
        )
    # The provider's words are not ours: no line breaks into the log (DESIGN.md 9).
    log.info("identity link refused for %s: %s", user_id, " ".join(why[:200].split()))
