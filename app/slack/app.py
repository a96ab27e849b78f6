"""create_app(): the Bolt app, its listeners and its one error handler."""

from __future__ import annotations

import logging

from slack_bolt import App

from app.runtime import Runtime
from app.slack.listeners import approvals, commands, errors, events, grants, home, requests


def create_app(rt: Runtime, *, token_verification: bool = True) -> App:
    """Build the Bolt app. Signed-request verification is Bolt's and always on in HTTP mode."""
    app = App(
        client=rt.slack,
        signing_secret=rt.settings.slack_signing_secret.get_secret_value() or None,
        token_verification_enabled=token_verification,
        # Ack first, then finish the listener: the HTTP response goes back as soon as
        # ack() is called, which keeps Slack's 3-second limit whatever comes after.
        process_before_response=False,
        logger=logging.getLogger("app.slack"),
    )
    errors.register(app)
    commands.register(app, rt)
    requests.register(app, rt)
    approvals.register(app, rt)
    approvals.register_reviews(app, rt)
    grants.register(app, rt)
    home.register(app, rt)
    events.register(app, rt)
    return app
