"""A local stand-in for Google's IAM policy APIs, faithful at the network edge.

Resource Manager v3 (projects, folders) is served over REST on one port, the IAM admin API
(service accounts) over gRPC on another; both share one set of policies. It keeps what the
real services keep — a version and an etag per policy, a new etag on every write — and
answers like them: a stale etag is refused (REST 409 ABORTED, gRPC ABORTED), a conditional
binding in a policy below version 3 is INVALID_ARGUMENT, an unknown or forbidden resource
is PERMISSION_DENIED, and a read below version 3 hides conditional bindings behind
`_withcond_` role names. Tests reach behind the client's back with `put_binding`,
`before_next_set` and `conflict_next_sets`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

_HTTP_STATUS = {"INVALID_ARGUMENT": 400, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
                "ABORTED": 409}  # fmt: skip
_MEMBER = re.compile(
    r"(user|group|serviceAccount|domain|deleted:\w+):\S+|allUsers|allAuthenticatedUsers"
)
_SERVICE_ACCOUNT = re.compile(r"projects/[^/]+/serviceAccounts/([^/]+)")
_REST_PATH = re.compile(
    r"/v3/((?:projects|folders)/[^/:]+):(getIamPolicy|setIamPolicy|testIamPermissions)"
)


class GoogleFault(Exception):
    """An error answer in Google's terms: canonical status name plus message."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS[self.status]


@dataclass(frozen=True)
class Call:
    """One IAM call as the stand-in received it (the request message as parsed)."""

    method: str
    resource: str
    request: Message


def _key(resource: str) -> str:
    # IAM accepts any project (or "-") in front of a service account; the email decides.
    match = _SERVICE_ACCOUNT.fullmatch(resource)
    return f"projects/-/serviceAccounts/{match.group(1)}" if match else resource


def _service(key: str) -> tuple[str, str]:
    """The permission prefix and API host of a resource."""
    if "/serviceAccounts/" in key:
        return "iam.serviceAccounts", "iam"
    return f"resourcemanager.{key.split('/')[0]}", "cloudresourcemanager"


