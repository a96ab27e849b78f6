"""Show credentials: the holder of a live grant on a login-making target sees its login and
password in a modal; anyone else, or after the end, is refused (issue 18.2).

Every view is audited (`credentials_viewed`, with the login, never the password); every
refusal too (`show_credentials_refused`). The password is derived again for each view
(app/providers/databases/credentials.py): Latchkey keeps it nowhere.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack
from slack_sdk import WebClient

from app import lifecycle
from app.access import target_of
from app.db import utcnow
from app.models import RequestStatus
from app.providers.base import GrantSpec, ProviderError
from app.providers.databases import WITH_CREDENTIALS
from app.queries import grant_of
from app.runtime import Runtime
from app.slack import ids
from app.slack.blocks.credentials import credentials_modal
from app.slack.blocks.text import local_time
from app.slack.listeners.errors import guarded, refused
from app.slack.listeners.grants import holder_request
from app.slack.routes import Routes

log = logging.getLogger(__name__)
REFUSED = "show_credentials_refused"


def register(routes: Routes, rt: Runtime) -> None:
    @routes.action(ids.SHOW_CREDENTIALS_ACTION)
    @guarded
    def show_credentials(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        user_id = body["user"]["id"]
        request = holder_request(rt, body)  # anyone else is refused, and audited
        with rt.db.session() as session:
            grant = grant_of(session, request.id)
        now = utcnow()
        if (
            grant is None
            or request.status != RequestStatus.ACTIVE
            or grant.ended_at is not None
            or grant.expires_at <= now
        ):
            raise refused(
                rt,
                request,
                REFUSED,
                user_id,
                "not live",
                "This access has ended: its login is gone.",
            )
        target = target_of(rt, request.flow, request.target)
        if grant.provider not in WITH_CREDENTIALS or target is None:
            raise refused(
                rt, request, REFUSED, user_id, "no credentials", "This access has no login to show."
            )
        provider: Any = rt.providers.get(grant.provider)
        spec = GrantSpec(principal=grant.principal, target=target, expires_at=grant.expires_at)
        try:
            creds = provider.credentials(spec)
        except ProviderError as exc:
            raise refused(
                rt, request, REFUSED, user_id, str(exc), f"The database could not be reached: {exc}"
            ) from None
        if creds is None:
            raise refused(
                rt,
                request,
                REFUSED,
                user_id,
                "login missing",
                "Your login is not there now (reconciliation puts it back): try again in a minute.",
            )
        with rt.db.session() as session:
            lifecycle.record(
                session, rt.audit, request, "credentials_viewed", user_id, {"login": creds["login"]}
            )
        tz = rt.directory.user(user_id).tz
        client.views_open(
            trigger_id=body["trigger_id"],
            view=credentials_modal(request.target, local_time(grant.expires_at, tz, now), creds),
        )
        log.info("credentials shown request=%s login=%s", request.id, creds["login"])
