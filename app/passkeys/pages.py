"""The web's passkey pages: small, server-rendered, one script (page.js), no framework.

    GET  /passkey/setup/<token>             set up a passkey (from App Home's button)
    GET  /passkey/approve/<token>           confirm one approval: who, what, how long, why
    POST /passkey/<kind>/<token>/options    WebAuthn options (the challenge kept on the link)
    POST /passkey/<kind>/<token>/verify     the browser's answer; spends the link
    GET  /passkey/page.js

Every answer is no-store, no-referrer (the token is in the path) and framed by nobody; a
POST must come from LATCHKEY_PUBLIC_URL's own origin."""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Iterable
from datetime import timedelta
from importlib import resources
from typing import Any

from app import weblinks as links
from app.flows.schema import format_duration
from app.models import AccessRequest, RequestStatus
from app.passkeys import ceremony
from app.passkeys.approval import confirm
from app.passkeys.credentials import passkeys_of, register
from app.runtime import Runtime
from app.webpage import StartResponse, answer, json_answer, page, paragraph

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024  # a WebAuthn answer is a few kB
_ROUTE = re.compile(
    r"^/passkey/(setup|approve|break-glass)/([A-Za-z0-9_-]{20,100})(/options|/verify)?$"
)
_KINDS = {"setup": links.SETUP, "approve": links.APPROVAL, "break-glass": links.BREAK_GLASS}
_SCRIPT = resources.files("app.passkeys").joinpath("page.js").read_bytes()


def handles(path: str) -> bool:
    return path.startswith("/passkey/")


def serve(rt: Runtime, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
    if path == "/passkey/page.js" and method == "GET":
        return answer(start_response, "200 OK", "text/javascript; charset=utf-8", _SCRIPT)
    match = _ROUTE.match(path)
    if match is None:
        return page(start_response, "404 Not Found", "Not found", "<p>No such page.</p>")
    kind, token, action = match.group(1), match.group(2), match.group(3)
    if action is None and method == "GET":
        return _show(rt, start_response, kind, token)
    if action is None or method != "POST":
        return json_answer(
            start_response, "405 Method Not Allowed", False, "Use the page's button."
        )
    if environ.get("HTTP_ORIGIN") != rt.settings.public_url:
        return json_answer(start_response, "403 Forbidden", False, "Not from Latchkey's own page.")
    body = _body(environ)
    if body is None:
        return json_answer(
            start_response, "413 Content Too Large", False, "That answer is too large."
        )
    try:
        if action == "/options":
            return answer(start_response, "200 OK", "application/json", _options(rt, kind, token))
        if kind == "setup":
            done, message = _register(rt, token, body)
            return _setup_answer(start_response, done, message)
        result = confirm(rt, token, body, _KINDS[kind])
        return json_answer(start_response, "200 OK", result.ok, result.message)
    except links.LinkRefused as refused:
        return json_answer(start_response, "410 Gone", False, str(refused))
    except ceremony.CeremonyFailed as failed:
        return json_answer(start_response, "400 Bad Request", False, str(failed))


def _show(rt: Runtime, start_response: StartResponse, kind: str, token: str) -> Iterable[bytes]:
    with rt.db.session() as session:
        try:
            link = links.open_link(session, token, _KINDS[kind])
        except links.LinkRefused as refused:
            return page(start_response, "410 Gone", "Link not valid", paragraph(str(refused)))
        name = _name(rt, link.user_id)
        if kind == "setup":
            count = len(passkeys_of(session, rt.audit, link.user_id))
            have = (
                f" You have {count} already: first confirm with one of them, then your "
                "device makes the new one."
                if count
                else ""
            )
            body = paragraph(
                f"Set up a passkey for {name}. Approvals that need one will ask for it, "
                f"so that a Slack session alone cannot approve.{have}"
            ) + _button("create", "Set up a passkey")
            return page(start_response, "200 OK", "Set up a passkey", body)
        request = session.get(AccessRequest, link.request_id)
        if request is None or request.status != RequestStatus.PENDING:
            state = request.status.value if request else "gone"
            return page(
                start_response,
                "409 Conflict",
                "Nothing to approve",
                paragraph(f"This request is {state}."),
            )
        # What this approval confirms: the approver's shorter choice, else what is asked.
        seconds = link.duration_seconds or int(request.duration.total_seconds())
        facts = [
            ("Requester", _name(rt, request.requester_id)),
            ("Flow", request.flow),
            ("Access to", request.target),
            ("For", format_duration(timedelta(seconds=seconds))),
            ("Reason", request.reason or "none given"),
            ("Request", str(request.id)),
        ]
    listing = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts)
    if kind == "break-glass":
        body = (
            paragraph(
                f"{name}, confirm with your passkey that you take this access now, without "
                "approval. The channel is alerted and an approver reviews it afterwards."
            )
            + f"<dl>{listing}</dl>"
            + _button("get", "Break glass with passkey")
        )
        return page(start_response, "200 OK", "Confirm break-glass", body)
    body = (
        paragraph(f"{name}, confirm that you approve this request with your passkey.")
        + f"<dl>{listing}</dl>"
        + _button("get", "Approve with passkey")
    )
    return page(start_response, "200 OK", "Confirm an approval", body)


