"""The composition root: everything a process needs, built once from Settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from redis import Redis
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from app.audit import AuditLog
from app.config import Settings
from app.db import Database
from app.flows.loader import FlowRegistry, load_flows
from app.providers.registry import ProviderRegistry, default_providers
from app.slack.directory import SlackDirectory
from app.worker.queue import TaskQueue


def build_slack_client(settings: Settings) -> WebClient:
    """Every Slack client of ours: SLACK_API_URL as base, 429s and dropped connections retried."""
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=10,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=5),
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

        return TaskQueue(create_celery(self.settings))


def build_runtime(settings: Settings, *, require_slack: bool = True) -> Runtime:
    """Fail closed: bad settings or an invalid flow stop start-up with a message naming it."""
    if require_slack:
        settings.require_slack()
    key = settings.require_audit_key()
    flows = load_flows(settings.flows_dir)
    return Runtime(
        settings=settings, db=Database(settings.database_url), flows=flows, audit=AuditLog(key)
    )
