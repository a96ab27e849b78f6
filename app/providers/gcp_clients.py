"""The Google clients the GCP providers use, built once per process on first use.

Two settings point them at a local stand-in (tests, `latchkey demo`) instead of Google:
- LATCHKEY_GCP_ENDPOINT, e.g. `http://127.0.0.1:8123`: Resource Manager over REST;
- LATCHKEY_GCP_GRPC_ENDPOINT, e.g. `127.0.0.1:8124`: IAM (service accounts) over gRPC,
  the only transport the IAM admin client has.
Both or neither: pointing one API at a stand-in and the other at Google with real
credentials is never what anyone meant. Only with endpoints set are the credentials
anonymous; without them, Application Default Credentials reach the real APIs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from google.cloud.iam_admin_v1 import IAMClient
    from google.cloud.resourcemanager_v3 import FoldersClient, ProjectsClient

ENDPOINT_SETTING = "LATCHKEY_GCP_ENDPOINT"
GRPC_ENDPOINT_SETTING = "LATCHKEY_GCP_GRPC_ENDPOINT"
_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


@dataclass(frozen=True)
class GcpClients:
    projects: ProjectsClient
    folders: FoldersClient
    iam: IAMClient

    def close(self) -> None:
        """Close the HTTP sessions and the gRPC channel (tests, before a stand-in stops)."""
        for client in (self.projects, self.folders, self.iam):
            client.transport.close()


def endpoint_problems(endpoint: str | None, grpc_endpoint: str | None) -> list[str]:
    """What is wrong with the two endpoint settings, naming the setting (for start-up)."""
    if not endpoint and not grpc_endpoint:
        return []
    if not endpoint or not grpc_endpoint:
        missing = ENDPOINT_SETTING if not endpoint else GRPC_ENDPOINT_SETTING
        other = GRPC_ENDPOINT_SETTING if not endpoint else ENDPOINT_SETTING
        return [f"{missing} must be set when {other} is (both point at the same stand-in)"]
    problems = []
    if not endpoint.startswith(("http://", "https://")):
        problems.append(f"{ENDPOINT_SETTING} must be a URL such as http://127.0.0.1:8123")
    host, _, port = grpc_endpoint.rpartition(":")
    if "://" in grpc_endpoint or not host or not port.isdigit():
        problems.append(f"{GRPC_ENDPOINT_SETTING} must be host:port such as 127.0.0.1:8124")
    return problems


def build_gcp_clients(endpoint: str | None, grpc_endpoint: str | None = None) -> GcpClients:
    """Clients for Resource Manager (REST) and IAM (gRPC); raises ValueError on bad settings."""
    import grpc
    from google.api_core.client_options import ClientOptions
    from google.cloud.iam_admin_v1 import IAMClient
    from google.cloud.iam_admin_v1.services.iam.transports import IAMGrpcTransport
    from google.cloud.resourcemanager_v3 import FoldersClient, ProjectsClient

    problems = endpoint_problems(endpoint, grpc_endpoint)
    if problems:
        raise ValueError("; ".join(problems))
    if endpoint and grpc_endpoint:
        from google.auth.credentials import AnonymousCredentials

        anonymous = AnonymousCredentials()
        # The REST transport keeps an http:// scheme given in api_endpoint (https otherwise).
        options = ClientOptions(api_endpoint=endpoint.rstrip("/"))
        # A transport built on our own channel ignores credentials; the channel is
        # plaintext because the stand-in serves no TLS.
        transport = IAMGrpcTransport(
            channel=grpc.insecure_channel(grpc_endpoint), credentials=anonymous
        )
        return GcpClients(
            projects=ProjectsClient(
                credentials=anonymous, transport="rest", client_options=options
            ),
            folders=FoldersClient(credentials=anonymous, transport="rest", client_options=options),
            iam=IAMClient(transport=transport),
        )

    import google.auth

    credentials, _ = google.auth.default(scopes=_SCOPES)
    # REST for Resource Manager in production too, so the path the tests drive is the
    # path that runs.
    return GcpClients(
        projects=ProjectsClient(credentials=credentials, transport="rest"),
        folders=FoldersClient(credentials=credentials, transport="rest"),
        iam=IAMClient(credentials=credentials),
    )
