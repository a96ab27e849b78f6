"""Service clients: non-human requesters (a CI pipeline asking for a migration window).

A client asks over the web's API (app.api) with a bearer token an admin made with
`latchkey clients create`, scoped to named flows; approval stays in Slack. On a request its
requester id is `svc:<name>`, never a Slack user id, so everything that would ask Slack about
the requester, DM them or show them as `<@…>` asks here first (`is_client`).

This module is pure (no DB, no Slack), so Block Kit builders can use it.
"""

from __future__ import annotations

import re

PREFIX = "svc:"
# Short enough that `svc:<name>` fits AccessRequest.requester_id (32) and an audit actor.
NAME = re.compile(r"[a-z][a-z0-9-]{1,27}")
NAME_RULE = "2-28 characters: a lowercase letter, then lowercase letters, digits and -"


def is_client(requester_id: str | None) -> bool:
    """Whether this requester is a service client rather than a Slack user."""
    return bool(requester_id) and str(requester_id).startswith(PREFIX)


def requester_id_of(name: str) -> str:
    return f"{PREFIX}{name}"


def client_name(requester_id: str) -> str:
    """The client's name in `svc:<name>` (the id itself for anything else)."""
    return requester_id[len(PREFIX) :] if is_client(requester_id) else requester_id


def name_problem(name: str) -> str | None:
    """Why this is not a service client's name (None: it is one)."""
    return None if NAME.fullmatch(name) else f"{name!r} is not a client name: {NAME_RULE}"


def mention(requester_id: str) -> str:
    """How Slack text names a requester: `<@U…>` for a person, and for a service client
    its name in words (never `<@svc:…>`, which Slack would show as a broken mention)."""
    if is_client(requester_id):
        return f"service client *{client_name(requester_id)}*"
    return f"<@{requester_id}>"


def possessive(requester_id: str) -> str:
    """`<@U…>'s`, or `service client *ci*'s`."""
    return f"{mention(requester_id)}'s"
