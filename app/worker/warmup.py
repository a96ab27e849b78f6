"""Make a worker process ready before its first task: imports, runtime and cloud clients.

Without this the first grant after a start paid for importing boto3, loading the IAM
service model and opening the DB pool (0.4 to 1.1 s quiet, 7 to 9 s on a busy machine; issue 14).
The main process imports the heavy modules and builds the runtime once (settings, flows,
audit key: no connection is opened), so the prefork children inherit them; each child then
opens its own DB pool and builds its own clients (connections and gRPC channels must not
cross a fork). Nothing here may stop a worker: a provider unreachable at start is
logged and built again on first use, as before.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from typing import Any

from celery.signals import worker_init, worker_process_init
from sqlalchemy import text

from app.providers.registry import load_aws_models

log = logging.getLogger(__name__)

# Imported in the main process before the pool forks. Google's libraries open gRPC machinery
# that must not cross a fork, so they are imported in each child instead.
_BEFORE_FORK = (
    "boto3",
    "botocore.session",
    "app.providers.aws_iam",
    "app.providers.aws_role",
    "app.providers.aws_sso",
    # Identity-provider groups: requests, msal and Google's discovery client (no gRPC).
    "app.providers.idp.okta",
    "app.providers.idp.entra",
    "msal",
    "googleapiclient.discovery",
    "app.slack.home",
)


def import_heavy_modules() -> None:
    for name in _BEFORE_FORK:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an optional SDK missing is the provider's problem, later
            log.warning("warm-up: could not import %s (%s)", name, type(exc).__name__)


def used_providers(rt: Any) -> set[str]:
    """The providers some flow's target uses: only those are worth building now."""
    from app.flows.schema import provider_of

    return {provider_of(target) for loaded in rt.flows for target in loaded.flow.targets}


def warm_main_process() -> None:
    """Before the pool forks: heavy imports and the runtime (cached in app.worker.tasks)."""
    from app.worker.tasks import runtime

    import_heavy_modules()
    try:
        rt = runtime()
    except Exception as exc:
        log.warning("warm-up: runtime not built (%s: %s)", type(exc).__name__, exc)
        return
    # The engine must not hand a child a connection the parent opened (none should be).
    os.register_at_fork(after_in_child=lambda: rt.db.engine.dispose(close=False))
    try:
        load_aws_models(used_providers(rt))
    except Exception as exc:  # no region configured, an SDK missing: each child tries again
        log.warning("warm-up: AWS service models not loaded (%s: %s)", type(exc).__name__, exc)


def warm_process() -> dict[str, float]:
    """Build (or reuse) this process's runtime, open its DB pool, build every used provider.

    Returns how long each part took (ms), for the log line. Failures are logged, not raised.
    """
    from app.worker.tasks import runtime

    took: dict[str, float] = {}
    started = time.perf_counter()
    try:
        rt = runtime()  # cached: the first task reuses it
    except Exception as exc:
        # The main process already passed the start-up checks; a failure now (the DB
        # restarting) is the first task's to retry, not a reason to kill the child.
        log.warning("warm-up: runtime not built (%s: %s)", type(exc).__name__, exc)
        return took
    took["runtime"] = (time.perf_counter() - started) * 1000
    try:
        with rt.db.session() as session:
            session.execute(text("SELECT 1"))
        rt.slack, rt.redis, rt.tasks  # noqa: B018 - cached properties, built now
    except Exception as exc:
        log.warning("warm-up: DB, Slack client or broker not ready (%s)", type(exc).__name__)
    for name in sorted(used_providers(rt)):
        at = time.perf_counter()
        try:
            rt.providers.get(name)
        except Exception as exc:
            log.warning(
                "warm-up: provider %s not built (%s: %s); it is built again on first use",
                name,
                type(exc).__name__,
                exc,
            )
            continue
        took[name] = (time.perf_counter() - at) * 1000
    return took


def _on_worker_init(**_: Any) -> None:
    warm_main_process()


def _on_process_init(**_: Any) -> None:
    started = time.perf_counter()
    took = warm_process()
    log.info(
        "worker process ready in %.0f ms (%s)",
        (time.perf_counter() - started) * 1000,
        ", ".join(f"{k} {v:.0f} ms" for k, v in took.items()) or "nothing built",
    )


def connect() -> None:
    """Hook the warm-up to Celery's worker signals (idempotent: weak=False, one uid)."""
    worker_init.connect(_on_worker_init, weak=False, dispatch_uid="latchkey-warm-imports")
    worker_process_init.connect(_on_process_init, weak=False, dispatch_uid="latchkey-warm-process")
