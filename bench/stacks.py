"""The stack every approval benchmark runs: the real processes with one flow, its approver,
approver group and IAM group, in a temporary folder, on a Redis database it empties."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from app.testing.stack import LocalStack
from tests.factories import APPROVER, APPROVER_GROUP, GROUP_APPROVER, GROUP_NAME, write_flow

# Benchmarks empty this Redis database: give them one nothing else uses.
DEFAULT_REDIS_URL = os.environ.get("LATCHKEY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")


@contextmanager
def approval_stack(redis_url: str, *, worker_concurrency: int = 2) -> Iterator[LocalStack]:
    """A started stack on SQLite, or on DATABASE_URL when it is set."""
    redis.Redis.from_url(redis_url).flushdb()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "flows").mkdir()
        write_flow(work / "flows")
        with LocalStack(
            workdir=work,
            flows_dir=work / "flows",
            redis_url=redis_url,
            database_url=os.environ.get("DATABASE_URL"),
            worker_concurrency=worker_concurrency,
        ) as stack:
            stack.slack.add_user(APPROVER, name="ann", email="ann@example.com")
            stack.slack.add_usergroup(APPROVER_GROUP, [GROUP_APPROVER])
            stack.iam().create_group(GroupName=GROUP_NAME)
            yield stack
