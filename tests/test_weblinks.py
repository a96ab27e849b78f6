"""Single-use links (app/weblinks.py): refused once used, once expired, or for another
purpose; spent once even by two uses at once; dead ones cleared a day later."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app import weblinks
from app.db import Database, utcnow
from app.models import WebLink


def _make(database: Database, lifetime: timedelta = timedelta(minutes=5)) -> str:
    with database.session() as session:
        return weblinks.make_link(
            session, purpose=weblinks.SETUP, user_id="U0LINK1", lifetime=lifetime
        )


def _open(database: Database, token: str, purpose: str = weblinks.SETUP) -> WebLink:
    with database.session() as session:
        return weblinks.open_link(session, token, purpose)


def test_a_link_works_once_for_its_purpose_until_it_expires(database: Database) -> None:
    token = _make(database)
    assert _open(database, token).user_id == "U0LINK1"
    with pytest.raises(weblinks.LinkRefused, match="not valid"):
        _open(database, token, weblinks.APPROVAL)
    with pytest.raises(weblinks.LinkRefused, match="not valid"):
        _open(database, token + "x")
    with database.session() as session:
        link = weblinks.open_link(session, token, weblinks.SETUP)
        weblinks.use_link(session, link)
        with pytest.raises(weblinks.LinkRefused, match="already used"):
            weblinks.use_link(session, link)  # a second use of the same row, at once
    with pytest.raises(weblinks.LinkRefused, match="already used"):
        _open(database, token)
    expired = _make(database, lifetime=timedelta(seconds=-1))
    with pytest.raises(weblinks.LinkRefused, match="expired"):
        _open(database, expired)


def test_only_a_hash_of_the_token_is_kept_and_dead_links_are_cleared(database: Database) -> None:
    token = _make(database)
    with database.session() as session:
        stored = session.execute(select(WebLink.token_hash)).scalars().all()
    assert token not in stored and weblinks.token_hash(token) in stored
    with database.session() as session:
        session.execute(update(WebLink).values(expires_at=utcnow() - timedelta(days=2)))
    _make(database)  # making the next link clears the dead one
    with database.session() as session:
        assert session.execute(select(func.count()).select_from(WebLink)).scalar_one() == 1
