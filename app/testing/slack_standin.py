"""A local stand-in for Slack's Web API that records every call.

Tests and `latchkey demo` point `slack_sdk.WebClient(base_url=...)` at it. It answers with
the shapes (and errors) real Slack answers with, so the code under test runs the parsing
paths it runs in production, and every call can be asserted on afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

Args = dict[str, Any]
Answer = tuple[int, dict[str, str], Args]  # HTTP status, extra headers, JSON body
DEFAULT_TOKEN = "xoxb-test-token"
# Slack's limits on an interaction's response_url: "up to 5 times within 30 minutes".
RESPONSE_URL_SECONDS = 30 * 60
RESPONSE_URL_USES = 5
RESPONSE_URL = "response_url"  # the `method` of a recorded post to a response_url


@dataclass
class _ResponseUrl:
    user: str
    channel: str | None
    issued: float  # the stand-in's clock
    uses: int = 0


@dataclass(frozen=True)
class RecordedCall:
    """One Web API call as the stand-in received and answered it."""

    method: str
    args: Args  # decoded body + query; the token is removed so records never hold it
    at: float  # time.monotonic() when received
    rate_limited: bool = False
    status: int = 200
    response: Args = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.response.get("ok") is True


def _decode_form(raw: str) -> Args:
    # slack_sdk form-encodes some methods and sends blocks/view there as JSON strings;
    # decode them so assertions see one structure whichever encoding the SDK chose.
    args: Args = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        args[key] = value
        if value[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                args[key] = json.loads(value)
    return args


def _text(obj: Any) -> str:
    return str(obj.get("text", "")) if isinstance(obj, dict) else ""


def _block_problems(blocks: Any, *, limit: int, at: str) -> list[str]:
    """Slack's Block Kit limits that real apps trip over, e.g. a long justification."""
    if not isinstance(blocks, list):
        return [] if blocks is None else [f"must be an array [json-pointer:{at}]"]
    problems = [f"must have no more than {limit} items [json-pointer:{at}]"] * (len(blocks) > limit)
    for i, block in enumerate(blocks):
        here, kind = f"{at}/{i}", block.get("type") if isinstance(block, dict) else None
        if kind is None:
            problems.append(f"missing required field: type [json-pointer:{here}]")
            continue
        checks = [
            (kind == "header" and len(_text(block.get("text"))) > 150, "/text/text", "too long"),
            (kind == "section" and len(_text(block.get("text"))) > 3000, "/text/text", "too long"),
            (
                kind == "section" and not (block.get("text") or block.get("fields")),
                "",
                "must provide text or fields",
            ),
            (
                kind == "input" and not (block.get("label") and block.get("element")),
                "",
                "missing required field: label or element",
            ),
            (
                kind == "actions" and not 0 < len(block.get("elements") or []) <= 25,
                "/elements",
                "must have 1 to 25 items",
            ),
        ]
        for j, element in enumerate(block.get("elements") or [] if kind == "actions" else []):
            checks.append(
                (len(_text(element.get("text"))) > 75, f"/elements/{j}/text/text", "too long")
            )
            checks.append(
                (len(str(element.get("value", ""))) > 2000, f"/elements/{j}/value", "too long")
            )
        problems += [f"{why} [json-pointer:{here}{where}]" for bad, where, why in checks if bad]
    return problems


def _view_problems(view: Args) -> list[str]:
    problems = _block_problems(view.get("blocks", []), limit=100, at="/view/blocks")
    if view.get("type") not in ("modal", "home"):
        problems.append("must be one of modal, home [json-pointer:/view/type]")
    if view.get("type") == "modal":
        if not view.get("title"):
            problems.append("missing required field: title [json-pointer:/view/title]")
        problems += [
            f"must be less than 25 characters [json-pointer:/view/{key}/text]"
            for key in ("title", "submit", "close")
            if len(_text(view.get(key))) > 24
        ]
        if not view.get("submit") and any(
            isinstance(b, dict) and b.get("type") == "input" for b in view.get("blocks", [])
        ):
            problems.append("submit is required when blocks contain inputs [json-pointer:/view]")
    if len(str(view.get("private_metadata", ""))) > 3000:
        problems.append("must be less than 3001 characters [json-pointer:/view/private_metadata]")
    return problems


