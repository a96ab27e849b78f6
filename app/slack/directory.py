"""Who people are in Slack: profile email, timezone, account state, user-group members.

Answers are cached per process, but what decides (eligibility, approver checks) is never
older than the last change Slack told us about: Slack's change events (`user_change`,
`subteam_members_changed`, `subteam_updated`) bump a counter per user or group in Redis
(`SlackChanges`), shared by every web and worker process, and a decision's cache key
carries that counter. A short time-to-live remains only as a fallback for a lost event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from app.accounts import Account, Workspace
from app.ttlcache import TTLCache

log = logging.getLogger(__name__)
# usergroups.users.list errors that mean the group itself is not there.
GONE_GROUP = ("no_such_subteam", "subteam_not_found")

# How long a decision may rely on an answer when no change event came (a lost event).
DECISION_TTL = 10.0


@dataclass(frozen=True)
class SlackUser:
    id: str
    name: str
    email: str | None
    tz: str
    account: Account | None = None


def slack_unreachable(error: BaseException) -> bool:
    """Whether Slack could not answer now (rate limited, down, or the network failed),
    as opposed to answering no: the question may be asked again later."""
    if isinstance(error, SlackApiError):
        status = getattr(error.response, "status_code", 200)
        return status == 429 or status >= 500
    return isinstance(error, OSError)


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


def group_key(group_id: str) -> str:
    return f"group:{group_id}"


class SlackChanges:
    """How many change events Slack sent about each user and group, in Redis so that every
    process sees an event the moment one process received it."""

    PREFIX = "latchkey:slack-changes:"
    # Longer than any cache's time-to-live, so a counter that expires and restarts can
    # never meet a cached answer stored under its earlier value.
    KEEP_SECONDS = 86_400

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    def versions(self, keys: Iterable[str]) -> dict[str, int] | None:
        """Each key's count (0 before any event); None when Redis cannot say."""
        keys = list(keys)
        if not keys:
            return {}
        try:
            values = self._redis.mget([self.PREFIX + k for k in keys])
        except RedisError as exc:
            log.warning("change counters unreadable (%s); asking Slack afresh", type(exc).__name__)
            return None
        return {k: int(v or 0) for k, v in zip(keys, values, strict=True)}

    def bump(self, keys: Iterable[str]) -> None:
        pipe = self._redis.pipeline()
        for key in keys:
            pipe.incr(self.PREFIX + key)
            pipe.expire(self.PREFIX + key, self.KEEP_SECONDS)
        pipe.execute()


class SlackDirectory:
    """Reads people and groups from Slack.

    Without `versions`, answers are cached (users 5 minutes, groups `group_ttl`): good for
    names and timezones. With `versions` (from SlackChanges), the cache key carries the
    count of Slack's change events, so a decision never uses an answer from before the
    latest event; `fresh=True` skips the cache (when the counters cannot be read).
    """

    def __init__(
        self,
        client: WebClient,
        *,
        user_ttl: float = 300,
        group_ttl: float = DECISION_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._users = TTLCache(user_ttl, clock)
        self._groups = TTLCache(group_ttl, clock)
        self._workspace: Workspace | None = None
        self._workspace_lock = threading.Lock()

    def workspace(self) -> Workspace:
        """The bot's own team (and Grid organisation), asked of auth.test once per process."""
        with self._workspace_lock:
            if self._workspace is None:
                data = self._client.auth_test()
                self._workspace = Workspace(
                    team_id=str(data["team_id"]), enterprise_id=data.get("enterprise_id") or None
                )
            return self._workspace

    def user(self, user_id: str, *, version: int | None = None, fresh: bool = False) -> SlackUser:
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
                account=Account.from_slack(data),
            )

        if fresh:
            return load()
        if version is None:
            return self._users.get(user_id, load)
        return self._users.get(f"{user_id}@{version}", load, ttl=DECISION_TTL * 3)

    def user_id_for_email(self, email: str) -> str | None:
        """The Slack user with this profile email (users.lookupByEmail), None when nobody
        has it: how an on-call person from PagerDuty or Opsgenie becomes a Slack user."""

        def load() -> str | None:
            try:
                return str(self._client.users_lookupByEmail(email=email)["user"]["id"])
            except SlackApiError as exc:
                if exc.response.get("error") != "users_not_found":
                    raise
                return None

        return self._users.get(f"email:{email.lower()}", load)

    def usergroup_members(
        self, group_id: str, *, version: int | None = None, fresh: bool = False
    ) -> frozenset[str]:
        def load() -> frozenset[str]:
            try:
                return frozenset(self._client.usergroups_users_list(usergroup=group_id)["users"])
            except SlackApiError as exc:
                if exc.response.get("error") not in GONE_GROUP:
                    raise  # rate limits and outages: the caller defers or says so
                # A flow naming a group that was deleted (or never existed) lets nobody in
                # through it, and the other flows of the modal still work.
                log.error("Slack has no user group %s (named in a flow): no members", group_id)
                return frozenset()

        if fresh:
            return load()
        key = group_id if version is None else f"{group_id}@{version}"
        return self._groups.get(key, load)

    def members_of(
        self, group_ids: tuple[str, ...], versions: Mapping[str, int] | None = None
    ) -> dict[str, frozenset[str]]:
        """Members of each group. With `versions` (group_key -> count), a group missing
        from it is asked of Slack afresh."""
        if versions is None:
            return {group: self.usergroup_members(group) for group in group_ids}
        return {
            group: self.usergroup_members(
                group,
                version=versions.get(group_key(group)),
                fresh=group_key(group) not in versions,
            )
            for group in group_ids
        }
