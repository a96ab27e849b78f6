"""Credentials of a live login-making grant (an ephemeral PostgreSQL login), shown only to
its holder while it is live: the Slack button (app.slack.listeners.credentials) and the
API (app.api) both ask here.

Every view is audited (`credentials_viewed`, with the login, never the password); the
callers audit their refusals. The password is derived again for each view
(app/providers/databases/credentials.py): Latchkey keeps it nowhere.
"""

from __future__ import annotations

from typing import Any

from app import lifecycle
from app.access import target_of
from app.db import utcnow
from app.models import AccessRequest, Grant, RequestStatus
from app.providers.base import GrantSpec, ProviderError
from app.queries import grant_of
from app.runtime import Runtime

# The audit event of a refused view.
REFUSED = "show_credentials_refused"


class NoCredentials(Exception):
    """Nothing to show: `reason` for the audit trail, `told` for the person or client."""

    def __init__(self, reason: str, told: str) -> None:
        super().__init__(told)
        self.reason, self.told = reason, told


def live_grant(rt: Runtime, request: AccessRequest) -> Grant | None:
    """The request's grant while it is live (active, not ended, not past its end)."""
    with rt.db.session() as session:
        grant = grant_of(session, request.id)
    if (
        grant is None
        or request.status != RequestStatus.ACTIVE
        or grant.ended_at is not None
        or grant.expires_at <= utcnow()
    ):
        return None
    return grant


def has_login(rt: Runtime, grant: Grant) -> bool:
    return rt.providers.shows_credentials(grant.provider)


def view_credentials(
    rt: Runtime, request: AccessRequest, viewer: str
) -> tuple[dict[str, str], Grant]:
    """The login, password and connection string of the holder's live grant, the view
    audited under `viewer`. The caller has checked that `viewer` holds this request.

    Raises NoCredentials when the access is not live, makes no login, or the database
    cannot show it now."""
    grant = live_grant(rt, request)
    if grant is None:
        raise NoCredentials("not live", "This access has ended: its login is gone.")
    target = target_of(rt, request.flow, request.target)
    if not has_login(rt, grant) or target is None:
        raise NoCredentials("no credentials", "This access has no login to show.")
    provider: Any = rt.providers.get(grant.provider)
    spec = GrantSpec(principal=grant.principal, target=target, expires_at=grant.expires_at)
    try:
        creds = provider.credentials(spec)
    except ProviderError as exc:
        raise NoCredentials(str(exc), f"The database could not be reached: {exc}") from None
    if creds is None:
        raise NoCredentials(
            "login missing",
            "Your login is not there now (reconciliation puts it back): try again in a minute.",
        )
    with rt.db.session() as session:
        lifecycle.record(
            session, rt.audit, request, "credentials_viewed", viewer, {"login": creds["login"]}
        )
    return creds, grant
