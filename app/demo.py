"""`latchkey demo`: one request's whole life, with no Slack workspace and no cloud account.

The real processes run (gunicorn web, Celery worker and beat on real Redis, SQLite); Slack
is the local Web API stand-in and AWS is a moto server. The demo plays sam (requester)
and ann (approver) with signed requests, and prints what each of them would see.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from textwrap import wrap
from typing import Any, TextIO
from urllib.parse import urlsplit

import redis
from sqlalchemy import select
from sqlmodel import Session

from app.audit import AuditLog
from app.flows.schema import format_duration
from app.models import AuditEvent, Grant
from app.slack import ids
from app.testing import scenes
from app.testing.redis_server import RedisServer
from app.testing.render import render_blocks, render_view
from app.testing.slack_standin import RecordedCall
from app.testing.stack import AUDIT_KEY, LocalStack

Say = Callable[..., None]

# Without redis-server installed, the demo uses this Redis (or LATCHKEY_DEMO_REDIS_URL, or
# REDIS_URL): a DB number of its own, never a deployment's queue on DB 0.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
# Set in a Redis DB the demo empties and uses: a later demo may empty it again, and only
# then — a DB holding any other key belongs to someone else.
DEMO_MARKER = "latchkey-demo:owner"
START_REDIS = (
    'redis-server --daemonize yes --bind 127.0.0.1 --port {port} --save "" --appendonly no'
)
FLOW = TARGET = "prod-admin"
GROUP = "latchkey-demo-admins"
REQUESTER, APPROVER = "U0DEMOREQUESTER", "U0DEMOAPPROVER"
REQUESTER_EMAIL, REQUESTER_TZ = "sam@example.com", "Europe/Paris"
CHANNEL, CHANNEL_NAME = "C0DEMOAPPROVALS", "access-approvals"
REASON = "Investigating the checkout latency alert INC-4711"
WIDTH = 72

# Written the way an admin writes flows/ (see tests/factories.write_flow); {{…}} is filled later.
FLOW_FILE = f'''\
"""The demo's flow: admin access to a pretend production account, approved by ann."""

from datetime import timedelta

from app.flows.schema import Approvers, AwsIamGroupTarget, Flow

