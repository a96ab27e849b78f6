"""An admin panel with one shared admin login, as the custom-provider example for shared
accounts lends it (flows/examples/provider_panel_account.py): a vendor's web console whose
API lets an operator set an account's password and note, and end its sessions.

The API (JSON; `Authorization: Bearer <operator token>` or 401):
- `GET /api/accounts/{name}` → `{"name", "note"}` (404 for no such account);
- `PUT /api/accounts/{name}/password` `{"password"}` → 204; at least 16 characters or 422;
- `PUT /api/accounts/{name}/note` `{"note"}` → 204;
- `DELETE /api/accounts/{name}/sessions` → `{"ended": n}`.
People log in with `POST /login` `{"name", "password"}` → 200 `{"session"}` or 401, and a
session works until ended (`GET /whoami` with `Authorization: Session <id>`, or 401).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from http.server import ThreadingHTTPServer
from typing import Any, Self

from app.testing.http_standin import HttpStandIn, QuietHandler

_ACCOUNT = re.compile(r"^/api/accounts/([a-z0-9_-]+)(/password|/note|/sessions)?$")


class PanelStandIn(HttpStandIn):
    def __init__(self, operator_token: str, accounts: dict[str, str]) -> None:
        self.operator_token = operator_token
        self._lock = threading.Lock()
        self._passwords = dict(accounts)
        self._notes = dict.fromkeys(accounts, "")
        self._sessions: dict[str, str] = {}  # session id -> account

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_in(self, name: str, password: str) -> str | None:
        """A session id, as the console's login form would give one; None when refused."""
        with self._lock:
            return self._login({"name": name, "password": password})

    def session_works(self, session: str) -> bool:
        with self._lock:
            return session in self._sessions

    def note(self, name: str) -> str:
        with self._lock:
            return self._notes[name]

    def start(self) -> Self:
        panel = self

        class Handler(QuietHandler):
            def _answer(self, status: int, body: Any = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                status, answer = panel._handle(
                    self.command, self.path, self.headers.get("Authorization"), body
                )
                self._answer(status, answer)

            do_GET = do_PUT = do_POST = do_DELETE = _serve

        return self._listen(ThreadingHTTPServer(("127.0.0.1", 0), Handler))

    def _handle(
        self, method: str, path: str, authorization: str | None, body: dict[str, Any]
    ) -> tuple[int, Any]:
        with self._lock:
            if method == "POST" and path == "/login":
                return (200, {"session": s}) if (s := self._login(body)) else (401, None)
            if method == "GET" and path == "/whoami":
                session = (authorization or "").removeprefix("Session ")
                who = self._sessions.get(session)
                return (200, {"name": who}) if who else (401, {"error": "not logged in"})
            if authorization != f"Bearer {self.operator_token}":
                return 401, {"error": "operator token required"}
            match = _ACCOUNT.match(path)
            if match is None or match[1] not in self._passwords:
                return 404, {"error": "no such account"}
            name, part = match[1], match[2]
            if method == "GET" and part is None:
                return 200, {"name": name, "note": self._notes[name]}
            if method == "PUT" and part == "/password":
                if len(str(body.get("password", ""))) < 16:
                    return 422, {"error": "password: at least 16 characters"}
                self._passwords[name] = str(body["password"])
                return 204, None
            if method == "PUT" and part == "/note":
                self._notes[name] = str(body.get("note", ""))
                return 204, None
            if method == "DELETE" and part == "/sessions":
                ended = [s for s, who in self._sessions.items() if who == name]
                for session in ended:
                    del self._sessions[session]
                return 200, {"ended": len(ended)}
            return 405, {"error": f"{method} not allowed here"}

    def _login(self, body: dict[str, Any]) -> str | None:
        name, password = str(body.get("name", "")), str(body.get("password", ""))
        if self._passwords.get(name) != password:
            return None
        session = secrets.token_hex(8)
        self._sessions[session] = name
        return session
