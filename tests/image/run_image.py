"""Drive the built container image end to end: migrate, web, worker and beat from the image.

Run by scripts/image-test (as root) once the image is built and a container's filesystem is
mounted at ROOT with /dev and /proc bound in; the container runtime itself cannot start
containers on the CI machine (cgroup limits), so each process is started the way the
runtime would: `chroot --userspec=<image user> ROOT env --chdir=<WORKDIR> <ENTRYPOINT> <cmd>`
with the image's environment. The network is the host's, so the processes reach the
stand-ins for Slack and AWS (app.testing.stack.LocalStack) on 127.0.0.1, PostgreSQL over
TCP (a fresh database, dropped at the end) and Redis.

    .venv/bin/python tests/image/run_image.py --root ROOT --image localhost/latchkey:test

The last line is `N passed, M failed`; the exit status is 1 when anything failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
import redis  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from app.slack import ids  # noqa: E402
from app.testing.scenes import (  # noqa: E402
    approval_card_for,
    click,
    dm_to,
    group_members,
    new_person,
    submit_request,
)
from app.testing.stack import LocalStack  # noqa: E402
from tests.factories import APPROVER, GROUP_NAME, write_flow  # noqa: E402

# Where the flows go inside the container's filesystem (its /tmp): chroot sees nothing else.
FLOWS_IN_IMAGE = "/tmp/latchkey-image-test/flows"
# What the stack sets for the processes; everything else comes from the image's ENV.
STACK_KEYS = ("SLACK_", "LATCHKEY_", "AWS_")
STACK_NAMES = {"DATABASE_URL", "REDIS_URL", "PORT", "WEB_CONCURRENCY"}


class Image:
    """What `podman image inspect` says about how the image runs its processes."""

    def __init__(self, name: str, root: Path) -> None:
        inspected = json.loads(
            subprocess.run(
                ["podman", "image", "inspect", name], check=True, capture_output=True, text=True
            ).stdout
        )[0]
        config = inspected["Config"]
        self.name = name
        self.root = root
        self.user = config.get("User") or "root"
        self.workdir = config.get("WorkingDir") or "/"
        self.entrypoint: list[str] = config.get("Entrypoint") or []
        self.cmd: list[str] = config.get("Cmd") or []
        # podman reports a docker-format image's HEALTHCHECK beside Config, docker inside it.
        health = config.get("Healthcheck") or inspected.get("Healthcheck") or {}
        self.healthcheck: list[str] = health.get("Test") or []
        self.env = dict(item.split("=", 1) for item in config.get("Env") or [])

    def uid(self) -> int:
        name = self.user.split(":")[0]
        for line in (self.root / "etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2])
        raise LookupError(f"user {name} is not in the image's /etc/passwd")

    def prefix(self, program: list[str]) -> list[str]:
        """Run `program` as the container runtime would: chroot, image user, WORKDIR."""
        return [
            "chroot",
            f"--userspec={self.user}",
            str(self.root),
            "/usr/bin/env",
            f"--chdir={self.workdir}",
            *program,
        ]


class ImageStack(LocalStack):
    """LocalStack whose migrate, web, worker and beat are the image's, with its environment."""

    def __init__(self, image: Image, **kwargs: Any) -> None:
        super().__init__(command_prefix=image.prefix(image.entrypoint), **kwargs)
        self.image = image

    @property
    def env(self) -> dict[str, str]:
        stack = super().env
        env = dict(self.image.env)
        env.update({k: v for k, v in stack.items() if k.startswith(STACK_KEYS) or k in STACK_NAMES})
        # The image's own paths, not the host's.
        env["LATCHKEY_FLOWS"] = FLOWS_IN_IMAGE
        env["LATCHKEY_BEAT_SCHEDULE_FILE"] = self.image.env["LATCHKEY_BEAT_SCHEDULE_FILE"]
        env["HOME"] = self.image.workdir
        return env


