"""Metrics through the real stack: GET /metrics on web, the worker's metrics port, and an
overdue grant seen while the worker and beat are down. Its own stack: stopping the worker
and beat must not disturb other modules' tests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from app.slack import ids
from app.testing.receiver import AuditReceiver
from app.testing.scenes import (
    approval_card_for,
    click,
    dm_to,
    new_person,
    submit_request,
)
from app.testing.stack import LocalStack, free_port, wait_until
from tests.conftest import BACKENDS, migrated_database_for
from tests.factories import APPROVER, GROUP_NAME, write_flow

SIEM_SECRET = "local-siem-secret-0123456789"
GRANT = {"flow": "test-admin", "provider": "aws_iam_group"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module", params=BACKENDS)
def metered(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[LocalStack]:
    workdir = tmp_path_factory.mktemp("metered")
    flows_dir = workdir / "flows"
    flows_dir.mkdir()
    write_flow(flows_dir)
    redis.Redis.from_url(redis_url).flushdb()
    for database_url in migrated_database_for(request, request.param, workdir):
        receiver = AuditReceiver(SIEM_SECRET).start()
        local = LocalStack(
            workdir=workdir,
            flows_dir=flows_dir,
            redis_url=redis_url,
            database_url=database_url,
            migrated=True,
            extra_env={
                "LATCHKEY_WORKER_METRICS_PORT": str(free_port()),
                "LATCHKEY_WORKER_METRICS_HOST": "127.0.0.1",
                "LATCHKEY_AUDIT_WEBHOOK_URL": receiver.url,
                "LATCHKEY_AUDIT_WEBHOOK_SECRET": SIEM_SECRET,
                # Readiness fails soon after a grant is overdue (sweep 1 s + 1 s grace).
                "LATCHKEY_OVERDUE_GRACE_SECONDS": "1",
            },
        )
        try:
            local.start()
            local.slack.add_user(APPROVER, name="ann", email="ann@example.com")
            local.iam().create_group(GroupName=GROUP_NAME)
            yield local
        except BaseException:
            print(local.all_logs())
            raise
        finally:
            local.stop(kill=True)
            receiver.stop()
            redis.Redis.from_url(redis_url).flushdb()


def _scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our loopback stack
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def web(stack: LocalStack) -> Samples:
    return _scrape(f"http://127.0.0.1:{stack.port}/metrics")


def worker(stack: LocalStack) -> Samples:
    return _scrape(f"http://127.0.0.1:{stack.extra_env['LATCHKEY_WORKER_METRICS_PORT']}/metrics")


def _not_ready_for(stack: LocalStack, problem: str) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{stack.port}/readyz", timeout=5).close()
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read())
        return exc.code == 503 and any(problem in p for p in body.get("problems", []))
    return False


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def _granted(stack: LocalStack, seconds: int, **person: object):  # type: ignore[no-untyped-def]
    someone = new_person(stack, **person)  # type: ignore[arg-type]
    submit_request(
        stack, someone, flow="test-admin", target="admins", seconds=seconds, reason="metrics"
    )
    card = approval_card_for(stack, someone)
    assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
    return someone


def test_request_to_expiry_shows_in_web_and_worker_metrics(metered: LocalStack) -> None:
    person = _granted(metered, seconds=4)
    dm_to(metered, person, "You now have")
    assert value(web(metered), "latchkey_grants_active", **GRANT) == 1

    dm_to(metered, person, "expired", timeout=20)
    after = web(metered)
    assert value(after, "latchkey_grants_active", **GRANT) is None  # no longer active
    assert value(after, "latchkey_grants_overdue") == 0
    assert value(after, "latchkey_database_up") == 1
    assert 0 <= value(after, "latchkey_heartbeat_age_seconds", kind="worker") < 15  # type: ignore[operator]
    assert 0 <= value(after, "latchkey_heartbeat_age_seconds", kind="beat") < 15  # type: ignore[operator]
    assert value(after, "latchkey_requests_pending", flow="test-admin") is None
    # The webhook catches up within a sweep or two.
    wait_until(
        lambda: value(web(metered), "latchkey_audit_webhook_lag_events") == 0,
        15,
        "the audit webhook to catch up",
    )

    # The revoke ran in a pool process of the worker: its port serves the pool's counters.
    counted = worker(metered)
    assert value(counted, "latchkey_revoke_lag_seconds_count", **GRANT) == 1
    lag = value(counted, "latchkey_revoke_lag_seconds_sum", **GRANT)
    assert lag is not None and 0 <= lag < 10  # expired within a sweep or so of its end
    assert value(counted, "latchkey_approve_to_access_seconds_count", **GRANT) == 1
    assert total(counted, "latchkey_tasks_total", state="success") >= 2  # grant, revoke, …
    # The DB's figures are the same on every process that serves metrics.
    assert value(counted, "latchkey_grants_overdue") == 0
    # Submitted and approved were counted where they happened (web or worker).
    both = [web(metered), counted]
    for outcome in ("submitted", "approved"):
        assert (
            sum(
                total(s, "latchkey_requests_total", flow="test-admin", outcome=outcome)
                for s in both
            )
            >= 1
        )


def test_provider_errors_are_counted_by_provider_and_operation(metered: LocalStack) -> None:
    labels = {"provider": "aws_iam_group", "operation": "grant"}
    before = total(worker(metered), "latchkey_provider_errors_total", **labels)
    person = _granted(metered, seconds=4, iam_user=False)  # no IAM user: AWS refuses
    dm_to(metered, person, "failed")
    assert total(worker(metered), "latchkey_provider_errors_total", **labels) == before + 1


def test_overdue_grant_shows_while_worker_and_beat_are_down(metered: LocalStack) -> None:
    person = _granted(metered, seconds=4)
    dm_to(metered, person, "You now have")
    metered.stop_process("worker")
    metered.stop_process("beat")
    try:
        # Nobody revokes: past its end the grant is overdue, and the silence shows too.
        wait_until(
            lambda: value(web(metered), "latchkey_grants_overdue") == 1, 20, "an overdue grant"
        )
        late = web(metered)
        assert value(late, "latchkey_grants_overdue_oldest_seconds") > 0  # type: ignore[operator]
        assert value(late, "latchkey_heartbeat_age_seconds", kind="worker") > 1  # type: ignore[operator]
        # ...and readiness says so, naming the overdue grant.
        wait_until(lambda: _not_ready_for(metered, "overdue grants: 1"), 15, "readiness to fail")
    finally:
        metered.start_process("worker")
        metered.start_process("beat")
    # A restarted beat imports, then sweeps: on a loaded CI machine that alone took > 30 s.
    dm_to(metered, person, "expired", timeout=90)
    wait_until(
        lambda: value(web(metered), "latchkey_grants_overdue") == 0, 15, "the overdue revoke"
    )