def _options(rt: Runtime, kind: str, token: str) -> bytes:
    rp = ceremony.RelyingParty.of(rt.settings)
    with rt.db.session() as session:
        link = links.open_link(session, token, _KINDS[kind])
        have = passkeys_of(session, rt.audit, link.user_id)
        if kind == "setup" and ceremony.needs_step_up(link, have):
            options = ceremony.step_up_options(rp, link, have)
        elif kind == "setup":
            options = ceremony.registration_options(rp, link, _plain_name(rt, link.user_id), have)
        else:
            if not have:
                raise ceremony.CeremonyFailed("You have no passkey set up with Latchkey.")
            options = ceremony.approval_options(rp, link, have)
        session.add(link)
    return options.encode()


def _register(rt: Runtime, token: str, body: bytes) -> tuple[bool, str]:
    """One step of setting up a passkey: the proof with an existing one (the link stays
    open), or the new passkey itself (the link is spent, the person told by DM)."""
    rp = ceremony.RelyingParty.of(rt.settings)
    with rt.db.session() as session:
        link = links.open_link(session, token, links.SETUP)
        have = passkeys_of(session, rt.audit, link.user_id)
        if (link.challenge or "").startswith(ceremony.STEP_UP):
            ceremony.verify_step_up(rp, link, have, body)
            session.add(link)
            return False, "Confirmed it is you. Now your device makes the new passkey."
        if have and not (link.challenge or "").startswith(ceremony.REG_STEPPED):
            raise ceremony.CeremonyFailed("Confirm with one of your passkeys first: start again.")
        new = ceremony.verify_registration(rp, link, body)
        links.use_link(session, link)
        register(
            session,
            rt.audit,
            user_id=link.user_id,
            credential_id=new.credential_id,
            public_key=new.public_key,
            sign_count=new.sign_count,
        )
        user_id = link.user_id
    log.info("passkey registered for %s", user_id)
    _tell_added(rt, user_id)
    return True, "Your passkey is set up. Approvals that need one will ask for it."


def _tell_added(rt: Runtime, user_id: str) -> None:
    """Every new passkey is told to its owner in Slack: one added by someone else (with the
    owner's Slack session) does not go unseen."""
    try:
        rt.slack.chat_postMessage(
            channel=user_id,
            text=(
                ":key: A passkey was added to your Latchkey account just now. If that was not "
                "you, tell your security team: a Latchkey admin removes it with "
                "`latchkey passkey remove`."
            ),
        )
    except Exception:
        log.warning("could not tell %s about their new passkey", user_id)


def _setup_answer(start_response: StartResponse, done: bool, message: str) -> Iterable[bytes]:
    payload = json.dumps({"ok": True, "message": message, **({} if done else {"next": "create"})})
    return answer(start_response, "200 OK", "application/json", payload.encode())


def _name(rt: Runtime, user_id: str) -> str:
    return f"@{_plain_name(rt, user_id)}"


def _plain_name(rt: Runtime, user_id: str) -> str:
    try:
        return rt.directory.user(user_id).name or user_id
    except Exception:  # Slack unreachable: the id still names them
        return user_id


def _body(environ: dict[str, Any]) -> bytes | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length > MAX_BODY:
        return None
    return environ["wsgi.input"].read(length) if length else b""


def _button(kind: str, label: str) -> str:
    return (
        f'<p><button id="go" data-kind="{kind}">{html.escape(label)}</button></p>'
        '<p id="status" role="status" aria-live="polite"></p>'
    )
