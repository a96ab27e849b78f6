"""Show credentials: the holder of a live grant on a login-making target sees its login and
password in a modal; anyone else, or after the end, is refused (issue 18.2).

Every view is audited (`credentials_viewed`, with the login, never the password); every
refusal too (`show_credentials_refused`). What is shown, and when, is app.logins's, which
the API's holders (service clients) share.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack
from slack_sdk import WebClient

from app.logins import REFUSED, NoCredentials, view_credentials
from app.runtime import Runtime
from app.slack import ids
from app.slack.blocks.credentials import credentials_modal
from app.slack.blocks.text import local_time
from app.slack.listeners.errors import guarded, refused
from app.slack.listeners.grants import holder_request
from app.slack.routes import Routes

log = logging.getLogger(__name__)


def register(routes: Routes, rt: Runtime) -> None:
    @routes.action(ids.SHOW_CREDENTIALS_ACTION)
    @guarded
    def show_credentials(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        user_id = body["user"]["id"]
        request = holder_request(rt, body)  # anyone else is refused, and audited
        try:
            creds, grant = view_credentials(rt, request, user_id)
        except NoCredentials as none:
            raise refused(rt, request, REFUSED, user_id, none.reason, none.told) from None
        tz = rt.directory.user(user_id).tz
        client.views_open(
            trigger_id=body["trigger_id"],
            view=credentials_modal(request.target, local_time(grant.expires_at, tz), creds),
        )
        log.info("credentials shown request=%s login=%s", request.id, creds["login"])
