"""Run the real Latchkey processes locally against stand-ins for Slack and AWS.

Used by the end-to-end tests and by `latchkey demo`: gunicorn serving /slack/events,
a Celery worker and beat on real Redis, SQLite or PostgreSQL, a moto server for AWS and
the Slack Web API stand-in. Each process logs to a file in the work folder.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from app.testing.aws_faults import MOTO_ACCOUNT_HEADER, AwsFaultProxy
from app.testing.moto import forget as forget_aws
from app.testing.slack_driver import SlackDriver
from app.testing.slack_standin import SlackStandIn

SIGNING_SECRET = "local-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-local-stand-in-token"
AUDIT_KEY = "local-audit-key-0123456789abcdef"
# The Latchkey admin of every local stack (LATCHKEY_ADMINS): may `/access revoke` anything.
ADMIN = "U0ADMIN01"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class LocalStack:
    def __init__(
        self,
        *,
        workdir: Path,
        flows_dir: Path,
        redis_url: str,
        database_url: str | None = None,
        sweep_seconds: float = 1.0,
        # Rare on its own (every pass reads every provider: on a stack that lives through a
        # whole test run that was a fifth of the run's CPU at 2 s); a test that needs a pass
        # starts one with reconcile_now or reconcile_until instead of waiting for the period.
        reconcile_seconds: float = 15.0,
        extra_env: dict[str, str] | None = None,
        # One process per pool: each costs its start-up and its share of the idle polling,
        # 40-odd stacks a test run; a story that needs two tasks at once asks for 2.
        worker_concurrency: int = 1,
        command_prefix: list[str] | None = None,
        migrated: bool = False,
    ) -> None:
        self.workdir = workdir
        # How a process is started: `<prefix> web`, `<prefix> migrate`, … By default this
        # checkout's code; tests/image/run_image.py runs the built container image instead.
        self.command_prefix = list(command_prefix or [sys.executable, "-m", "app.cli"])
        self.flows_dir = flows_dir
        self.redis_url = redis_url
        self.database_url = database_url or f"sqlite:///{workdir / 'latchkey.db'}"
        self.sweep_seconds = sweep_seconds
        self.reconcile_seconds = reconcile_seconds
        self.extra_env = dict(extra_env or {})
        self.worker_concurrency = worker_concurrency
        # True: the database is already at head (a test's copy of a migrated template), so
        # start does not run `latchkey migrate` first.
        self.migrated = migrated
        self.port = free_port()
        self.worker_metrics_port = free_port()
        self.slack = SlackStandIn(token=BOT_TOKEN)
        self._moto: Any = None
        # An AWS account of its own: moto keeps one state per process, which a stack
        # sharing the test worker with another would otherwise see (and once reset for all).
        self.aws_account = f"{secrets.randbelow(10**12):012d}"
        # The processes reach moto through this proxy, so a test can make AWS refuse calls.
        self.aws_faults = AwsFaultProxy("http://placeholder", account=self.aws_account)
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._clients_lock = threading.Lock()
        self._iam: Any = None
        self._database: Any = None
        self._launched_at: dict[str, int] = {}
        # Clicks and commands carry response_urls served (and recorded) by the Slack stand-in.
        self.driver = SlackDriver(
            f"http://127.0.0.1:{self.port}/slack/events",
            SIGNING_SECRET,
            response_urls=self.slack.response_url,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        # moto's werkzeug server logs every request; the process logs are what matter here.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.slack.start()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        self.aws_faults.upstream = self.aws_endpoint
        self.aws_faults.start()
        if not self.migrated:
            self._run(["migrate"], "migrate")
        # Started side by side: each spends its first seconds importing, which overlaps
        # (web is healthy only once the worker and beat have reported in anyway).
        for name in ("worker", "beat", "web"):
            self._launch(name)
        for name in ("worker", "beat", "web"):
            self._wait_ready(name)

    def stop(self, *, kill: bool = False) -> None:
        """Stop every process: asked (SIGTERM) first, then waited for, so their clean
        shutdowns overlap instead of queueing one behind another.

        `kill`: SIGKILL instead, for a test's stack that nobody needs any more. Its clean
        shutdown is not what that test checked (tests that do stop processes themselves),
        and waiting for one cost some 3 s a stack, 30-odd stacks a run.
        """
        sig = signal.SIGKILL if kill else signal.SIGTERM
        for process in list(self._processes.values()):
            if process.poll() is None:
                os.killpg(process.pid, sig)
        for name in list(self._processes):
            self.stop_process(name, sig)
        self.aws_faults.stop()
        if self._database is not None:
            self._database.dispose()
            self._database = None
        self._iam = None
        if self._moto is not None:
            try:
                forget_aws(self.aws_account)  # what it held must not slow the next stack
            finally:
                self._moto.stop()
            self._moto = None
        self.slack.stop()

    # -- environment -----------------------------------------------------------------------

    @property
    def aws_endpoint(self) -> str:
        host, port = self._moto.get_host_and_port()
        return f"http://{host}:{port}"

    @property
    def env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "LATCHKEY_", "AWS_"))
        }
        env.update(
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=self.slack.base_url,
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            LATCHKEY_FLOWS=str(self.flows_dir),
            LATCHKEY_AUDIT_KEY=AUDIT_KEY,
            LATCHKEY_SWEEP_SECONDS=str(self.sweep_seconds),
            LATCHKEY_RECONCILE_SECONDS=str(self.reconcile_seconds),
            LATCHKEY_REVOKE_RETRY_SECONDS="1",
            LATCHKEY_ADMINS=ADMIN,
            LATCHKEY_BEAT_SCHEDULE_FILE=str(self.workdir / "celerybeat-schedule"),
            # Stacks run side by side (parallel test workers): no fixed port.
            LATCHKEY_WORKER_METRICS_PORT=str(self.worker_metrics_port),
            PORT=str(self.port),
            WEB_CONCURRENCY="1",
            AWS_ENDPOINT_URL=self.aws_faults.url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            PYTHONUNBUFFERED="1",
            # Temp files (metrics, Celery's pool) in the stack's folder: a stack stopped with
            # SIGKILL left hundreds of folders a test run in /tmp.
            TMPDIR=str(self.workdir / "tmp"),
        )
        env.update(self.extra_env)
        return env

    def iam(self) -> Any:
        """The stack's IAM (moto, this stack's account), one client for the stack's life:
        tests poll it, and building a boto3 client costs some 50 ms of CPU each time."""
        with self._clients_lock:
            if self._iam is None:
                import boto3

                client = boto3.client(
                    "iam",
                    endpoint_url=self.aws_endpoint,
                    region_name="us-east-1",
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                )

                def in_our_account(request: Any, **_: Any) -> None:
                    request.headers[MOTO_ACCOUNT_HEADER] = self.aws_account

                client.meta.events.register("before-send.iam", in_our_account)
                self._iam = client
            return self._iam

    def database(self) -> Any:
        """The stack's database, one engine (and pool) for the stack's life: tests poll it,
        and a new engine each time connected anew each time."""
        from app.db import Database

        with self._clients_lock:
            if self._database is None:
                self._database = Database(self.database_url)
            return self._database

    # -- beat's periodic work, started now ------------------------------------------------

    def reconcile_now(self, timeout: float = 30) -> dict[str, int]:
        """One reconciliation pass, sent to the broker as beat sends it and run by the real
        worker, waited for: its counts from the worker's log. A pass that found another
        still running did nothing, so it is asked again."""
        from celery import Celery

        from app.worker.celery_app import MESSAGES
        from app.worker.queue import RECONCILE

        deadline = time.monotonic() + timeout
        sender = Celery("latchkey-test", broker=self.redis_url)
        try:
            while True:
                task_id = str(uuid.uuid4())
                pattern = re.compile(rf"reconcile (\{{.*?\}}) task_id={task_id}")
                mark = self.log_mark()
                sender.send_task(RECONCILE, queue=MESSAGES, task_id=task_id)
                said = wait_until(
                    lambda p=pattern, m=mark: p.search(self.log("worker", m)),
                    max(deadline - time.monotonic(), 0.1),
                    "a reconciliation pass",
                )
                counts: dict[str, int] = ast.literal_eval(said.group(1))
                if not counts.get("skipped"):
                    return counts
        finally:
            sender.close()

    def reconcile_until(self, check: Any, timeout: float, what: str) -> Any:
        """Reconciliation passes one after another until `check()` holds."""
        return wait_until(lambda: self.reconcile_now() and check(), timeout, what)

    # -- processes -------------------------------------------------------------------------

    def _command(self, name: str) -> list[str]:
        base = self.command_prefix
        if name == "web":
            return [*base, "web"]
        if name == "beat":
            return [*base, "beat"]
        if name.startswith("worker"):
            return [
                *base,
                "worker",
                "--concurrency",
                str(self.worker_concurrency),
                "--name",
                f"{name}@%h",
            ]
        raise ValueError(name)

    def _run(self, args: list[str], name: str) -> None:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            done = subprocess.run(
                [*self.command_prefix, *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=120,
                check=False,
            )
        if done.returncode != 0:
            raise RuntimeError(f"latchkey {' '.join(args)} failed:\n{self.log(name)}")

    def start_process(self, name: str) -> None:
        self._launch(name)
        self._wait_ready(name)

    def _launch(self, name: str) -> None:
        # Readiness is read from what this run logs: a restarted process's log already
        # holds the "ready." of the run before (a restart then looked ready at once).
        self._launched_at[name] = len(self.log(name))
        log = (self.workdir / f"{name}.log").open("ab")
        self._processes[name] = subprocess.Popen(
            self._command(name),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def _wait_ready(self, name: str) -> None:
        if name == "web":
            # Healthy means the whole deployment (fresh worker and beat heartbeats too), which
            # a restarted worker on a loaded machine can take longer than 30 s to show.
            wait_until(self._healthy, 90, "the web process to answer /healthz")
        elif name.startswith("worker"):
            wait_until(
                lambda: self._pools_ready(name) or self._died(name), 60, f"{name} to be ready"
            )
        self._raise_if_died(name)

    def _pools_ready(self, name: str) -> bool:
        """Both pools `latchkey worker` runs (app/worker/pools.py) said ready since launch."""
        said = self.log(name, {name: self._launched_at.get(name, 0)})
        return set(re.findall(r"-(access|messages)@\S+ ready\.", said)) == {"access", "messages"}

    def _died(self, name: str) -> bool:
        return self._processes[name].poll() is not None

    def _raise_if_died(self, name: str) -> None:
        if self._died(name):
            raise RuntimeError(
                f"{name} exited with {self._processes[name].returncode}:\n{self.log(name)}"
            )

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        process = self._processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def pids(self) -> dict[str, int]:
        """The running processes by name: the same pids later mean nobody restarted them."""
        return {n: p.pid for n, p in self._processes.items() if p.poll() is None}

    def kill_process(self, name: str) -> None:
        """SIGKILL, as when a machine dies: no clean shutdown, no acks."""
        self.stop_process(name, signal.SIGKILL)

    def log(self, name: str, since: dict[str, int] | None = None) -> str:
        """What process `name` logged, or only what it logged after `since` (a log_mark)."""
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return text[(since or {}).get(name, 0) :]

    def log_mark(self) -> dict[str, int]:
        """Where each process's log ends now: a test on a shared stack reads its own part."""
        return {p.stem: len(p.read_text(errors="replace")) for p in self.workdir.glob("*.log")}

    def all_logs(self) -> str:
        return "\n".join(
            f"===== {p.name}\n{p.read_text(errors='replace')[-60000:]}"
            for p in sorted(self.workdir.glob("*.log"))
        )

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
            return json.loads(response.read())

    def _healthy(self) -> bool:
        self._raise_if_died("web")
        try:
            return self.health().get("status") == "ok"
        except OSError:
            return False
