"""Access someone held before Latchkey granted it: reported at the grant, left at the end.

An identity-provider group (Google, Entra ID, Okta) may already count the requester as a
member, by hand or through another tool. Latchkey then grants nothing there, and must not
take that membership away when its grant ends. The provider says so in its answer to the
grant (`already_member`), which the keyed `granted` event keeps; the end reads it from that
event, never from the grant row: a database edit cannot turn a membership Latchkey made
into one that outlives its grant (an event that does not verify counts as Latchkey's).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from app.audit import AuditLog
from app.models import Grant
from app.queries import events_of, live_grants

KEY = "already_member"


def held_before(session: Session, audit: AuditLog, grant: Grant) -> bool:
    """Did the keyed `granted` event of this grant find the access already there?

    The row is asked first, so the grants of every other provider (and most of these) cost
    no query: a row edited to drop the flag only makes the end remove the membership, the
    safe way round; one edited to add it is checked against the keyed event.
    """
    if grant.details.get(KEY) is not True:
        return False
    return any(
        e.details.get(KEY) is True and audit.authentic(e)
        for e in events_of(session, grant.request_id, ("granted",))
    )


def settle(
    session: Session,
    audit: AuditLog,
    *,
    provider: str,
    resource: str,
    principal: str,
    details: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """The provider's answer to a grant, its `already_member` kept only when no live grant
    of Latchkey's made that membership: a second, overlapping request of someone Latchkey
    added is Latchkey's too, and is taken away when the last of them ends."""
    if details.get(KEY) is not True:
        return details
    ours = [
        g
        for g in live_grants(session, provider, resource, principal, now)
        if not held_before(session, audit, g)
    ]
    if not ours:
        return details
    return {**details, KEY: False, "member_through": [str(g.request_id) for g in ours]}
