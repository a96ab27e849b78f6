"""A local stand-in for a company's OpenID Connect provider (Okta, Entra ID, Google…), as
strict as the specifications: discovery (OpenID Connect Discovery 1.0), the authorization
endpoint with a sign-in form a real browser fills in, the token endpoint (RFC 6749 §4.1.3:
client_secret_basic, single-use codes bound to their redirect_uri, `invalid_grant`,
`invalid_client`) and the JWKS of the RS256 key signing ID tokens (iss, sub, aud, exp, iat,
nonce, email, email_verified). Bound to port 0."""

from __future__ import annotations

import base64
import html
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

CODE_SECONDS = 60


@dataclass
class Account:
    subject: str
    email: str
    email_verified: bool = True


class OidcStandIn:
    def __init__(self, *, client_id: str, client_secret: str, redirect_uri: str = "") -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.redirect_uris: set[str] = {redirect_uri} if redirect_uri else set()
        self.accounts: dict[str, Account] = {}
        self._key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(4)})
        self._codes: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.token_requests = 0

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add_account(self, subject: str, email: str, *, email_verified: bool = True) -> None:
        self.accounts[subject] = Account(subject, email, email_verified)

    # -- the endpoints ---------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "scopes_supported": ["openid", "email", "profile"],
        }

    def _authorize_problem(self, q: dict[str, str]) -> str | None:
        if q.get("client_id") != self.client_id:
            return "unknown client_id"
        if q.get("redirect_uri") not in self.redirect_uris:
            return "redirect_uri is not registered for this client"
        if q.get("response_type") != "code":
            return "response_type must be code"
        if "openid" not in q.get("scope", "").split():
            return "scope must include openid"
        if not q.get("state") or not q.get("nonce"):
            return "state and nonce are required"
        return None

    def _sign_in_form(self, q: dict[str, str]) -> str:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in q.items()
        )
        options = "".join(
            f'<option value="{html.escape(a.subject)}">{html.escape(a.email)}</option>'
            for a in self.accounts.values()
        )
        return (
            "<!doctype html><title>Sign in</title><h1>Example IdP: sign in</h1>"
            f'<form method="post" action="/authorize">{hidden}'
            f'<select id="account" name="account">{options}</select>'
            '<button id="signin" type="submit">Sign in</button></form>'
        )

    def _issue_code(self, form: dict[str, str]) -> str:
        problem = self._authorize_problem(form)
        account = self.accounts.get(form.get("account", ""))
        if problem or account is None:
            raise ValueError(problem or "unknown account")
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = {
                "redirect_uri": form["redirect_uri"],
                "nonce": form["nonce"],
                "account": account,
                "expires": time.time() + CODE_SECONDS,
            }
        query = urllib.parse.urlencode({"code": code, "state": form["state"]})
        return f"{form['redirect_uri']}?{query}"

    def _token(self, authorization: str | None, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.token_requests += 1
        expected = base64.b64encode(
            f"{urllib.parse.quote(self.client_id)}:{urllib.parse.quote(self.client_secret)}".encode()
        ).decode()
        if authorization != f"Basic {expected}":
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)  # single use
        if grant is None or grant["expires"] < time.time():
            return 400, {"error": "invalid_grant", "error_description": "unknown or used code"}
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"}
        account: Account = grant["account"]
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": account.subject,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": grant["nonce"],
            "email": account.email,
            "email_verified": account.email_verified,
        }
        header = {"alg": "RS256", "kid": self._key.kid}
        id_token = jwt.encode(header, claims, self._key)
        return 200, {
            "access_token": secrets.token_urlsafe(16),
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        }

    # -- the server ------------------------------------------------------------------------

    def start(self) -> Self:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: bytes, kind: str, location: str = "") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                if location:
                    self.send_header("Location", location)
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, body: dict[str, Any]) -> None:
                self._send(status, json.dumps(body).encode(), "application/json")

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query))
                if parts.path == "/.well-known/openid-configuration":
                    return self._json(200, standin.discovery())
                if parts.path == "/jwks":
                    keys = KeySet([standin._key]).as_dict(private=False)
                    return self._json(200, keys)
                if parts.path == "/authorize":
                    problem = standin._authorize_problem(query)
                    if problem:  # never redirected: the redirect_uri may be the problem
                        return self._send(400, problem.encode(), "text/plain")
                    page = standin._sign_in_form(query).encode()
                    return self._send(200, page, "text/html; charset=utf-8")
                return self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                path = urllib.parse.urlsplit(self.path).path
                if path == "/authorize":
                    try:
                        return self._send(302, b"", "text/plain", standin._issue_code(form))
                    except ValueError as exc:
                        return self._send(400, str(exc).encode(), "text/plain")
                if path == "/token":
                    status, body = standin._token(self.headers.get("Authorization"), form)
                    return self._json(status, body)
                return self._json(404, {"error": "not_found"})

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="oidc-standin", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
