"""A private Redis server on a free loopback port: one per test worker, and one for each
fault test that stops, restarts or empties its broker while the others keep theirs.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import redis

from app.testing.stack import free_port, wait_until


class RedisServer:
    def __init__(self, workdir: Path, *, keep_data: bool = True) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.workdir = workdir
        # Kept data survives a stop (fault tests); a test worker's Redis needs none.
        self.keep_data = keep_data
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        # An append-only file keeps the data across a stop, as a production Redis would;
        # `restart_empty` deletes it to model a Redis that comes back with nothing.
        self._process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                *(
                    ["--appendonly", "yes", "--appendfsync", "always"]
                    if self.keep_data
                    else ["--appendonly", "no"]
                ),
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(self._answers, 10, f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """Take Redis away: every connection drops, nothing answers on the port."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)
        self._process = None

    def kill_and_forget(self) -> None:
        """Kill Redis and delete what it kept: the next start() comes back empty."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(5)
            self._process = None
        for path in self.workdir.glob("appendonly*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
