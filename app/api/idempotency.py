"""Idempotency-Key on POST /api/requests: a pipeline whose POST timed out sends it again
with the same key and gets the request it already made, so approvers never see two cards
for one deploy. Keys are the client's own; the same key with another request is refused
(422), as it means a bug in the pipeline rather than a retry."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from sqlmodel import Session

from app.flows.policy import RequestInput
from app.models import AccessRequest, ApiRequestKey

# Printable ASCII, as HTTP header values are; a UUID or a CI job id fits.
_KEY = re.compile(r"[\x21-\x7e]{1,100}")


class KeyReused(Exception):
    """The key was used for a different request; the message says how it differs."""


def key_problem(value: str | None) -> str | None:
    if value is None or _KEY.fullmatch(value):
        return None
    return "Idempotency-Key must be 1-100 printable ASCII characters without spaces"


def earlier(session: Session, client: str, key: str, ask: RequestInput) -> AccessRequest | None:
    """The request this client made with this key, when it made one; KeyReused when that
    request was another."""
    row = session.get(ApiRequestKey, (client, key))
    if row is None:
        return None
    request = session.get(AccessRequest, row.request_id)
    if request is None:
        return None
    asked = (request.flow, request.target, timedelta(seconds=request.requested_seconds))
    if asked != (ask.flow, ask.target, ask.duration) or request.reason != ask.reason.strip():
        raise KeyReused(
            f"Idempotency-Key {key!r} was used for another request ({request.id}: "
            f"{request.flow}/{request.target}); use a new key for a new request"
        )
    return request


def remember(session: Session, client: str, key: str, request_id: uuid.UUID) -> None:
    session.add(ApiRequestKey(client=client, key=key, request_id=request_id))
    session.flush()  # a second POST of the same key fails here, inside its transaction
