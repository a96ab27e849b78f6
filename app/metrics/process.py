"""Counters and histograms of events this process saw.

Built on first use, not at import: prometheus-client decides between in-process and
multiprocess values (PROMETHEUS_MULTIPROC_DIR) when a value is created, and a process
sets that directory at start (app.metrics.exposition.use_multiprocess_dir). Recording never
raises: a metric that cannot be written must not fail a grant or a revoke.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Any, ParamSpec

from prometheus_client import CollectorRegistry, Counter, Histogram

log = logging.getLogger(__name__)
P = ParamSpec("P")

# Seconds; a revoke is due at a sweep (30 s by default) at the latest.
REVOKE_LAG_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
ACCESS_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


@dataclass(frozen=True)
class ProcessMetrics:
    registry: CollectorRegistry
    requests: Counter
    provider_errors: Counter
    slack_errors: Counter
    slack_rate_limited: Counter
    tasks: Counter
    task_failures: Counter
    task_retries: Counter
    revoke_lag: Histogram
    approve_to_access: Histogram


@lru_cache(maxsize=1)
def metrics() -> ProcessMetrics:
    registry = CollectorRegistry()
    kw: dict[str, Any] = {"registry": registry}
    return ProcessMetrics(
        registry=registry,
        requests=Counter(
            "latchkey_requests",
            "Requests by flow and outcome: submitted, then approved, denied, auto_approved, "
            "auto_denied, break_glass, cancelled or timed_out.",
            ["flow", "outcome"],
            **kw,
        ),
        provider_errors=Counter(
            "latchkey_provider_errors",
            "Provider calls that raised ProviderError, by provider and operation.",
            ["provider", "operation"],
            **kw,
        ),
        slack_errors=Counter(
            "latchkey_slack_api_errors",
            "Slack Web API answers that were errors (ok=false, HTTP 5xx, no connection), "
            "by method and error; 429s are counted in latchkey_slack_rate_limited_total.",
            ["method", "error"],
            **kw,
        ),
        slack_rate_limited=Counter(
            "latchkey_slack_rate_limited",
            "Slack Web API answers 429 (rate limited), by method, retried or not.",
            ["method"],
            **kw,
        ),
        tasks=Counter(
            "latchkey_tasks",
            "Celery tasks run by this worker, by task and final state.",
            ["task", "state"],
            **kw,
        ),
        task_failures=Counter(
            "latchkey_task_failures",
            "Celery tasks that failed (after their retries), by task and exception type.",
            ["task", "exception"],
            **kw,
        ),
        task_retries=Counter(
            "latchkey_task_retries",
            "Celery task retries (transient provider errors, Slack rate limits), by task.",
            ["task"],
            **kw,
        ),
        revoke_lag=Histogram(
            "latchkey_revoke_lag_seconds",
            "From a grant's end (expires_at) to its revoke confirmed by the provider, "
            "for grants that ran out.",
            ["flow", "provider"],
            buckets=REVOKE_LAG_BUCKETS,
            **kw,
        ),
        approve_to_access=Histogram(
            "latchkey_approve_to_access_seconds",
            "From the decision that approved a request (approved, auto_approved, "
            "break_glass) to its grant recorded active after the provider call.",
            ["flow", "provider"],
            buckets=ACCESS_BUCKETS,
            **kw,
        ),
    )


def reset() -> None:
    """Forget the metrics built so far: the next use builds them for the current mode."""
    metrics.cache_clear()


def _never_raises(fn: Callable[P, None]) -> Callable[P, None]:
    @wraps(fn)
    def safe(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            log.warning("metric %s not recorded", fn.__name__, exc_info=True)

    return safe


@_never_raises
def request_outcome(flow: str, outcome: str) -> None:
    metrics().requests.labels(flow, outcome).inc()


@_never_raises
def provider_error(provider: str, operation: str) -> None:
    metrics().provider_errors.labels(provider, operation).inc()


@_never_raises
def slack_error(method: str, error: str) -> None:
    metrics().slack_errors.labels(method, error).inc()


@_never_raises
def slack_rate_limited(method: str) -> None:
    metrics().slack_rate_limited.labels(method).inc()


@_never_raises
def task_finished(task: str, state: str) -> None:
    metrics().tasks.labels(task, state).inc()


@_never_raises
def task_failed(task: str, exception: str) -> None:
    metrics().task_failures.labels(task, exception).inc()


@_never_raises
def task_retried(task: str) -> None:
    metrics().task_retries.labels(task).inc()


@_never_raises
def revoke_lag(flow: str, provider: str, seconds: float) -> None:
    metrics().revoke_lag.labels(flow, provider).observe(max(0.0, seconds))


@_never_raises
def approve_to_access(flow: str, provider: str, seconds: float) -> None:
    metrics().approve_to_access.labels(flow, provider).observe(max(0.0, seconds))
