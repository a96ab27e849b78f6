"""Single-use, short-lived links to the web's pages, each made for one Slack user: set up
a passkey, confirm an approval with it (app.passkeys), link an identity (app.identity_links).

The token travels only in the link (to the person's Slack, ephemeral or DM); the DB keeps
its SHA-256. A link is refused once used, once expired, or for another purpose than its
own; "for anyone but the person it was made for" is enforced by what the page asks: a
passkey of that person (app.passkeys.ceremony)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlmodel import Session

from app.db import utcnow
from app.models import WebLink
from app.runtime import Runtime

SETUP = "passkey_setup"
APPROVAL = "passkey_approval"
BREAK_GLASS = "passkey_break_glass"
IDENTITY = "identity_link"
# How long a dead link's row is kept (for someone asking why their link failed).
KEEP_EXPIRED = timedelta(days=1)


class LinkRefused(Exception):
    """Why a link cannot be used, in words for the page."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def make_link(
    session: Session,
    *,
    purpose: str,
    user_id: str,
    lifetime: timedelta,
    request_id: uuid.UUID | None = None,
    duration_seconds: int | None = None,
) -> str:
    """A new link's token (the URL's last part); the row is added to the caller's session.
    Links that expired a day ago are cleared on the way: nothing reads them any more."""
    session.execute(delete(WebLink).where(WebLink.expires_at < utcnow() - KEEP_EXPIRED))  # type: ignore[arg-type]
    token = secrets.token_urlsafe(32)
    session.add(
        WebLink(
            token_hash=token_hash(token),
            purpose=purpose,
            user_id=user_id,
            request_id=request_id,
            duration_seconds=duration_seconds,
            expires_at=utcnow() + lifetime,
        )
    )
    return token


def new_link_url(
    rt: Runtime,
    *,
    purpose: str,
    path: str,
    user_id: str,
    request_id: uuid.UUID | None = None,
    duration_seconds: int | None = None,
) -> str:
    """A fresh link's full URL: LATCHKEY_PUBLIC_URL, the page's path, the token."""
    with rt.db.session() as session:
        token = make_link(
            session,
            purpose=purpose,
            user_id=user_id,
            lifetime=timedelta(seconds=rt.settings.link_seconds),
            request_id=request_id,
            duration_seconds=duration_seconds,
        )
    return f"{rt.settings.public_url}/{path}/{token}"


def open_link(session: Session, token: str, purpose: str) -> WebLink:
    """The live link of this token and purpose, or LinkRefused saying why not."""
    link = session.execute(
        select(WebLink).where(WebLink.token_hash == token_hash(token))  # type: ignore[arg-type]
    ).scalar_one_or_none()
    if link is None or link.purpose != purpose:
        raise LinkRefused("This link is not valid. Ask Slack for a new one.")
    return _live(link)


def open_login(session: Session, state: str) -> WebLink:
    """The live identity link whose login was started with this state (app.identity_links)."""
    link = session.execute(
        select(WebLink).where(WebLink.purpose == IDENTITY, WebLink.challenge == state)  # type: ignore[arg-type]
    ).scalar_one_or_none()
    if link is None:
        raise LinkRefused(
            "This sign-in was not started from a Latchkey link. Start again from Slack."
        )
    return _live(link)


def _live(link: WebLink) -> WebLink:
    if link.used_at is not None:
        raise LinkRefused("This link was already used: each link works once.")
    if link.expires_at <= utcnow():
        raise LinkRefused("This link has expired. Ask Slack for a new one.")
    return link


def use_link(session: Session, link: WebLink) -> None:
    """Spend the link, compare-and-set: of two uses at once (a replayed POST), one wins."""
    spent = session.execute(
        update(WebLink)
        .where(WebLink.id == link.id, WebLink.used_at.is_(None))  # type: ignore[arg-type,union-attr]
        .values(used_at=utcnow())
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        raise LinkRefused("This link was already used: each link works once.")
