"""create_app(): the Bolt app, its listeners and its one error handler; BotIdentity."""

from __future__ import annotations

import contextvars
import logging
import os
import shlex
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.authorize import Authorize
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from app.runtime import Runtime
from app.slack.clicks import ClickKeeper, LateNotices
from app.slack.listeners import (
    approvals,
    commands,
    credentials,
    errors,
    events,
    grants,
    home,
    requests,
)
from app.slack.routes import Routes

log = logging.getLogger(__name__)

OK = "ok"
UNREACHABLE_MESSAGE = (
    ":warning: Latchkey cannot reach Slack right now, so it cannot act on this. "
    "Please try again in a minute."
)


class BotIdentity(Authorize):
    """Who the bot is (`auth.test`), learnt once, in the background, and retried until Slack
    answers — so a process starts and serves /healthz while Slack is down or the token is
    refused, and no request waits on `auth.test` once it is known.

    Bolt calls it for every request (as its `authorize`); until Slack has answered it tries
    `auth.test` once on the spot and, failing, refuses the request with a clear word.
    """

    def __init__(
        self,
        client: WebClient,
        *,
        first_retry: float = 1.0,
        max_retry: float = 30.0,
        sleep: Any = None,
        on_known: Callable[[], object] | None = None,
    ) -> None:
        super().__init__()
        self._client = client
        # Run once Slack has answered (e.g. warm caches that also need Slack).
        self._on_known = on_known
        self._first_retry, self._max_retry = first_retry, max_retry
        self._known: dict[str, Any] | None = None
        self._scopes: str | None = None
        self.state = "connecting: auth.test not answered yet"
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._answered = threading.Event()
        self._wait = sleep or self._stopped.wait

    @property
    def known(self) -> bool:
        return self._known is not None

    def learn(self) -> bool:
        """One `auth.test`: True when Slack answered and the identity is known."""
        if self._known is not None:
            return True
        try:
            response = self._client.auth_test()
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            self._set_state(f"error: auth.test answered {error or exc.response.status_code}")
            return False
        except Exception as exc:  # connection refused, DNS, timeout: Slack is unreachable
            self._set_state(f"unreachable: {type(exc).__name__}")
            return False
        with self._lock:
            self._known = dict(response.data) if isinstance(response.data, dict) else {}
            self._scopes = (response.headers or {}).get("x-oauth-scopes")
            self.state = OK
        self._answered.set()
        log.info("Slack answered auth.test: bot user %s", self._known.get("user_id"))
        if self._on_known is not None:
            try:
                self._on_known()
            except Exception as exc:  # a cache left cold fills on first use instead
                log.warning("warming after auth.test failed (%s)", type(exc).__name__)
        return True

    def _set_state(self, state: str) -> None:
        with self._lock:
            changed, self.state = self.state != state, state
        self._answered.set()
        if changed:
            log.warning("Slack: %s; retrying in the background", state)

    def start(self, *, wait: float = 0.0) -> BotIdentity:
        """Learn in a background thread, retrying with backoff; wait up to `wait` seconds for
        the first answer (whatever it is) so a healthy start is ready at once."""
        threading.Thread(target=self._keep_trying, name="slack-identity", daemon=True).start()
        if wait:
            self._answered.wait(wait)
        return self

    def stop(self) -> None:
        self._stopped.set()

    def _keep_trying(self) -> None:
        delay = self._first_retry
        while not self._stopped.is_set() and not self.learn():
            self._wait(delay)
            delay = min(delay * 2, self._max_retry)

    def __call__(
        self,
        *,
        context: Any,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        actor_enterprise_id: str | None = None,
        actor_team_id: str | None = None,
        actor_user_id: str | None = None,
    ) -> AuthorizeResult:
        if not self.learn():
            # Bolt answers this with UNREACHABLE_MESSAGE (user_facing_authorize_error_message).
            raise SlackApiError(f"Slack is not answering auth.test ({self.state})", {"ok": False})
        known = self._known or {}
        return AuthorizeResult(
            enterprise_id=known.get("enterprise_id"),
            team_id=known.get("team_id"),
            bot_id=known.get("bot_id"),
            bot_user_id=known.get("user_id"),
            bot_token=self._client.token,
            user_id=user_id,
            bot_scopes=self._scopes,
        )


def server_threads(environ: Mapping[str, str] = os.environ) -> int:
    """gunicorn's `--threads` for this process: GUNICORN_CMD_ARGS wins over
    app/gunicorn_conf.py, as in gunicorn itself (Socket Mode uses the same number)."""
    from app import gunicorn_conf

    threads = int(gunicorn_conf.threads)
    args = shlex.split(environ.get("GUNICORN_CMD_ARGS", ""))
    for at, arg in enumerate(args):
        value = arg.partition("=")[2] if arg.startswith("--threads=") else None
        if arg == "--threads" and at + 1 < len(args):
            value = args[at + 1]
        if value is not None and value.isdigit() and int(value) > 0:
            threads = int(value)
    return threads


def listener_threads(environ: Mapping[str, str] = os.environ) -> int:
    """Bolt's listener pool: one thread for each request gunicorn serves at once, whose
    listener runs up to its ack, and one for the little each leaves after it (ringing the
    worker, a views.open), so an ack never waits for a thread (Bolt's default is 5)."""
    return 2 * server_threads(environ)


class ContextThreadPool(ThreadPoolExecutor):
    """A thread pool that runs each task in a copy of the submitter's contextvars."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


def create_app(rt: Runtime, *, identity: BotIdentity | None = None) -> App:
    """Build the Bolt app without calling Slack: the bot's identity comes from `identity`
    (learnt in the background), so a process starts whether or not Slack answers.

    Signed-request verification is Bolt's and always on in HTTP mode (and app.slack.edge
    checked size, signature and freshness before Bolt saw the request).
    """
    app = App(
        client=rt.slack,
        signing_secret=rt.settings.slack_signing_secret.get_secret_value() or None,
        authorize=identity or BotIdentity(rt.slack).start(),
        user_facing_authorize_error_message=UNREACHABLE_MESSAGE,
        # Ack first, then finish the listener: the HTTP response goes back as soon as
        # ack() is called, which keeps Slack's 3-second limit whatever comes after.
        process_before_response=False,
        logger=logging.getLogger("app.slack"),
        # Listeners run on this pool; each carries the request's log fields (request id,
        # user, flow) into its thread, so every line they log is tied to the interaction.
        listener_executor=ContextThreadPool(max_workers=listener_threads()),
    )
    errors.register(app)
    # Buttons and modals: one Bolt listener each, first, since clicks come in bursts
    # (app/slack/routes.py says why).
    routes = Routes()
    # Clicks the worker has not decided within a few seconds are told "deciding…".
    approvals.register(routes, rt, ClickKeeper(rt, rt.slack, LateNotices(rt, rt.slack)))
    approvals.register_reviews(routes, rt)
    grants.register(routes, rt)
    credentials.register(routes, rt)
    requests.register(routes, rt)
    routes.register(app)
    commands.register(app, rt)
    home.register(app, rt)
    events.register(app, rt)
    return app