class GcpStandIn:
    """Projects, folders and service accounts with IAM policies; REST and gRPC servers."""

    def __init__(
        self,
        *,
        projects: Iterable[str] = (),
        folders: Iterable[str] = (),
        service_accounts: Iterable[str] = (),
        port: int = 0,
        grpc_port: int = 0,
    ) -> None:
        self._lock = threading.Lock()
        self._etags = itertools.count(1)
        self._policies: dict[str, policy_pb2.Policy] = {}
        self._denied: set[tuple[str, str]] = set()
        self._before_set: list[Callable[[], None]] = []
        self._conflicts = 0
        self.calls: list[Call] = []
        for name in [*(f"projects/{p}" for p in projects), *(f"folders/{f}" for f in folders)]:
            self.add_resource(name)
        for email in service_accounts:
            self.add_resource(f"projects/-/serviceAccounts/{email}")
        self._port, self._grpc_port = port, grpc_port
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._grpc: Any = None
        self.endpoint = self.grpc_endpoint = ""

    def start(self) -> GcpStandIn:
        from app.testing.gcp_iam_grpc import serve_iam

        if self._http is None:
            self._http = _Server(("127.0.0.1", self._port), _handler_for(self))
            self._thread = threading.Thread(
                target=self._http.serve_forever, args=(0.05,), name="gcp-standin", daemon=True
            )
            self._thread.start()
            self.endpoint = f"http://127.0.0.1:{self._http.server_address[1]}"
            self._grpc, port = serve_iam(self, self._grpc_port)
            self.grpc_endpoint = f"127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._grpc.stop(grace=None).wait(5)
            self._http = self._thread = self._grpc = None

    def __enter__(self) -> GcpStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_resource(self, resource: str) -> None:
        with self._lock:
            self._policies.setdefault(
                _key(resource), policy_pb2.Policy(version=1, etag=self._etag())
            )

    def policy(self, resource: str) -> policy_pb2.Policy:
        """The stored policy, as Google holds it (a copy)."""
        with self._lock:
            copy = policy_pb2.Policy()
            copy.CopyFrom(self._policies[_key(resource)])
            return copy

    def put_binding(
        self, resource: str, role: str, members: list[str], condition: dict[str, str] | None = None
    ) -> None:
        """Someone else (the console, Terraform) adds a binding: the etag changes."""
        with self._lock:
            policy = self._policies[_key(resource)]
            binding = policy.bindings.add(role=role, members=members)
            if condition is not None:
                binding.condition.title = condition.get("title", "")
                binding.condition.description = condition.get("description", "")
                binding.condition.expression = condition["expression"]
                policy.version = 3
            policy.etag = self._etag()

    def before_next_set(self, action: Callable[[], None]) -> None:
        """Run `action` when the next setIamPolicy arrives, before it is judged: a write
        by someone else between the client's read and its write."""
        with self._lock:
            self._before_set.append(action)

    def conflict_next_sets(self, count: int) -> None:
        """The next `count` setIamPolicy calls are refused as concurrent changes."""
        with self._lock:
            self._conflicts = count

    def deny(self, resource: str, permission: str) -> None:
        """Latchkey's account lacks `permission` (e.g. resourcemanager.projects.setIamPolicy)."""
        with self._lock:
            self._denied.add((_key(resource), permission))

    def calls_of(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def get_iam_policy(self, request: iam_policy_pb2.GetIamPolicyRequest) -> policy_pb2.Policy:
        with self._lock:
            policy = self._authorised(request, "GetIamPolicy", "getIamPolicy")
            requested = request.options.requested_policy_version
            if requested not in (0, 1, 3):
                raise GoogleFault(
                    "INVALID_ARGUMENT", f"Invalid requested policy version {requested}"
                )
            answer = policy_pb2.Policy()
            answer.CopyFrom(policy)
            # What Google shows callers that do not ask for conditions (version 1).
            for binding in answer.bindings if requested < 3 else ():
                if binding.HasField("condition"):
                    digest = hashlib.sha256(binding.condition.SerializeToString()).hexdigest()
                    binding.role += f"_withcond_{digest[:20]}"
                    binding.ClearField("condition")
                    answer.version = 1
            return answer

    def set_iam_policy(self, request: iam_policy_pb2.SetIamPolicyRequest) -> policy_pb2.Policy:
        with self._lock:
            actions, self._before_set = self._before_set, []
        for action in actions:
            action()
        with self._lock:
            stored = self._authorised(request, "SetIamPolicy", "setIamPolicy")
            given, paths = request.policy, set(request.update_mask.paths or ("bindings", "etag"))
            if self._conflicts or (given.etag and given.etag != stored.etag):
                self._conflicts = max(0, self._conflicts - 1)
                raise GoogleFault(
                    "ABORTED",
                    "There were concurrent policy changes. Please retry the whole "
                    "read-modify-write with exponential backoff. The request's ETag "
                    f"'{given.etag!r}' did not match the current policy's ETag '{stored.etag!r}'.",
                )
            bindings = given.bindings if "bindings" in paths else stored.bindings
            # Google's rule: a policy with conditions is sent as version 3.
            self._validate(bindings, given.version)
            has_conditions = any(b.HasField("condition") for b in bindings)
            new = policy_pb2.Policy(
                version=3 if has_conditions else 1,
                # Google drops bindings left without members.
                bindings=[b for b in bindings if b.members],
                audit_configs=(given if "audit_configs" in paths else stored).audit_configs,
                etag=self._etag(),
            )
            self._policies[_key(request.resource)] = new
            answer = policy_pb2.Policy()
            answer.CopyFrom(new)
            return answer

    def test_iam_permissions(
        self, request: iam_policy_pb2.TestIamPermissionsRequest
    ) -> iam_policy_pb2.TestIamPermissionsResponse:
        with self._lock:
            self._authorised(request, "TestIamPermissions", "testIamPermissions")
            key = _key(request.resource)
            held = [p for p in request.permissions if (key, p) not in self._denied]
            return iam_policy_pb2.TestIamPermissionsResponse(permissions=held)

    def _authorised(self, request: Any, method: str, verb: str) -> policy_pb2.Policy:
        self.calls.append(Call(method, request.resource, request))
        key = _key(request.resource)
        prefix, host = _service(key)
        permission = f"{prefix}.{verb}"
        if key not in self._policies or (key, permission) in self._denied:
            if prefix == "resourcemanager.projects":
                # Resource Manager does not say whether the project exists.
                raise GoogleFault("PERMISSION_DENIED", "The caller does not have permission")
            raise GoogleFault(
                "PERMISSION_DENIED",
                f"Permission '{permission}' denied on resource "
                f"'//{host}.googleapis.com/{request.resource}' (or it may not exist).",
            )
        return self._policies[key]

    @staticmethod
    def _validate(bindings: Iterable[policy_pb2.Binding], version: int) -> None:
        for binding in bindings:
            if not binding.role or "_withcond_" in binding.role:
                raise GoogleFault("INVALID_ARGUMENT", f"Role ({binding.role}) does not exist.")
            for member in binding.members:
                if not _MEMBER.fullmatch(member):
                    raise GoogleFault("INVALID_ARGUMENT", f"Invalid member: {member}")
            if binding.HasField("condition"):
                if version < 3:
                    raise GoogleFault(
                        "INVALID_ARGUMENT",
                        f"Policy version {version} does not support IAM Conditions; a policy "
                        "with conditional role bindings must be version 3.",
                    )
                if not (binding.condition.title and binding.condition.expression):
                    raise GoogleFault(
                        "INVALID_ARGUMENT", "A condition needs a title and expression."
                    )

    def _etag(self) -> bytes:
        # Opaque bytes like Google's (which start with 0x07 0x05 or so); base64 on the wire.
        return b"\x07\x05" + next(self._etags).to_bytes(6, "big")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


_REST_REQUESTS: dict[str, type[Message]] = {
    "getIamPolicy": iam_policy_pb2.GetIamPolicyRequest,
    "setIamPolicy": iam_policy_pb2.SetIamPolicyRequest,
    "testIamPermissions": iam_policy_pb2.TestIamPermissionsRequest,
}


def _serve_rest(standin: GcpStandIn, path: str, raw: bytes) -> dict[str, Any]:
    """The JSON answer to one REST call; GoogleFault for an error answer."""
    match = _REST_PATH.fullmatch(path.partition("?")[0])
    if match is None:
        raise GoogleFault("NOT_FOUND", f"No such method: {path}")
    resource, method = match.groups()
    request: Any = _REST_REQUESTS[method]()
    try:
        # The body is the request minus the resource, which rides in the path.
        json_format.Parse(raw or b"{}", request)
    except json_format.ParseError as exc:
        raise GoogleFault("INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}") from None
    request.resource = resource
    serve = {"getIamPolicy": standin.get_iam_policy, "setIamPolicy": standin.set_iam_policy,
             "testIamPermissions": standin.test_iam_permissions}[method]  # fmt: skip
    return dict(json.loads(json_format.MessageToJson(serve(request))))


def _handler_for(standin: GcpStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                status, payload = 200, _serve_rest(standin, self.path, raw)
            except GoogleFault as fault:
                body = {"code": fault.http_status, "message": fault.message, "status": fault.status}
                status, payload = fault.http_status, {"error": body}
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler
