"""The baseline of bench.click_ack: a bare Bolt app that only acks a click.

Same signing secret, same Bolt settings Slack sees (signature check, ack then return), and
served by the same gunicorn line and config as `latchkey web`:

    python -m gunicorn -c python:app.gunicorn_conf 'bench.bare_bolt:wsgi()'

It reads SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN and SLACK_API_URL (the stand-in), so a
LocalStack's environment serves it unchanged. Anything Latchkey's click ack costs above
this is ours.
"""

from __future__ import annotations

import os
import re
from typing import Any

from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient


def create_bare_app() -> App:
    """One action listener, for any action_id, that acks and does nothing else."""
    client = WebClient(
        token=os.environ["SLACK_BOT_TOKEN"],
        base_url=os.environ.get("SLACK_API_URL", "https://slack.com/api/"),
    )
    app = App(
        client=client,
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        # auth.test once, on the first request, then cached: as a real bare app does.
        token_verification_enabled=False,
    )

    @app.action(re.compile(".*"))
    def acknowledge(ack: Ack) -> None:
        ack()

    return app


def wsgi() -> Any:
    """gunicorn's factory, like app.web:wsgi()."""
    return SlackRequestHandler(create_bare_app())