def _error(error: str, problems: list[str] | None = None) -> Args:
    body: Args = {"ok": False, "error": error}
    if problems:
        body["response_metadata"] = {"messages": [f"[ERROR] {p}" for p in problems]}
    return body


class SlackStandIn:
    """Slack Web API on 127.0.0.1:<free port>, served from a daemon thread."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        team_id: str = "T0LATCHKEY",
        team: str = "Latchkey Test",
        team_domain: str = "latchkey-test",
        bot_user_id: str = "U0LATCHBOT",
        bot_id: str = "B0LATCHBOT",
        app_id: str = "A0LATCHKEY",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token, self.team_id, self.team, self.team_domain = token, team_id, team, team_domain
        self.bot_user_id, self.bot_id, self.app_id = bot_user_id, bot_id, app_id
        self._port, self._clock = port, clock
        self._lock = threading.Condition()  # guards all state below; notified on each call
        self._calls: list[RecordedCall] = []
        self._faults: dict[str, list[tuple[int, int]]] = {}
        self._limits: list[tuple[str, float, int]] = []
        self._delays: dict[str, float] = {}
        self._users: dict[str, Args] = {}
        self._usergroups: dict[str, list[str]] = {}
        self._channels: dict[str, Args] = {}
        self._members: dict[str, set[str]] = {}
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._messages: dict[tuple[str, str], Args] = {}
        self._views: dict[str, Args] = {}
        self._last_ts_us = self._view_count = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SlackStandIn:
        if self._server is None:
            self._server = _Server(("127.0.0.1", self._port), _handler_for(self))
            # A short poll interval keeps stop() (and so each test's teardown) fast.
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="slack-standin", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("SlackStandIn is not started; call start() first")
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    # ---- the workspace: people, groups, channels ---------------------------------------
    def add_user(
        self,
        user_id: str,
        *,
        name: str,
        email: str,
        tz: str = "UTC",
        tz_offset: int | None = None,
        is_admin: bool = False,
        real_name: str | None = None,
        is_restricted: bool = False,
        deleted: bool = False,
    ) -> Args:
        """Add a person; users.info and users.lookupByEmail answer from here."""
        local_now = datetime.now(UTC).astimezone(ZoneInfo(tz))
        if tz_offset is None:
            offset = local_now.utcoffset()
            tz_offset = int(offset.total_seconds()) if offset is not None else 0
        real = real_name or name
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": deleted,
            "real_name": real,
            "tz": tz,
            "tz_label": local_now.tzname() or tz,
            "tz_offset": tz_offset,
            "is_admin": is_admin,
            "is_owner": False,
            "is_bot": False,
            "is_app_user": False,
            "is_restricted": is_restricted,
            "is_ultra_restricted": False,
            "updated": int(self._clock()),
            "profile": {
                "email": email,
                "real_name": real,
                "real_name_normalized": real,
                "display_name": name,
                "display_name_normalized": name,
                "team": self.team_id,
            },
        }
        with self._lock:
            self._users[user_id] = user
        return user

    def add_usergroup(self, group_id: str, user_ids: list[str]) -> None:
        with self._lock:
            self._usergroups[group_id] = list(user_ids)

    def add_channel(
        self,
        channel_id: str,
        *,
        name: str,
        is_private: bool = False,
        members: list[str] | tuple[str, ...] = (),
        bot_member: bool = True,
    ) -> None:
        """Add a channel with these people in it (see join / leave); the bot is in it
        unless `bot_member` is False, when a message posted there is refused."""
        with self._lock:
            self._members[channel_id] = set(members)
            self._channels[channel_id] = {
                "id": channel_id,
                "name": name,
                "is_channel": not is_private,
                "is_group": False,
                "is_im": False,
                "is_private": is_private,
                "is_archived": False,
                "is_member": bot_member,
                "created": int(self._clock()),
            }

    def join(self, channel_id: str, *user_ids: str) -> None:
        """These people join the channel; chat.postEphemeral to them there now works."""
        with self._lock:
            self._members.setdefault(channel_id, set()).update(user_ids)

    def leave(self, channel_id: str, *user_ids: str) -> None:
        with self._lock:
            self._members.get(channel_id, set()).difference_update(user_ids)

    def members(self, channel_id: str) -> set[str]:
        with self._lock:
            return set(self._members.get(channel_id, ()))

    def user_names(self) -> dict[str, str]:
        """User id -> handle, for app.testing.render."""
        with self._lock:
            return {uid: user["name"] for uid, user in self._users.items()}

    def message(self, channel: str, ts: str) -> Args | None:
        """The message as it stands now (after any chat.update), or None."""
        with self._lock:
            found = self._messages.get((channel, ts))
            return dict(found) if found else None

    # ---- recording and faults ----------------------------------------------------------
    def calls(self, method: str | None = None, *, since: int = 0) -> list[RecordedCall]:
        """Recorded calls (of `method`), those after the `since` mark only when given."""
        with self._lock:
            return [c for c in self._calls[since:] if method is None or c.method == method]

    def mark(self) -> int:
        """Where the record ends now: `calls(since=…)` then shows only what came after, so a
        test on a shared stack never reads what earlier tests made Slack show someone."""
        with self._lock:
            return len(self._calls)

    def clear(self) -> None:
        """Forget recorded calls and pending faults; the workspace stays."""
        with self._lock:
            self._calls.clear()
            self._faults.clear()

    def wait_for(
        self,
        method: str,
        predicate: Callable[[Args], bool] = lambda args: True,
        timeout: float = 10.0,
        *,
        ok_only: bool = True,
        since: int = 0,
    ) -> RecordedCall:
        """Return the first call of `method` whose args satisfy `predicate`, of those after
        the `since` mark when given (words to a fixed approver on a shared stack).

        By default only calls Slack accepted count: "the bot posted X" must not be
        satisfied by an attempt that was rate-limited or rejected.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for call in self._calls[since:]:
                    if call.method == method and (call.ok or not ok_only) and predicate(call.args):
                        return call
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = "".join(
                        f"\n  - status={c.status} error={c.response.get('error')} args={c.args!r}"
                        for c in self._calls
                        if c.method == method
                    )
                    raise TimeoutError(
                        f"no matching {method} call within {timeout}s; "
                        f"recorded {method} calls:{seen or ' none'}"
                    )
                self._lock.wait(remaining)

    def fail_next(
        self, method: str, *, status: int = 429, retry_after: int = 1, times: int = 1
    ) -> None:
        """Answer the next `times` calls of `method` with HTTP `status` (429: rate limited)."""
        with self._lock:
            self._faults.setdefault(method, []).extend([(status, retry_after)] * times)

    def rate_limit(self, prefix: str, *, seconds: float, retry_after: int) -> float:
        """Answer every call whose method starts with `prefix` (e.g. "chat.") with 429 and
        Retry-After for the next `seconds`, as Slack does to a noisy app. Returns when
        (time.monotonic()) the limit lifts."""
        until = time.monotonic() + seconds
        with self._lock:
            self._limits.append((prefix, until, retry_after))
        return until

    def slow_down(self, prefix: str, seconds: float) -> None:
        """Answer every call whose method starts with `prefix` only after `seconds` (0: at
        once again), as a Slack that hangs does. A call is recorded when it is answered."""
        with self._lock:
            if seconds > 0:
                self._delays[prefix] = seconds
            else:
                self._delays.pop(prefix, None)

    # ---- response_url: where an app replies to one interaction --------------------------
    def response_url(self, user_id: str, channel_id: str | None = None) -> str:
        """A new response_url for an interaction of `user_id` (in `channel_id`), as Slack
        puts in block_actions and slash-command payloads: 5 uses within 30 minutes."""
        token = secrets.token_urlsafe(12)
        with self._lock:
            self._response_urls[token] = _ResponseUrl(user_id, channel_id, self._clock())
        return f"{self.base_url.removesuffix('/api/')}/response/{token}"

    def responses(self, user_id: str | None = None) -> list[RecordedCall]:
        """What was posted to response_urls (for `user_id`): what the person was shown."""
        return [c for c in self.calls(RESPONSE_URL) if user_id in (None, c.args.get("user"))]

    def respond(self, token: str, payload: Args) -> Answer:
        """Answer a POST to a response_url; accepted posts are recorded with the user and
        channel of the interaction, so `user`/`channel` read as in chat.postEphemeral."""
        received = time.monotonic()
        with self._lock:
            issued = self._response_urls.get(token)
            if issued is None:
                answer: Answer = (404, {}, _error("no_active_hooks"))
            elif self._clock() - issued.issued > RESPONSE_URL_SECONDS:
                answer = (404, {}, _error("expired_url"))
            elif issued.uses >= RESPONSE_URL_USES:
                answer = (404, {}, _error("used_url"))
            elif not (
                payload.get("text") or payload.get("blocks") or payload.get("delete_original")
            ):
                answer = (400, {}, _error("no_text"))
            else:
                issued.uses += 1
                answer = (200, {}, {"ok": True})
            args = dict(payload)
            if issued is not None:
                args.update(user=issued.user, channel=issued.channel)
            self._calls.append(
                RecordedCall(RESPONSE_URL, args, received, status=answer[0], response=answer[2])
            )
            self._lock.notify_all()
        return answer

    def next_ts(self) -> str:
        """A message ts: epoch seconds.microseconds, strictly increasing across threads."""
        with self._lock:
            self._last_ts_us = max(int(self._clock() * 1_000_000), self._last_ts_us + 1)
            return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    # ---- answering ---------------------------------------------------------------------
    def handle(self, method: str, args: Args, authorization: str | None) -> Answer:
        """Answer one call and record it; the HTTP handler only does transport."""
        with self._lock:
            delay = max((s for p, s in self._delays.items() if method.startswith(p)), default=0)
        if delay:
            time.sleep(delay)  # outside the lock: other calls are answered meanwhile
        received = time.monotonic()
        token = args.pop("token", None)
        if authorization and authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ").strip()
        fault = None
        if token == self.token:  # a rejected call must not use up an injected fault
            with self._lock:
                fault = self._faults[method].pop(0) if self._faults.get(method) else None
                limit = next(
                    (
                        (429, after)
                        for prefix, until, after in self._limits
                        if method.startswith(prefix) and received < until
                    ),
                    None,
                )
                fault = fault or limit
        if not token:
            answer: Answer = (200, {}, _error("not_authed"))
        elif token != self.token:
            answer = (200, {}, _error("invalid_auth"))
        elif fault is not None and fault[0] == 429:
            answer = (429, {"Retry-After": str(fault[1])}, _error("ratelimited"))
        elif fault is not None:
            answer = (fault[0], {}, _error("internal_error"))
        else:
            method_handler = _METHODS.get(method)
            answer = (200, {}, method_handler(self, args) if method_handler else {"ok": True})
        call = RecordedCall(
            method,
            args,
            received,
            rate_limited=answer[0] == 429,
            status=answer[0],
            response=answer[2],
        )
        with self._lock:
            self._calls.append(call)
            self._lock.notify_all()
        return answer

    def _auth_test(self, args: Args) -> Args:
        return {
            "ok": True,
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team,
            "user": "latchkey",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _post_message(self, args: Args, *, ephemeral: bool = False) -> Args:
        if not args.get("channel"):
            return _error("channel_not_found")
        if ephemeral:
            # Slack shows an ephemeral message only to a member of the channel; for anyone
            # else (an outsider who clicked a card in a public channel) it refuses.
            channel, user = str(args["channel"]), str(args.get("user") or "")
            with self._lock:
                members = self._members.get(channel)
            if channel[:1] == "D":
                members = {channel[1:]}  # the bot's DM with that person
            if members is None:
                return _error("channel_not_found")
            if user not in members:
                return _error("user_not_in_channel")
        with self._lock:
            known = self._channels.get(str(args["channel"]))
        if not ephemeral and known is not None and not known.get("is_member"):
            return _error("not_in_channel")  # Slack: the bot must be in a channel to post
        if not (args.get("text") or args.get("blocks") or args.get("attachments")):
            return _error("no_text")
        if problems := _block_problems(args.get("blocks"), limit=50, at="/blocks"):
            return {**_error("invalid_blocks", problems), "errors": problems}
        ts = self.next_ts()
        if ephemeral:
            return {"ok": True, "message_ts": ts}
        # Posting to a user id lands in the bot's DM with them; Slack answers with that
        # D channel, and chat.update must then be given the D id, not the user id.
        channel = str(args["channel"])
        channel = f"D{channel}" if channel[:1] in ("U", "W") else channel
        message = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "ts": ts,
            "text": args.get("text", ""),
            "blocks": args.get("blocks", []),
        }
        if args.get("thread_ts"):
            message["thread_ts"] = args["thread_ts"]
        with self._lock:
            self._messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": dict(message)}

    def _update(self, args: Args) -> Args:
        channel, ts = str(args.get("channel", "")), str(args.get("ts", ""))
        if problems := _block_problems(args.get("blocks"), limit=50, at="/blocks"):
            return {**_error("invalid_blocks", problems), "errors": problems}
        with self._lock:
            message = self._messages.get((channel, ts))
            if message is None:
                return _error("message_not_found")
            message.update({k: args[k] for k in ("text", "blocks", "attachments") if k in args})
            message["edited"] = {"user": self.bot_user_id, "ts": self.next_ts()}
            return {
                "ok": True,
                "channel": channel,
                "ts": ts,
                "text": message.get("text", ""),
                "message": dict(message),
            }

    def _permalink(self, args: Args) -> Args:
        channel, ts = str(args.get("channel", "")), str(args.get("message_ts", ""))
        if self.message(channel, ts) is None:
            return _error("message_not_found")
        link = f"https://{self.team_domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        return {"ok": True, "channel": channel, "permalink": link}

    def _users_info(self, args: Args) -> Args:
        with self._lock:
            user = self._users.get(str(args.get("user", "")))
        return {"ok": True, "user": user} if user else _error("user_not_found")

    def _lookup_by_email(self, args: Args) -> Args:
        email = str(args.get("email", "")).lower()
        with self._lock:
            found = [u for u in self._users.values() if u["profile"]["email"].lower() == email]
        return {"ok": True, "user": found[0]} if found else _error("users_not_found")

    def _conversations_open(self, args: Args) -> Args:
        users = sorted(u for u in str(args.get("users", "")).split(",") if u)
        if not users:
            return _error("users_list_not_supplied")
        group_id = f"G{zlib.crc32(','.join(users).encode()):08X}"  # stable for the same people
        channel_id = f"D{users[0]}" if len(users) == 1 else group_id
        return {"ok": True, "no_op": True, "already_open": True, "channel": {"id": channel_id}}

    def _conversations_info(self, args: Args) -> Args:
        channel_id = str(args.get("channel", ""))
        with self._lock:
            channel = self._channels.get(channel_id)
        if channel is None and channel_id.startswith("D"):
            channel = {
                "id": channel_id,
                "is_im": True,
                "user": channel_id[1:],
                "is_channel": False,
                "is_private": True,
                "created": 0,
            }
        return {"ok": True, "channel": channel} if channel else _error("channel_not_found")

    def _usergroup_users(self, args: Args) -> Args:
        with self._lock:
            members = self._usergroups.get(str(args.get("usergroup", "")))
        return _error("no_such_subteam") if members is None else {"ok": True, "users": members}

    def _view(self, method: str, args: Args) -> Args:
        """views.open/push/update/publish: validate like Slack, keep the view by id."""
        required = {
            "views.open": "trigger_id",
            "views.push": "trigger_id",
            "views.publish": "user_id",
        }.get(method)
        if required and not args.get(required):
            return _error("invalid_arguments", [f"missing required field: {required}"])
        view = args.get("view")
        if not isinstance(view, dict):
            return _error("invalid_arguments", ["missing required field: view"])
        if problems := _view_problems(view):
            return _error("invalid_arguments", problems)
        with self._lock:
            previous = None
            if method == "views.update":
                key, wanted = (
                    ("id", args["view_id"])
                    if args.get("view_id")
                    else ("external_id", args.get("external_id") or object())
                )
                previous = next((v for v in self._views.values() if v[key] == wanted), None)
                if previous is None:
                    return _error("not_found")
                if args.get("hash") and args["hash"] != previous["hash"]:
                    return _error("hash_conflict")
            self._view_count += 1
            view_id = previous["id"] if previous else f"V0{self._view_count:08X}"
            stored = {
                "id": view_id,
                "team_id": self.team_id,
                "type": "modal",
                "blocks": [],
                "private_metadata": "",
                "callback_id": "",
                "state": {"values": {}},
                "hash": f"{int(self._clock())}.{self._view_count:08x}",
                "title": None,
                "clear_on_close": False,
                "notify_on_close": False,
                "close": None,
                "submit": None,
                "previous_view_id": None,
                "root_view_id": view_id,
                "app_id": self.app_id,
                "external_id": "",
                "app_installed_team_id": self.team_id,
                "bot_id": self.bot_id,
                **view,
            }
            if previous is not None:
                stored["root_view_id"] = previous["root_view_id"]
            self._views[view_id] = stored
            return {"ok": True, "view": dict(stored)}

    def set_user_flags(self, user_id: str, **fields: Any) -> Args:
        """Change what users.info says about an account (deleted, is_restricted,
        is_ultra_restricted, is_bot, team_id, enterprise_user, is_email_confirmed, …) and
        return the user as a user_change event would carry it."""
        with self._lock:
            user = self._users[user_id]
            user.update(fields)
            user["updated"] = int(self._clock())
            return json.loads(json.dumps(user))

    def set_unreachable(self, down: bool = True) -> None:
        """Make Slack unreachable at the same base_url (every connection is closed without
        an answer, nothing is recorded), or reachable again with `down=False`."""
        if self._server is None:
            raise RuntimeError("SlackStandIn is not started; call start() first")
        if down:

            class Unreachable(BaseHTTPRequestHandler):
                def handle(self) -> None:
                    pass  # closed unanswered, like a dropped connection

            self._server.RequestHandlerClass = Unreachable
        else:
            self._server.RequestHandlerClass = _handler_for(self)


