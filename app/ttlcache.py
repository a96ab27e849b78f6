"""A small per-process cache of answers from outside services (Slack's directory, the
on-call services), each kept for a time-to-live, filled by the caller's loader.

Not cachetools' TTLCache: the loader runs outside the lock (a slow Slack call must not hold
up readers of other keys), and a caller may ask for a shorter time-to-live per read (a
decision wants fresher answers than a display)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

# Entries past this are pruned of expired ones: old versions of a key are never read again.
MAX_ITEMS = 10_000


class TTLCache:
    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self._ttl, self._clock = ttl, clock
        self._items: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, load: Callable[[], Any], ttl: float | None = None) -> Any:
        now = self._clock()
        with self._lock:
            hit = self._items.get(key)
            if hit and now - hit[0] < (self._ttl if ttl is None else ttl):
                return hit[1]
        value = load()
        with self._lock:
            self._items[key] = (now, value)
            if len(self._items) > MAX_ITEMS:
                self._items = {k: v for k, v in self._items.items() if now - v[0] < self._ttl}
        return value