flow = Flow(
    name="{FLOW}",
    description="Administrator access to the (pretend) production AWS account.",
    targets=(AwsIamGroupTarget(name="{TARGET}", group_name="{GROUP}"),),
    approvers=Approvers(users=("{APPROVER}",)),
    approval_channel="{CHANNEL}",
    durations=({{durations}}),
    max_duration=timedelta(seconds={{longest}}),
    reason_required=True,
)
'''


class DemoFailed(Exception):
    """Something the demo shows did not happen as it should."""


def run_demo(seconds: int = 20, redis_url: str | None = None, out: TextIO = sys.stdout) -> int:
    """Play the demo; 0 when everything happened as shown.

    Redis: a private `redis-server` on a free port when the binary is installed, else
    `redis_url` (default LATCHKEY_DEMO_REDIS_URL, REDIS_URL, then DB 13 on localhost),
    which the demo empties only when it is empty already or an earlier demo's.
    """
    """Play /access → approve → grant → expiry → audit; 0 when every step happened."""
    url = (
        redis_url
        or os.environ.get("LATCHKEY_DEMO_REDIS_URL")
        or os.environ.get("REDIS_URL")
        or DEFAULT_REDIS_URL
    )

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    if seconds < 1:
        say("latchkey demo: --seconds must be at least 1")
        return 1
    if importlib.util.find_spec("moto") is None:  # a dev extra: installs without it are valid
        say("latchkey demo needs moto (the local AWS stand-in), a development dependency.")
        say("Install it with: pip install -e '.[dev]'   (or run: make demo)")
        return 1
    say(
        f"Latchkey demo: sam asks for {TARGET} in Slack, ann approves, and the access ends "
        f"by itself after {_duration(seconds)}. Slack and AWS are local stand-ins."
    )
    # mkdtemp, not TemporaryDirectory: on Python 3.11 the latter cannot be told to keep
    # the folder, and LATCHKEY_DEMO_KEEP=1 exists so people can read the logs afterwards.
    keep = os.environ.get("LATCHKEY_DEMO_KEEP") == "1"
    workdir = Path(tempfile.mkdtemp(prefix="latchkey-demo-"))
    private = _private_redis(workdir, say)
    if private is not None:
        url = private.url
    elif not _redis_ready(url, say):
        shutil.rmtree(workdir, ignore_errors=True)
        return 1
    flows_dir = workdir / "flows"
    flows_dir.mkdir()
    _write_flow(flows_dir, seconds)
    stack = LocalStack(workdir=workdir, flows_dir=flows_dir, redis_url=url, sweep_seconds=2)
    # moto's HTTP server logs every request to stderr through werkzeug; that noise would
    # interleave with the transcript (the processes' own logs go to files).
    werkzeug = logging.getLogger("werkzeug")
    werkzeug_level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    try:
        say("Starting Latchkey (migrations, web, worker, beat); this takes a few seconds…")
        stack.start()
        _show_processes(stack, url, say)
        _play(stack, seconds, say)
        return 0
    except KeyboardInterrupt:
        say("\ninterrupted; stopping every process")
        return 130
    except Exception as exc:  # any failure: show why, with the processes' own words
        # Waits list every call the stand-in saw; the head says what was missing.
        say(f"\nDEMO FAILED: {type(exc).__name__}: {_short(str(exc), 800)}")
        for log in sorted(workdir.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-60:]
            say(f"\n===== last {len(tail)} lines of {log.name}")
            say("\n".join(tail))
        return 1
    finally:
        stack.stop()
        if private is not None:
            private.stop()
        werkzeug.setLevel(werkzeug_level)
        if keep:
            say(f"\nKept the work folder (LATCHKEY_DEMO_KEEP=1): {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _private_redis(workdir: Path, say: Say) -> RedisServer | None:
    """A redis-server of the demo's own on a free loopback port, when one is installed."""
    if shutil.which("redis-server") is None:
        return None
    try:
        server = RedisServer(workdir / "redis").start()
    except Exception as exc:  # fall back to a Redis that runs already
        say(f"Could not start a private redis-server ({type(exc).__name__}: {exc}).")
        return None
    say(f"Redis: a private redis-server for the demo at {server.url}, stopped at the end")
    return server


def _redis_ready(url: str, say: Say) -> bool:
    """Whether `url` answers and is the demo's to use: empty, or an earlier demo's (then
    emptied). A DB holding anything else is someone's queue: refused, untouched."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        keys = client.dbsize()
        ours = bool(client.exists(DEMO_MARKER))
    except (redis.RedisError, ValueError) as exc:
        say(f"Redis is not reachable at {url} ({type(exc).__name__}: {exc}).")
        port = urlsplit(url).port or 6379
        say("The demo runs a real Celery worker on Redis. Install redis-server (the demo")
        say("then runs its own), or start Redis with:")
        say(f"  {START_REDIS.format(port=port)}")
        say("  (install it first if needed: sudo apt-get install -y redis-server)")
        say("or point LATCHKEY_DEMO_REDIS_URL at another Redis database.")
        return False
    if keys and not ours:
        say(f"Redis {url} holds {keys} keys the demo did not create: someone else's data.")
        say("The demo neither empties it nor runs a worker on it. Point LATCHKEY_DEMO_REDIS_URL")
        say("at an empty database (e.g. redis://127.0.0.1:6379/13), or install redis-server.")
        return False
    client.flushdb()
    client.set(DEMO_MARKER, "1")
    before = "an earlier demo's" if keys else "empty"
    say(f"Redis {url}: the demo's database (it was {before}; LATCHKEY_DEMO_REDIS_URL moves it)")
    return True


def _write_flow(flows_dir: Path, seconds: int) -> None:
    # The short grant is the one the demo plays; the longer ones make a realistic menu.
    lengths = sorted({seconds, 15 * 60, 60 * 60})
    durations = ", ".join(f"timedelta(seconds={n})" for n in lengths)
    text = FLOW_FILE.format(durations=durations, longest=lengths[-1])
    (flows_dir / "prod_admin.py").write_text(text)


def _show_processes(stack: LocalStack, url: str, say: Say) -> None:
    say("Running:")
    for what, where in (
        ("web", f"http://127.0.0.1:{stack.port}/slack/events (gunicorn, Slack-signed requests)"),
        ("worker", "Celery worker: grants, revokes, Slack messages"),
        ("beat", "Celery beat: expiry sweep every 2 s"),
        ("Redis", f"{url} (Celery broker)"),
        ("SQLite", stack.database_url.removeprefix("sqlite:///")),
        ("AWS", f"{stack.aws_endpoint} (moto: IAM stand-in)"),
        ("Slack", f"{stack.slack.base_url} (Web API stand-in; records every call)"),
    ):
        say(f"  {what:<7} {where}")
    stack.slack.add_user(REQUESTER, name="sam", email=REQUESTER_EMAIL, tz=REQUESTER_TZ)
    stack.slack.add_user(APPROVER, name="ann", email="ann@example.com", tz="America/New_York")
    stack.slack.add_channel(CHANNEL, name=CHANNEL_NAME)
    iam = stack.iam()
    iam.create_group(GroupName=GROUP)
    iam.create_user(UserName=REQUESTER_EMAIL)
    say(f"  people  sam (requester, {REQUESTER_TZ}), ann (approver, America/New_York)")
    say(f"  IAM     group {GROUP}, user {REQUESTER_EMAIL} (not a member)")


def _play(stack: LocalStack, seconds: int, say: Say) -> None:
    sam = scenes.Person(REQUESTER, REQUESTER_EMAIL)
    names: dict[str, str] = {**stack.slack.user_names(), CHANNEL: CHANNEL_NAME}

    def message(call: RecordedCall) -> str:
        return render_blocks(call.args.get("blocks"), call.args.get("text"), names=names)

    def in_group() -> bool:
        return REQUESTER_EMAIL in scenes.group_members(stack, GROUP)

    _heading(say, "sam types /access")
    view = scenes.open_request_modal(stack, sam)
    say(_box("modal, as sam sees it", render_view(view, names=names)))

    _heading(say, f"sam picks {TARGET} for {_duration(seconds)}, gives a reason, clicks Request")
    say(f"  Why: {REASON}")
    say("  The web process acks at once; the worker posts the card and DMs sam.")
    answer = scenes.submit_request(
        stack, sam, flow=FLOW, target=TARGET, seconds=seconds, reason=REASON, view=view
    )
    if answer.status != 200 or answer.body:
        raise DemoFailed(f"the modal did not close: HTTP {answer.status} {answer.body}")

    card = scenes.approval_card_for(stack, sam, timeout=30)
    _heading(say, f"#{CHANNEL_NAME} (card posted by Latchkey)")
    say(_box("message", message(card)))
    _heading(say, "sam's DM from Latchkey")
    say(_box("DM", message(scenes.dm_to(stack, sam, "was sent for approval", timeout=30))))

    _heading(say, "ann clicks Approve")
    clicked = scenes.click(stack, APPROVER, ids.APPROVE_ACTION, card)
    if clicked.status != 200:
        raise DemoFailed(f"the click was refused: HTTP {clicked.status} {clicked.body}")
    say(f"  Latchkey checks, at click time, that ann is an approver of the {FLOW} flow;")
    say(f"  the worker then adds {REQUESTER_EMAIL} to the IAM group {GROUP}.")
    granted_dm = scenes.dm_to(stack, sam, "You now have", timeout=60)
    _heading(say, f"#{CHANNEL_NAME} (card updated)")
    say(_box("message", message(scenes.card_update(stack, card, "Access granted", timeout=30))))
    _heading(say, "sam's DM from Latchkey")
    say(_box("DM", message(granted_dm)))
    _heading(say, "AWS IAM (moto), asked directly")
    _say_membership(say, in_group(), expected=True)

    expired_dm = _wait_for_expiry(stack, sam, scenes.request_id_on(card), say)
    _heading(say, "sam's DM from Latchkey")
    say(_box("DM", message(expired_dm)))
    _heading(say, f"#{CHANNEL_NAME} (final card)")
    say(_box("message", message(scenes.card_update(stack, card, "Access expired", timeout=30))))
    _heading(say, "AWS IAM (moto), asked directly")
    _say_membership(say, in_group(), expected=False)

    _heading(say, "audit trail (read from the database)")
    _show_audit(stack, names, say)
    say("")
    say("Done: requested, approved, granted and taken back on time, with a verified audit trail.")


def _duration(seconds: int) -> str:
    return format_duration(timedelta(seconds=seconds))


def _say_membership(say: Say, member: bool, *, expected: bool) -> None:
    say(f"IAM: {REQUESTER_EMAIL} is in {GROUP}: {'yes' if member else 'no'}")
    if member != expected:
        raise DemoFailed(f"IAM membership is {member}, expected {expected}")


@contextmanager
def _session(stack: LocalStack) -> Iterator[Session]:
    # Its own engine, disposed after: the demo must leave no SQLite handle open behind it.
    db = stack.database()
    try:
        with db.session() as session:
            yield session
    finally:
        db.dispose()


def _wait_for_expiry(
    stack: LocalStack, sam: scenes.Person, request_id: str, say: Say
) -> RecordedCall:
    """The 'access expired' DM; a line every few seconds so the pause reads as intended."""
    with _session(stack) as session:
        query = select(Grant.expires_at).where(Grant.request_id == uuid.UUID(request_id))  # type: ignore[arg-type]
        expires_at: datetime = session.execute(query).scalar_one()
    left = max(0, round(expires_at.timestamp() - time.time()))
    _heading(say, f"waiting {left}s for expiry (nobody clicks anything)")
    say(f"  The grant ends at {expires_at:%H:%M:%S} UTC: the worker's countdown task revokes it,")
    say("  and beat's sweep would if that task were lost. sam still has access until then.")
    # Generous: a loaded machine may be slow to revoke; failing here must mean a real fault.
    deadline = expires_at.timestamp() + 60
    while True:
        try:
            return scenes.dm_to(stack, sam, "expired", timeout=5)
        except TimeoutError:
            now = time.time()
            if now > deadline:
                raise DemoFailed("no 'access expired' DM a minute after the expiry") from None
            left = round(expires_at.timestamp() - now)
            say(f"  … {left}s left" if left > 0 else "  … due; revoking")


def _show_audit(stack: LocalStack, names: Mapping[str, str], say: Say) -> None:
    with _session(stack) as session:
        events = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
        say(f"{'seq':>3}  {'time (UTC)':<10} {'event':<9} {'actor':<9} details")
        for e in events:
            actor = "@" + names[e.actor] if e.actor in names else e.actor
            first, *more = _details(e.details, names)
            say(f"{e.seq:>3}  {e.at.astimezone(UTC):%H:%M:%S}   {e.event:<9} {actor:<9} {first}")
            for line in more:
                say(" " * 36 + line)
        result = AuditLog(AUDIT_KEY.encode()).verify(session)
    say(f"latchkey audit verify: {'ok' if result.ok else 'FAIL'}  {result.message}")
    if not result.ok:
        raise DemoFailed(f"audit chain: {result.message}")


# What an auditor reads first; the rest of an event's details follow in stored order.
_FIRST = ("reason", "why_decider", "principal", "expires_at", "cause", "duration_seconds")
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)>")


def _details(details: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    """An event's details as short `key=value` lines, mentions shown as @name."""
    rest = dict(details)
    parts = [f"{rest.pop('from')}→{rest.pop('to')}"] if "from" in rest and "to" in rest else []
    shown: set[str] = set()
    for key in sorted(rest, key=lambda k: _FIRST.index(k) if k in _FIRST else len(_FIRST)):
        # Only mentions are rewritten: the rest is stored raw, e.g. the reason as typed.
        text = _MENTION.sub(lambda m: "@" + names.get(m[1], m[1]), str(rest[key]))
        if key == "expires_at":  # an ISO stamp; the time of day is what a reader compares
            text = datetime.fromisoformat(text).astimezone(UTC).strftime("%H:%M:%S")
        # Skip empties and repeats (iam_user is the principal again): they only add width.
        if rest[key] not in (None, "", {}, []) and text not in shown:
            shown.add(text)
            parts.append(f"{key}={_short(text, 60)}")
    return wrap(", ".join(parts), 60, break_on_hyphens=False) or [""]


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _heading(say: Say, text: str) -> None:
    say("")
    say(f"── {text} ".ljust(WIDTH, "─"))


def _box(label: str, text: str) -> str:
    lines = text.splitlines() or [""]
    return "\n".join([f"┌ {label}", *(f"│ {line}" for line in lines[:-1]), f"└ {lines[-1]}"])
