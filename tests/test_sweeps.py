"""The sweep's backoff for revokes a provider keeps refusing."""

from __future__ import annotations

import itertools
from datetime import timedelta

from app.sweeps import revoke_retry_delay


def test_failed_revokes_are_retried_with_doubling_waits_capped_at_an_hour() -> None:
    base = timedelta(seconds=60)
    waits = [revoke_retry_delay(base, n) for n in range(1, 9)]
    assert waits[:4] == [timedelta(seconds=s) for s in (60, 120, 240, 480)]
    assert waits[-1] == timedelta(hours=1)
    assert all(a <= b for a, b in itertools.pairwise(waits))
