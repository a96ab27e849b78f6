"""Who people are in Slack: profile email, timezone, user-group members (cached briefly)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient


@dataclass(frozen=True)
class SlackUser:
    id: str
    name: str
    email: str | None
    tz: str


class _TTLCache:
    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self._ttl, self._clock = ttl, clock
        self._items: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, load: Callable[[], Any]) -> Any:
        now = self._clock()
        with self._lock:
            hit = self._items.get(key)
            if hit and now - hit[0] < self._ttl:
                return hit[1]
        value = load()
        with self._lock:
            self._items[key] = (now, value)
        return value


class SlackDirectory:
    """Reads people and groups from Slack. Group members are cached for `group_ttl`
    seconds: short enough that removing someone from an approver group takes effect
    within a minute, long enough that a burst of clicks does not hit rate limits."""

    def __init__(
        self,
        client: WebClient,
        *,
        user_ttl: float = 300,
        group_ttl: float = 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._users = _TTLCache(user_ttl, clock)
        self._groups = _TTLCache(group_ttl, clock)

    def user(self, user_id: str) -> SlackUser:
        def load() -> SlackUser:
            data = self._client.users_info(user=user_id)["user"]
            profile = data.get("profile", {})
            return SlackUser(
                id=user_id,
                name=profile.get("display_name")
                or data.get("real_name")
                or data.get("name", user_id),
                email=profile.get("email"),
                tz=data.get("tz") or "UTC",
            )

        return self._users.get(user_id, load)

    def usergroup_members(self, group_id: str) -> frozenset[str]:
        def load() -> frozenset[str]:
            return frozenset(self._client.usergroups_users_list(usergroup=group_id)["users"])

        return self._groups.get(group_id, load)

    def members_of(self, group_ids: tuple[str, ...]) -> dict[str, frozenset[str]]:
        return {group: self.usergroup_members(group) for group in group_ids}
