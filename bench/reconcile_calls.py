"""Provider calls per reconciliation pass: 10k live grants across 20 IAM groups.

One pass of `app.reconcile` against a moto server behind the AWS fault proxy, which counts
every call by action; SQL statements counted on the engine. The baseline is the per-grant
design it replaced (one `ListGroupsForUser` per live grant, the provider's `check`), run in
the same process against the same moto on a sample of grants and scaled to the estate:
its count is one call per grant by construction (the sample confirms it), its time is
extrapolated from the sample. Target: a few dozen calls per pass.

Users, memberships and grant rows are written in bulk (moto's state in process; multi-row
INSERTs), not through Slack: the pass is what is measured.

Usage: .venv/bin/python -m bench.reconcile_calls [--grants 10000] [--groups 20]
       [--budget 500] [--sample 500]   (DATABASE_URL: a scratch PostgreSQL, else SQLite)
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from moto.iam.models import iam_backends
from redis import Redis
from sqlalchemy import event, insert

from app.audit import AuditLog
from app.cli import migrate
from app.config import Settings
from app.db import Database, utcnow
from app.flows.loader import load_flows
from app.flows.schema import AwsIamGroupTarget
from app.models import AccessRequest, Grant, RequestStatus
from app.providers.aws_iam import AwsIamGroupProvider
from app.providers.base import GrantSpec
from app.providers.registry import ProviderRegistry
from app.reconcile import CURSOR, LOCK, reconcile
from app.runtime import Runtime
from app.testing.aws_faults import AwsFaultProxy
from app.testing.moto import client, moto_server
from tests.factories import AUDIT_KEY, REQUESTER, write_flow

ACCOUNT = "123456789012"  # moto's default account


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grants", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--budget", type=int, default=500, help="LATCHKEY_RECONCILE_BUDGET")
    parser.add_argument("--sample", type=int, default=500, help="grants checked the old way")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("LATCHKEY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/4"),
    )
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request
    with moto_server() as endpoint:
        proxy = AwsFaultProxy(endpoint)
        proxy.start()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                _run(args, Path(tmp), proxy, client("iam", proxy.url))
        finally:
            proxy.stop()


def _run(args: Any, work: Path, proxy: AwsFaultProxy, iam: Any) -> None:
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{work / 'bench.db'}"
    migrate(url)
    db = Database(url)
    run = uuid.uuid4().hex[:6]
    targets = [
        AwsIamGroupTarget(name=f"g{g}", group_name=f"bench-{run}-{g}") for g in range(args.groups)
    ]
    principals = _seed(db, targets, args.grants)
    (work / "flows").mkdir()
    write_flow(work / "flows", name="groups", targets=f"({', '.join(map(repr, targets))},)")
    Redis.from_url(args.redis_url).delete(LOCK, CURSOR)
    settings = Settings(  # type: ignore[call-arg]
        database_url=url, redis_url=args.redis_url, reconcile_budget=args.budget
    )
    provider = TimedProvider(iam)
    rt = Runtime(
        settings=settings,
        db=db,
        flows=load_flows(work / "flows"),
        audit=AuditLog(AUDIT_KEY.encode()),
        providers=ProviderRegistry({"aws_iam_group": lambda: provider}),
    )
    statements = [0]
    event.listen(db.engine, "before_cursor_execute", lambda *a: _bump(statements))

    before = _calls(proxy)
    started = time.perf_counter()
    counts = reconcile(rt)
    seconds = time.perf_counter() - started
    calls = _calls(proxy) - before

    # The design it replaced, on a sample: one check (ListGroupsForUser) per live grant.
    sample = principals[: args.sample]
    before_old, started = proxy.seen("ListGroupsForUser"), time.perf_counter()
    for target, user in sample:
        assert provider.check(GrantSpec(user, target, utcnow()))
    old_seconds = (time.perf_counter() - started) * args.grants / len(sample)
    old_per_grant = (proxy.seen("ListGroupsForUser") - before_old) / len(sample)
    old_calls = round(old_per_grant * args.grants)

    db_kind = db.engine.dialect.name
    print(f"reconcile pass: {args.grants} live grants across {args.groups} IAM groups ({db_kind})")
    drift = counts["reapplied"] + counts["revoked"]
    print(f"  checked {counts['checked']}, drift {drift}, errors {counts['errors']}, ")
    print(f"  deferred {counts['deferred']} reads (budget {args.budget})")
    print(f"  provider calls per pass : {calls} (GetGroup {proxy.seen('GetGroup')})")
    print(f"  SQL statements per pass : {statements[0]}")
    print(f"  pass time               : {seconds:.2f} s")
    print(f"    waiting on IAM (moto)   : {provider.seconds:.2f} s")
    print(f"    Latchkey's own work     : {seconds - provider.seconds:.2f} s")
    print(f"baseline, per grant       : {old_calls} ListGroupsForUser calls, ~{old_seconds:.1f} s")
    print(f"  (measured on {len(sample)} grants: {old_per_grant:.2f} call each)")
    print(f"ratio calls new/old       : {calls / old_calls:.4f} ({old_calls / calls:.0f}x fewer)")
    print(f"ratio time  new/old       : {seconds / old_seconds:.3f}")


class TimedProvider(AwsIamGroupProvider):
    """The real provider, adding up the time its reads spend at (moto's) IAM."""

    seconds = 0.0

    def members(self, target: AwsIamGroupTarget) -> dict[str, set[str]]:
        started = time.perf_counter()
        try:
            return super().members(target)
        finally:
            self.seconds += time.perf_counter() - started


def _bump(counter: list[int]) -> None:
    counter[0] += 1


def _calls(proxy: AwsFaultProxy) -> int:
    return sum(proxy.seen(a) for a in ("GetGroup", "ListGroupsForUser", "AddUserToGroup"))


def _seed(
    db: Database, targets: list[AwsIamGroupTarget], grants: int
) -> list[tuple[AwsIamGroupTarget, str]]:
    """Each grant's user in its group at moto, and its request and grant rows in the DB."""
    backend = iam_backends[ACCOUNT]["global"]
    now, held, requests, rows = utcnow(), [], [], []
    for target in targets:
        backend.create_group(target.group_name)
    for n in range(grants):
        target = targets[n % len(targets)]
        user = f"{target.group_name}-u{n}"
        backend.create_user("us-east-1", user)
        backend.add_user_to_group(target.group_name, user)
        held.append((target, user))
        request_id = uuid.uuid4()
        requests.append(
            {
                "id": request_id,
                "flow": "groups",
                "target": target.name,
                "requester_id": REQUESTER,
                "reason": "bench",
                "requested_seconds": 3600,
                "status": RequestStatus.ACTIVE,
                "created_at": now,
                "updated_at": now,
            }
        )
        rows.append(
            {
                "id": uuid.uuid4(),
                "request_id": request_id,
                "provider": "aws_iam_group",
                "target": target.name,
                "resource": target.resource,
                "principal": user,
                "granted_at": now,
                "expires_at": now + timedelta(hours=1),
                "details": {},
            }
        )
    with db.engine.begin() as connection:
        connection.execute(insert(AccessRequest.__table__), requests)  # type: ignore[attr-defined]
        connection.execute(insert(Grant.__table__), rows)  # type: ignore[attr-defined]
    return held


if __name__ == "__main__":
    main()
