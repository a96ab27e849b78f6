"""A local stand-in for the Microsoft identity platform (client-credentials tokens) and the
Microsoft Graph v1.0 calls Latchkey makes, over HTTPS because msal refuses http authorities.

start() makes a throwaway CA and a certificate it signs for 127.0.0.1 and localhost; `ca_file`
is the CA's PEM. Give msal `instance_discovery=False` and, as `http_client`, a requests.Session
with `trust_env=False` and `verify=ca_file` (REQUESTS_CA_BUNDLE would otherwise win).

Imitated: /{tenant}/v2.0/.well-known/openid-configuration; the v2.0 token endpoint for
client_credentials (401 invalid_client AADSTS7000215 for a wrong secret, 400 unauthorized_client
AADSTS700016 for an unknown client id, 400 invalid_scope AADSTS1002012 for any scope but
https://graph.microsoft.com/.default). Graph wants a token issued here (else 401
InvalidAuthenticationToken): users by id, userPrincipalName or mail; groups by id; members
(`$top`, a full @odata.nextLink); members/$ref add (400 when already a member) and remove (404
when not one); PIM for Groups assignmentScheduleRequests (adminAssign, adminUpdate, adminExtend,
adminRemove; RoleAssignmentExists, RoleAssignmentDoesNotExist) and assignmentScheduleInstances
(a $filter on groupId or principalId is required). An active PIM member assignment makes its
principal a member and ends by itself at endDateTime, as in Entra. 429 with Retry-After on
demand. Stricter than Graph: unknown query options are refused, and a PIM request without a
justification fails the JustificationRule (Entra's default policy asks for one).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from app.testing.http_standin import HttpStandIn, QuietHandler

SCOPE = "https://graph.microsoft.com/.default"
PIM = "/v1.0/identityGovernance/privilegedAccess/group"
_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")
_CLAUSE = re.compile(r"(groupId|principalId|accessId) eq '([^']*)'")
_ALREADY = (
    "One or more added object references already exist for the following modified properties: "
    "'members'."
)
Answer = tuple[int, dict[str, Any] | None, dict[str, str]]


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str, **headers: str) -> None:
        super().__init__(message)
        inner = {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                 "request-id": str(uuid.uuid4()),
                 "client-request-id": str(uuid.uuid4())}  # fmt: skip
        error = {"code": code, "message": message, "innerError": inner}
        self.answer: Answer = (status, {"error": error}, headers)


def _not_found(ident: str) -> _Refusal:
    return _Refusal(404, "Request_ResourceNotFound", f"Resource '{ident}' does not exist or one "
                    "of its queried reference-property objects are not present.")  # fmt: skip


def _stamp(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    spec = "microseconds" if moment.microsecond else "seconds"  # what was sent comes back
    return moment.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def _moment(value: Any, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
        assert moment.tzinfo is not None  # a DateTimeOffset: a bare local time means nothing
        return moment
    except (TypeError, ValueError, AssertionError):
        raise _Refusal(400, "BadRequest", f"{what} is not an ISO 8601 time with offset") from None


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate it signs: the (CA, cert, key) PEM files."""
    now, ca_key, key = datetime.now(UTC), *(ec.generate_private_key(ec.SECP256R1()) for _ in "ab")
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Latchkey Graph stand-in CA")])

    def build(name: x509.Name, public: Any, ca: bool) -> x509.CertificateBuilder:
        # Key identifiers too: strict verifiers (Python 3.13's default) insist on them.
        return (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name)
                .public_key(public).serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(minutes=5))
                .not_valid_after(now + timedelta(days=7))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    ca_key.public_key()), critical=False))  # fmt: skip

    ca = build(ca_name, ca_key.public_key(), True).sign(ca_key, hashes.SHA256())
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    leaf = (build(subject, key.public_key(), False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # fmt: skip
    pem, files = serialization.Encoding.PEM, (folder / "ca.pem", folder / "c.pem", folder / "k.pem")
    files[0].write_bytes(ca.public_bytes(pem))
    files[1].write_bytes(leaf.public_bytes(pem))
    files[2].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return files


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The handshake happens on the request's own thread, not in accept(): a client that
        # stalls or distrusts the certificate cannot hold up the server.
        try:
            request.settimeout(10)
            tls = self.context.wrap_socket(request, server_side=True)
        except OSError:
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


@dataclass
class _Assignment:
    id: str
    start: datetime
    end: datetime | None  # None: permanent


class GraphStandIn(HttpStandIn):
    def __init__(self, tenant_id: str, client_id: str, client_secret: str) -> None:
        self.tenant_id, self.client_id, self.client_secret = tenant_id, client_id, client_secret
        self._lock = threading.Lock()
        self._folder: Path | None = None
        self._users: dict[str, str] = {}  # id -> email (userPrincipalName and mail)
        self._groups: dict[str, str] = {}  # id -> displayName
        self._plain: dict[str, set[str]] = {}  # group id -> standing member ids
        self._pim: dict[tuple[str, str, str], _Assignment] = {}  # (group, principal, accessId)
        self._tokens: dict[str, float] = {}  # access token -> expiry (epoch)
        self._throttled, self._retry_after = 0, 1
        self.tokens_issued = 0
        self.calls: list[tuple[str, str]] = []  # (method, path without query), refused ones too

    # -- the test's side -------------------------------------------------------------------

    @property
    def graph_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def authority(self) -> str:
        return f"{self.graph_url}/{self.tenant_id}"

    @property
    def ca_file(self) -> str:
        assert self._folder is not None, "start() first"
        return str(self._folder / "ca.pem")

    def add_user(self, email: str) -> str:
        """A user whose userPrincipalName and mail are `email`; its object id."""
        with self._lock:
            self._users[user_id := str(uuid.uuid4())] = email
            return user_id

    def add_group(self, display_name: str) -> str:
        with self._lock:
            self._groups[group_id := str(uuid.uuid4())] = display_name
            self._plain[group_id] = set()
            return group_id

    def add_member(self, group_id: str, user_id: str) -> None:
        """A standing (non-PIM) membership."""
        with self._lock:
            self._plain[group_id].add(user_id)

    def add_pim_assignment(self, group_id: str, user_id: str, end: datetime | None) -> None:
        """An active PIM member assignment from now until `end` (None: permanent)."""
        with self._lock:
            key, now = (group_id, user_id, "member"), datetime.now(UTC)
            self._pim[key] = _Assignment(f"{group_id}_member_{uuid.uuid4()}", now, end)

    def members(self, group_id: str) -> set[str]:
        """Standing members and principals with an active PIM member assignment."""
        with self._lock:
            self._expire()
            return self._members(group_id)

    def pim_assignments(self, group_id: str) -> dict[str, datetime | None]:
        """Live PIM member assignments: principal id -> end (None: permanent)."""
        with self._lock:
            self._expire()
            return {user: a.end for user, a in self._pim_members(group_id)}

    def throttle(self, count: int, retry_after: int = 1) -> None:
        """The next `count` Graph calls are answered 429 with Retry-After: `retry_after`."""
        with self._lock:
            self._throttled, self._retry_after = count, retry_after

    def _pim_members(self, gid: str) -> list[tuple[str, _Assignment]]:
        return [(u, a) for (g, u, access), a in self._pim.items() if (g, access) == (gid, "member")]

    def _members(self, gid: str) -> set[str]:
        now = datetime.now(UTC)
        return self._plain[gid] | {user for user, a in self._pim_members(gid) if a.start <= now}

    def _expire(self) -> None:
        now = datetime.now(UTC)
        for key in [k for k, a in self._pim.items() if a.end and a.end <= now]:
            del self._pim[key]

    # -- identity --------------------------------------------------------------------------

    @staticmethod
    def _aad(status: int, error: str, number: int, text: str) -> Answer:
        now = datetime.now(UTC)
        when, trace, correlation = f"{now:%Y-%m-%d %H:%M:%SZ}", uuid.uuid4(), uuid.uuid4()
        description = (f"AADSTS{number}: {text} Trace ID: {trace} Correlation ID: {correlation} "
                       f"Timestamp: {when}")  # fmt: skip
        return status, {"error": error, "error_description": description, "error_codes": [number],
                        "timestamp": when, "trace_id": str(trace),
                        "correlation_id": str(correlation),
                        "error_uri": f"https://login.microsoftonline.com/error?code={number}",
                        }, {}  # fmt: skip

    def _discovery(self) -> Answer:
        base = self.authority  # msal reads authorization_endpoint and token_endpoint
        return 200, {"issuer": f"{base}/v2.0", "token_endpoint": f"{base}/oauth2/v2.0/token",
                     "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                     "jwks_uri": f"{base}/discovery/v2.0/keys",
                     "token_endpoint_auth_methods_supported":
                         ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                     "response_types_supported": ["code", "id_token", "code id_token"],
                     "subject_types_supported": ["pairwise"],
                     "id_token_signing_alg_values_supported": ["RS256"]}, {}  # fmt: skip

    def _token(self, form: dict[str, str]) -> Answer:
        if form.get("grant_type") != "client_credentials":
            return self._aad(400, "unsupported_grant_type", 70003,
                             "The app requested an unsupported grant type.")  # fmt: skip
        if form.get("client_id") != self.client_id:
            return self._aad(400, "unauthorized_client", 700016, f"Application with identifier "
                             f"'{form.get('client_id')}' was not found in the directory "
                             f"'{self.tenant_id}'.")  # fmt: skip
        if not secrets.compare_digest(form.get("client_secret", ""), self.client_secret):
            return self._aad(401, "invalid_client", 7000215, "Invalid client secret provided. "
                             "Ensure the secret being sent in the request is the client secret "
                             "value, not the client secret ID, for a secret added to app "
                             f"'{self.client_id}'.")  # fmt: skip
        if form.get("scope") != SCOPE:
            return self._aad(400, "invalid_scope", 1002012, f"The provided value for scope "
                             f"{form.get('scope')} is not valid. Client credential flows must "
                             "have a scope value with /.default suffixed to the resource "
                             "identifier (application ID URI).")  # fmt: skip
        token = secrets.token_urlsafe(32)
        self._tokens[token] = time.time() + 3599
        self.tokens_issued += 1
        return 200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                     "access_token": token}, {}  # fmt: skip

    # -- Graph -----------------------------------------------------------------------------

    def _handle(self, method: str, target: str, authorization: str, raw: bytes) -> Answer:
        parts = urllib.parse.urlsplit(target)
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        path, tenant = urllib.parse.unquote(parts.path), f"/{self.tenant_id}"
        with self._lock:
            self.calls.append((method, parts.path))
            if (method, path) == ("GET", f"{tenant}/v2.0/.well-known/openid-configuration"):
                return self._discovery()
            if (method, path) == ("POST", f"{tenant}/oauth2/v2.0/token"):
                return self._token(dict(urllib.parse.parse_qsl(raw.decode())))
            if path.startswith(f"{tenant}/"):
                return 404, {"error": "not_found", "error_description": path}, {}
            if not path.startswith("/v1.0/"):
                unknown = path.split("/")[1]
                return self._aad(400, "invalid_tenant", 90002, f"Tenant '{unknown}' not found. "
                                 "Check that you have the correct tenant ID.")  # fmt: skip
            try:
                self._authorise(authorization)
                if self._throttled:
                    self._throttled -= 1
                    raise _Refusal(429, "TooManyRequests", "Too many requests.",
                                   **{"Retry-After": str(self._retry_after)})  # fmt: skip
                self._expire()
                return self._route(method, path, query, raw)
            except _Refusal as refusal:
                return refusal.answer

    def _authorise(self, authorization: str) -> None:
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or not token:
            raise _Refusal(401, "InvalidAuthenticationToken", "Access token is empty.")
        if self._tokens.get(token, 0) < time.time():
            raise _Refusal(401, "InvalidAuthenticationToken", "Access token validation failure.")

    def _route(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> Answer:
        q = {name: values[-1] for name, values in query.items()}
        group, members = r"/v1.0/groups/([^/]+)", r"/v1.0/groups/([^/]+)/members"
        # $select is taken but not applied: every property this stand-in knows comes back.
        routes = [("GET", r"/v1.0/users/([^/]+)", self._user, {"$select"}),
                  ("GET", group, self._group, {"$select"}),
                  ("GET", members, self._list, {"$select", "$top", "$skiptoken"}),
                  ("POST", rf"{members}/\$ref", self._add, set()),
                  ("DELETE", rf"{members}/([^/]+)/\$ref", self._remove, set()),
                  ("POST", rf"{PIM}/assignmentScheduleRequests", self._request, set()),
                  ("GET", rf"{PIM}/assignmentScheduleInstances", self._instances,
                   {"$filter", "$select"})]  # fmt: skip
        for verb, pattern, answer, allowed in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                for name in set(q) - allowed:
                    raise _Refusal(400, "BadRequest", f"Query option '{name}' is not allowed here.")
                try:
                    body = json.loads(raw) if raw else {}
                    assert isinstance(body, dict)
                except (ValueError, AssertionError):
                    raise _Refusal(
                        400, "BadRequest", "Unable to read JSON request payload."
                    ) from None
                return answer(q, body, *match.groups())
        if method == "DELETE" and re.fullmatch(rf"{members}/[^/]+", path):
            raise _Refusal(400, "BadRequest", "members/{id} without /$ref: with User.ReadWrite.All "
                           "Graph would delete the user object itself.")  # fmt: skip
        raise _Refusal(400, "BadRequest", f"Resource not found for the segment '{path}'.")

    def _find_user(self, ident: str) -> str:
        for user_id, email in self._users.items():
            if ident.lower() in (user_id, email.lower()):
                return user_id
        raise _not_found(ident)

    def _user_json(self, user_id: str) -> dict[str, Any]:
        email = self._users[user_id]
        return {"id": user_id, "userPrincipalName": email, "mail": email,
                "displayName": email.split("@")[0].replace(".", " ").title()}  # fmt: skip

    def _group_id(self, ident: str) -> str:
        if ident.lower() not in self._groups:
            raise _not_found(ident)
        return ident.lower()

    def _user_id(self, ident: str) -> str:
        """An object id only: references and PIM principals are never names."""
        if ident.lower() not in self._users:
            raise _not_found(ident)
        return ident.lower()

    def _user(self, _: dict[str, str], __: dict[str, Any], ident: str) -> Answer:
        return 200, self._user_json(self._find_user(ident)), {}

    def _group(self, _: dict[str, str], __: dict[str, Any], ident: str) -> Answer:
        gid = self._group_id(ident)
        return 200, {"id": gid, "displayName": self._groups[gid], "securityEnabled": True,
                     "mailEnabled": False, "groupTypes": []}, {}  # fmt: skip

    def _list(self, q: dict[str, str], _: dict[str, Any], ident: str) -> Answer:
        gid = self._group_id(ident)
        try:
            top = int(q.get("$top", "100"))
            after = base64.urlsafe_b64decode(q.get("$skiptoken", "")).decode()
            assert 1 <= top <= 999
        except (ValueError, AssertionError, binascii.Error):
            raise _Refusal(400, "Request_BadRequest", "Invalid page size or $skiptoken: $top "
                           "must be between 1 and 999 inclusive.") from None  # fmt: skip
        rest = sorted(u for u in self._members(gid) if u > after)  # after: an opaque cursor
        items = [{"@odata.type": "#microsoft.graph.user", **self._user_json(u)} for u in rest[:top]]
        page: dict[str, Any] = {"value": items}
        if len(rest) > top:
            token = base64.urlsafe_b64encode(rest[top - 1].encode()).decode()
            more = urllib.parse.urlencode({**q, "$skiptoken": token}, safe="$,")
            page["@odata.nextLink"] = f"{self.graph_url}/v1.0/groups/{gid}/members?{more}"
        return 200, page, {}

    def _add(self, _: dict[str, str], body: dict[str, Any], ident: str) -> Answer:
        gid = self._group_id(ident)
        hosts = "|".join(re.escape(h) for h in ("https://graph.microsoft.com", self.graph_url))
        ref = re.fullmatch(rf"(?:{hosts})/v1\.0/(?:directoryObjects|users)/([^/]+)",
                           str(body.get("@odata.id", "")))  # fmt: skip
        if ref is None:
            raise _Refusal(400, "Request_BadRequest", "Invalid URL format specified in @odata.id.")
        user_id = self._user_id(ref.group(1))
        if user_id in self._members(gid):
            raise _Refusal(400, "Request_BadRequest", _ALREADY)
        self._plain[gid].add(user_id)
        return 204, None, {}

    def _remove(self, _: dict[str, str], __: dict[str, Any], ident: str, member: str) -> Answer:
        gid, member = self._group_id(ident), member.lower()
        if member not in self._members(gid):
            raise _not_found(member)
        # Taking the membership away overrides PIM too (Graph warns about mixing the two).
        self._plain[gid].discard(member)
        self._pim.pop((gid, member, "member"), None)
        return 204, None, {}

    # -- PIM for Groups --------------------------------------------------------------------

    @staticmethod
    def _schedule(info: Any, now: datetime) -> tuple[datetime, datetime | None, dict[str, Any]]:
        """scheduleInfo: its start, its end (None: permanent) and its echo in the answer."""
        if not isinstance(info, dict) or not isinstance(info.get("expiration"), dict):
            raise _Refusal(400, "BadRequest", "scheduleInfo.expiration is required.")
        expiration, given = info["expiration"], info.get("startDateTime")
        start = _moment(given, "startDateTime") if given else now
        kind, end = expiration.get("type"), None
        if kind == "afterDateTime":
            end = _moment(expiration.get("endDateTime"), "expiration.endDateTime")
        elif kind == "afterDuration":
            length = _DURATION.fullmatch(str(expiration.get("duration")))
            if length is None or not any(length.groups()):
                raise _Refusal(400, "BadRequest", "expiration.duration is not ISO 8601.")
            d, h, m, s = (int(n or 0) for n in length.groups())
            end = start + timedelta(days=d, hours=h, minutes=m, seconds=s)
        elif kind != "noExpiration":
            raise _Refusal(400, "BadRequest", "expiration.type must be afterDateTime, "
                           "afterDuration or noExpiration.")  # fmt: skip
        if end is not None and (end <= now or end <= start):
            raise _Refusal(400, "BadRequest", "The expiration must be in the future and after "
                           "the start.")  # fmt: skip
        echo = {"startDateTime": _stamp(start), "recurrence": None,
                "expiration": {"type": kind, "endDateTime": _stamp(end),
                               "duration": expiration.get("duration")}}  # fmt: skip
        return start, end, echo

    def _request(self, _: dict[str, str], body: dict[str, Any]) -> Answer:
        access, action = body.get("accessId"), body.get("action")
        if access not in ("member", "owner"):
            raise _Refusal(400, "BadRequest", f"accessId must be member or owner, not {access!r}.")
        if action not in ("adminAssign", "adminUpdate", "adminExtend", "adminRemove"):
            raise _Refusal(400, "BadRequest", f"action {action!r} is not imitated here.")
        gid = self._group_id(str(body.get("groupId")))
        user_id = self._user_id(str(body.get("principalId")))
        key, now = (gid, user_id, access), datetime.now(UTC)
        existing = self._pim.get(key)
        if action == "adminAssign" and existing:
            raise _Refusal(400, "RoleAssignmentExists", "The Role assignment already exists.")
        if action != "adminAssign" and not existing:
            raise _Refusal(400, "RoleAssignmentDoesNotExist", "The Role assignment does not exist.")
        echo, start, end = None, now, None
        if action != "adminRemove":
            if not body.get("justification"):
                failed = 'The following policy rules failed: ["JustificationRule"]'
                raise _Refusal(400, "RoleAssignmentRequestPolicyValidationFailed", failed)
            start, end, echo = self._schedule(body.get("scheduleInfo"), now)
        assignment = existing or _Assignment(f"{gid}_{access}_{uuid.uuid4()}", start, end)
        if not body.get("isValidationOnly"):  # a dry run checks, and changes nothing
            if action == "adminRemove":
                del self._pim[key]
            else:  # an extension keeps the start it had
                assignment.start = assignment.start if action == "adminExtend" else start
                assignment.end = end
                self._pim[key] = assignment
        status = "Revoked" if action == "adminRemove" else "Provisioned"
        return 201, {"id": str(uuid.uuid4()), "status": status, "action": action,
                     "accessId": access, "principalId": user_id, "groupId": gid,
                     "scheduleInfo": echo, "justification": body.get("justification"),
                     "createdDateTime": _stamp(now), "completedDateTime": _stamp(now),
                     "approvalId": None, "targetScheduleId": assignment.id,
                     "isValidationOnly": bool(body.get("isValidationOnly"))}, {}  # fmt: skip

    def _instances(self, q: dict[str, str], _: dict[str, Any]) -> Answer:
        if not q.get("$filter"):  # Graph will not list every assignment in the tenant
            raise _Refusal(400, "BadRequest", "A $filter on groupId or principalId is required.")
        terms: dict[str, str] = {}
        for clause in re.split(r"\s+and\s+", q["$filter"].strip()):
            match = _CLAUSE.fullmatch(clause)
            if match is None:
                raise _Refusal(400, "BadRequest", f"Invalid filter clause: {clause!r}.")
            terms[match.group(1)] = match.group(2).lower()
        if not {"groupId", "principalId"} & set(terms):
            raise _Refusal(400, "BadRequest", "A $filter on groupId or principalId is required.")
        now, found = datetime.now(UTC), []
        for (gid, user_id, access), a in self._pim.items():
            fields = {"groupId": gid, "principalId": user_id, "accessId": access}
            if a.start <= now and all(fields[k] == v for k, v in terms.items()):
                found.append({"id": a.id, **fields, "startDateTime": _stamp(a.start),
                              "endDateTime": _stamp(a.end), "assignmentType": "Assigned",
                              "memberType": "Direct", "assignmentScheduleId": a.id})  # fmt: skip
        return 200, {"value": found}, {}

    # -- the server ------------------------------------------------------------------------

    def start(self) -> Self:
        standin = self

        class Handler(QuietHandler):
            def _serve(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                authorization = self.headers.get("Authorization") or ""
                status, body, headers = standin._handle(self.command, self.path, authorization, raw)
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

        self._folder = Path(tempfile.mkdtemp(prefix="graph-standin-"))
        _, cert, key = _certificates(self._folder)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        return self._listen(_TlsServer(Handler, context))

    def stop(self) -> None:
        super().stop()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