def processes_in(root: Path) -> list[tuple[int, int, str]]:
    """(pid, uid, command line) of every process whose root directory is `root`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "root") != str(root):
                continue
            uid = next(
                int(line.split()[1])
                for line in (entry / "status").read_text().splitlines()
                if line.startswith("Uid:")
            )
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, StopIteration):
            continue
        found.append((int(entry.name), uid, cmdline))
    return found


def fresh_database(admin_url: str) -> tuple[str, str]:
    name = f"latchkey_image_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name, make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def run(self, name: str, check: Callable[[], object]) -> bool:
        started = time.monotonic()
        try:
            check()
        except Exception:
            self.failed += 1
            print(f"FAIL {name} ({time.monotonic() - started:.1f}s)")
            traceback.print_exc(file=sys.stdout)
            return False
        self.passed += 1
        print(f"PASS {name} ({time.monotonic() - started:.1f}s)")
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, type=Path, help="the mounted container rootfs")
    parser.add_argument("--image", default="localhost/latchkey:test")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "LATCHKEY_IMAGE_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL admin URL; a fresh database is created beside it and dropped",
    )
    parser.add_argument(
        "--redis",
        default=os.environ.get("LATCHKEY_IMAGE_REDIS_URL", "redis://127.0.0.1:6379/10"),
        help="a Redis database of its own: flushed before and after",
    )
    args = parser.parse_args(argv)
    root = args.root.resolve()
    image = Image(args.image, root)
    checks = Checks()

    def image_config() -> None:
        assert image.entrypoint == ["latchkey"], image.entrypoint
        assert image.cmd == ["web"], image.cmd
        assert image.healthcheck == ["CMD", "latchkey", "health"], image.healthcheck
        assert image.user.split(":")[0] == "latchkey", image.user
        assert image.uid() != 0

    checks.run(
        "image config: ENTRYPOINT latchkey, CMD web, HEALTHCHECK latchkey health, USER latchkey",
        image_config,
    )

    flows_host = root / FLOWS_IN_IMAGE.lstrip("/")
    shutil.rmtree(flows_host.parent, ignore_errors=True)
    flows_host.mkdir(parents=True)
    write_flow(flows_host)
    workdir = Path(tempfile.mkdtemp(prefix="latchkey-image-"))
    broker = redis.Redis.from_url(args.redis)
    made: list[tuple[str, str]] = []  # (name, URL) of the fresh database

    def services() -> None:
        broker.flushdb()
        made.append(fresh_database(args.postgres))

    stack: ImageStack | None = None
    try:
        if checks.run(f"Redis ({args.redis}) and a fresh PostgreSQL database", services):
            stack = ImageStack(
                image,
                workdir=workdir,
                flows_dir=flows_host,
                redis_url=args.redis,
                database_url=made[0][1],
            )
            try:
                if checks.run("migrate, worker, beat and web start from the image", stack.start):
                    _exercise(stack, image, checks)
            finally:
                stack.stop()
                if checks.failed:
                    print(stack.all_logs())
    finally:
        if made:
            broker.flushdb()
            drop_database(args.postgres, made[0][0])
        shutil.rmtree(flows_host.parent, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


def _exercise(stack: ImageStack, image: Image, checks: Checks) -> None:
    def non_root() -> None:
        uid = image.uid()
        running = processes_in(image.root)
        commands = " | ".join(c for _, _, c in running)
        assert running, "no process runs inside the image's root"
        for expected in ("gunicorn", "worker", "beat"):
            assert expected in commands, f"no {expected} process in the image: {commands}"
        wrong = [(pid, u, c) for pid, u, c in running if u != uid]
        assert not wrong, f"processes not running as latchkey (uid {uid}): {wrong}"
        print(f"     {len(running)} processes in the image, all uid {uid} (latchkey)")

    checks.run("every process in the image runs as the non-root user latchkey", non_root)

    def request_to_grant_and_back() -> None:
        stack.slack.add_user(APPROVER, name="ann", email="ann@example.com")
        stack.iam().create_group(GroupName=GROUP_NAME)
        person = new_person(stack)
        response = submit_request(
            stack, person, flow="test-admin", target="admins", seconds=4, reason="image test"
        )
        assert response.status == 200 and not response.body, response.body
        card = approval_card_for(stack, person)
        assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
        dm_to(stack, person, "You now have", timeout=30)
        assert group_members(stack, GROUP_NAME) == [person.email]
        dm_to(stack, person, "expired", timeout=30)
        assert person.email not in group_members(stack, GROUP_NAME)

    checks.run("/access request → approve → IAM group → expiry → out", request_to_grant_and_back)

    def healthcheck() -> None:
        # The HEALTHCHECK exactly as the image declares it (["CMD", …]), as the runtime runs it.
        assert image.healthcheck[:1] == ["CMD"], image.healthcheck
        done = subprocess.run(
            image.prefix(image.healthcheck[1:]),
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        report = json.loads(done.stdout)
        assert report["status"] == "ok", report

    checks.run("HEALTHCHECK (latchkey health) in the image exits 0", healthcheck)


if __name__ == "__main__":
    sys.exit(main())
