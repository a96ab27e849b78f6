"""The gRPC face of the GCP stand-in: google.iam.admin.v1.IAM's policy methods.

The IAM admin client library ships no servicer, so a generic handler serves the three
methods by their wire names with the google.iam.v1 messages; any other IAM method
answers UNIMPLEMENTED, as grpc does for names it does not know.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import grpc
from google.iam.v1 import iam_policy_pb2, policy_pb2

if TYPE_CHECKING:
    from app.testing.gcp_standin import GcpStandIn

_SERVICE = "google.iam.admin.v1.IAM"
_SERVICE_ACCOUNT = re.compile(r"projects/[^/]+/serviceAccounts/[^/]+")


def _unary(
    standin: GcpStandIn, serve: Callable[[Any], Any], request_type: Any, response_type: Any
) -> grpc.RpcMethodHandler:
    from app.testing.gcp_standin import GoogleFault

    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        if not _SERVICE_ACCOUNT.fullmatch(request.resource):
            # The IAM API only holds service-account policies.
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Invalid resource name {request.resource!r}: expected "
                "projects/{project}/serviceAccounts/{account}",
            )
        try:
            return serve(request)
        except GoogleFault as fault:
            context.abort(getattr(grpc.StatusCode, fault.status), fault.message)

    return grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=request_type.FromString,
        response_serializer=response_type.SerializeToString,
    )


def serve_iam(standin: GcpStandIn, port: int = 0) -> tuple[grpc.Server, int]:
    """Start a plaintext gRPC server on 127.0.0.1; returns it and its port."""
    handlers = {
        "GetIamPolicy": _unary(
            standin, standin.get_iam_policy, iam_policy_pb2.GetIamPolicyRequest, policy_pb2.Policy
        ),
        "SetIamPolicy": _unary(
            standin, standin.set_iam_policy, iam_policy_pb2.SetIamPolicyRequest, policy_pb2.Policy
        ),
        "TestIamPermissions": _unary(
            standin,
            standin.test_iam_permissions,
            iam_policy_pb2.TestIamPermissionsRequest,
            iam_policy_pb2.TestIamPermissionsResponse,
        ),
    }
    server = grpc.server(ThreadPoolExecutor(max_workers=8, thread_name_prefix="gcp-iam-grpc"))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound
