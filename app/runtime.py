"""The composition root: everything a process needs, built once from Settings."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any

from redis import Redis
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from app.audit import AuditLog
from app.audit.keys import previous_keys
from app.config import Settings
from app.db import Database
from app.flows.loader import FlowRegistry
from app.metrics.slack import SlackErrorCounter
from app.providers.registry import ProviderRegistry, default_providers
from app.slack.directory import SlackDirectory
from app.startup import Probe, require
from app.worker.queue import TaskQueue


def retry_after(headers: Mapping[str, Any] | None) -> int:
    """Seconds from a 429's Retry-After header (1 when it is missing or unreadable).

    The SDK gives header values as lists for its own HTTP responses and as strings on
    SlackResponse; both are read here.
    """
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    value = lowered.get("retry-after", "1")
    value = value[0] if isinstance(value, list) else value
    return int(value) if str(value).isdigit() else 1


class ShortRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """The SDK's 429 handler (sleeps Retry-After, retries), for short waits only.

    A longer Retry-After is raised to the caller instead: a Celery task then retries with
    that countdown, so no worker slot sleeps on Slack while a grant or revoke waits.
    """

    def __init__(self, max_retry_count: int = 3, max_wait: int = 2) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:  # type: ignore[no-untyped-def]
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        return retry_after(response.headers) <= self.max_wait


def build_slack_client(settings: Settings) -> WebClient:
    """Every Slack client of ours: SLACK_API_URL as base, short 429s and dropped
    connections retried here; long rate limits go back to the caller."""
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=10,
        retry_handlers=[
            SlackErrorCounter(),  # first: it sees every answer and never retries
            ConnectionErrorRetryHandler(max_retry_count=2),
            ShortRateLimitRetryHandler(),
        ],
    )


@dataclass
class Runtime:
    settings: Settings
    db: Database
    flows: FlowRegistry
    audit: AuditLog
    providers: ProviderRegistry = field(default_factory=default_providers)

    @cached_property
    def slack(self) -> WebClient:
        return build_slack_client(self.settings)

    @cached_property
    def directory(self) -> SlackDirectory:
        return SlackDirectory(self.slack)

    @cached_property
    def redis(self) -> Redis:
        return Redis.from_url(self.settings.redis_url)

    @cached_property
    def tasks(self) -> TaskQueue:
        from app.worker.celery_app import create_celery

        # Timed revokes go to the broker only when due within about one sweep interval.
        horizon = timedelta(seconds=self.settings.sweep_seconds + 5)
        return TaskQueue(create_celery(self.settings), horizon=horizon)


def build_runtime(
    settings: Settings, *, require_slack: bool = True, require_broker: bool = True
) -> Runtime:
    """Fail closed: every start-up check (app.startup) passes, or StartupError names the
    setting at fault and the fix, in one line."""
    probe = require(Probe(settings, require_slack=require_slack, require_broker=require_broker))
    assert probe.key is not None and probe.flows is not None  # set by the checks that passed
    stream = sys.stdout if settings.audit_stdout else None
    return Runtime(
        settings=settings,
        db=Database(settings.database_url),
        flows=probe.flows,
        audit=AuditLog(probe.key, stream, previous_keys(settings)),
        providers=default_providers(
            custom=probe.flows.providers,
            gcp_endpoint=settings.gcp_endpoint,
            gcp_grpc_endpoint=settings.gcp_grpc_endpoint,
            settings=settings,
        ),
    )
