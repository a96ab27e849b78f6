"""Which email a flow's identity mapping starts from: the Slack profile's, or, for a flow
with `Identity(verified=True)`, the person's verified identity link's (None when they have
not linked, which app.identity refuses with the way to link)."""

from __future__ import annotations

from sqlmodel import Session

from app.flows.schema import Flow
from app.identity_links.store import linked
from app.runtime import Runtime


def email_for(
    rt: Runtime,
    flow: Flow,
    user_id: str,
    slack_email: str | None,
    session: Session | None = None,
) -> str | None:
    """`session`: the caller's, when it has one open (a second one would wait for the
    first's connection on SQLite)."""
    if not flow.identity.verified:
        return slack_email
    if session is not None:
        row = linked(session, rt.audit, user_id)
        return row.email if row is not None else None
    with rt.db.session() as own:
        row = linked(own, rt.audit, user_id)
        return row.email if row is not None else None
