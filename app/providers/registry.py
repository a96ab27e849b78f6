"""Build providers with their clients injected; nothing is created at import time."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from app.providers import principals
from app.providers.base import Provider
from app.providers.custom import Guarded

# Built-in providers by name: module and class, imported on first use so the web process
# never imports cloud SDKs it does not need.
BUILTIN_CLASSES = {
    "aws_iam_group": ("app.providers.aws_iam", "AwsIamGroupProvider"),
    "aws_sso": ("app.providers.aws_sso", "AwsSsoPermissionSetProvider"),
    "aws_role": ("app.providers.aws_role", "AwsRoleProvider"),
    "gcp_role": ("app.providers.gcp_role", "GcpRoleBindingProvider"),
    "gcp_impersonation": ("app.providers.gcp_impersonation", "GcpImpersonationProvider"),
}


def builtin_class(name: str) -> type:
    module, cls = BUILTIN_CLASSES[name]
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


class ProviderRegistry:
    """Providers by name, each built on first use (so the web never builds cloud clients)."""

    def __init__(
        self,
        factories: dict[str, Callable[[], Provider]],
        classes: dict[str, Callable[[], type]] | None = None,
    ) -> None:
        self._factories = factories
        self._classes = classes or {}
        self._built: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        if name not in self._built:
            if name not in self._factories:
                raise KeyError(f"no provider named {name!r}")
            self._built[name] = self._factories[name]()
        return self._built[name]

    def provider_class(self, name: str) -> type | None:
        """The class, without building it (and its clients)."""
        find = self._classes.get(name)
        return find() if find else None

    def principal_problem(self, name: str, principal: str) -> str | None:
        """Why `principal` cannot be a principal of this provider (format only, no calls)."""
        if name in principals.BUILTIN:
            return principals.BUILTIN[name](principal)
        cls = self.provider_class(name)
        check = getattr(cls, "principal_problem", None)
        return check(principal) if check else None


def default_providers(
    *,
    custom: dict[str, type] | None = None,
    gcp_endpoint: str | None = None,
    gcp_grpc_endpoint: str | None = None,
    boto3_session_factory: Callable[[], Any] | None = None,
) -> ProviderRegistry:
    """Every built-in provider plus the flows folder's custom ones."""

    def boto3_client(service: str) -> Any:
        import boto3

        session = boto3_session_factory() if boto3_session_factory else boto3.session.Session()
        # boto3 reads AWS_ENDPOINT_URL itself, which is how tests and the demo reach moto.
        return session.client(service)

    google: list[Any] = []

    def gcp_clients() -> Any:
        # One set of Google clients (and channels) shared by both GCP providers.
        if not google:
            from app.providers.gcp_clients import build_gcp_clients

            google.append(build_gcp_clients(gcp_endpoint, gcp_grpc_endpoint))
        return google[0]

    def aws_iam_group() -> Provider:
        return builtin_class("aws_iam_group")(boto3_client("iam"))  # type: ignore[no-any-return]

    def aws_sso() -> Provider:
        return builtin_class("aws_sso")(  # type: ignore[no-any-return]
            boto3_client("sso-admin"),
            boto3_client("identitystore"),
            organizations=boto3_client("organizations"),
        )

    def aws_role() -> Provider:
        return builtin_class("aws_role")(boto3_client("iam"))  # type: ignore[no-any-return]

    def gcp_role() -> Provider:
        clients = gcp_clients()
        return builtin_class("gcp_role")(clients.projects, clients.folders)  # type: ignore[no-any-return]

    def gcp_impersonation() -> Provider:
        return builtin_class("gcp_impersonation")(gcp_clients().iam)  # type: ignore[no-any-return]

    factories: dict[str, Callable[[], Provider]] = {
        "aws_iam_group": aws_iam_group,
        "aws_sso": aws_sso,
        "aws_role": aws_role,
        "gcp_role": gcp_role,
        "gcp_impersonation": gcp_impersonation,
    }
    classes: dict[str, Callable[[], type]] = {
        name: (lambda n=name: builtin_class(n)) for name in BUILTIN_CLASSES
    }
    for name, cls in (custom or {}).items():
        factories[name] = lambda c=cls: Guarded(c)
        classes[name] = lambda c=cls: c
    return ProviderRegistry(factories, classes)