_METHODS: dict[str, Callable[[SlackStandIn, Args], Args]] = {
    "auth.test": SlackStandIn._auth_test,
    "chat.postMessage": SlackStandIn._post_message,
    "chat.postEphemeral": lambda s, a: s._post_message(a, ephemeral=True),
    "chat.update": SlackStandIn._update,
    "chat.getPermalink": SlackStandIn._permalink,
    "users.info": SlackStandIn._users_info,
    "users.lookupByEmail": SlackStandIn._lookup_by_email,
    "conversations.open": SlackStandIn._conversations_open,
    "conversations.info": SlackStandIn._conversations_info,
    "usergroups.users.list": SlackStandIn._usergroup_users,
    **{
        m: lambda s, a, m=m: s._view(m, a)
        for m in ("views.open", "views.push", "views.update", "views.publish")
    },
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops connections when a worker pool calls at once, and
    # the client's SYN retry then stalls a whole second.
    request_queue_size = 128


def _handler_for(standin: SlackStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve(b"")

        def do_POST(self) -> None:
            self._serve(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        def _serve(self, raw: bytes) -> None:
            url = urlsplit(self.path)
            if url.path.startswith("/response/") and self.command == "POST":
                try:
                    payload = json.loads(raw.decode("utf-8") or "{}")
                except ValueError:
                    payload = None
                if not isinstance(payload, dict):
                    self._send(400, {}, _error("invalid_payload"))
                    return
                self._send(*standin.respond(url.path.removeprefix("/response/"), payload))
                return
            if not url.path.startswith("/api/"):
                self._send(404, {}, _error("unknown_method"))
                return
            args, body = _decode_form(url.query), raw.decode("utf-8")
            if body and self.headers.get_content_type() == "application/json":
                try:
                    decoded = json.loads(body)
                except ValueError:
                    decoded = None
                if not isinstance(decoded, dict):
                    self._send(200, {}, _error("invalid_json"))
                    return
                args.update(decoded)
            elif body:
                args.update(_decode_form(body))
            method = url.path.removeprefix("/api/")
            self._send(*standin.handle(method, args, self.headers.get("Authorization")))

        def _send(self, status: int, headers: dict[str, str], payload: Args) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # tests and the demo report what matters from the recorded calls

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a local stand-in for Slack's Web API.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    options = parser.parse_args(argv)
    standin = SlackStandIn(token=options.token, port=options.port).start()
    print(standin.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        standin.stop()


if __name__ == "__main__":
    main()
