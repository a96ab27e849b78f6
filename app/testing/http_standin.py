"""What every local HTTP stand-in shares: a threaded server on 127.0.0.1, port 0, served
from a daemon thread, stopped with `stop()` or at the end of a `with` block; handlers that
keep the test output clean."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass  # keep test output clean


class HttpStandIn:
    _server: ThreadingHTTPServer | None = None

    def _listen(self, server: ThreadingHTTPServer) -> Self:
        server.daemon_threads = True
        self._server = server
        threading.Thread(
            target=server.serve_forever, args=(0.05,), name=type(self).__name__, daemon=True
        ).start()
        return self

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()  # type: ignore[attr-defined,no-any-return]

    def __exit__(self, *exc: object) -> None:
        self.stop()
