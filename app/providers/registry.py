"""Build providers with their clients injected; nothing is created at import time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.providers import principals
from app.providers.base import Provider
from app.providers.custom import CustomProvider, Guarded
from app.providers.databases import WITH_CREDENTIALS

# The AWS services each built-in AWS provider's clients talk to.
AWS_SERVICES = {
    "aws_iam_group": ("iam",),
    "aws_role": ("iam",),
    "aws_sso": ("sso-admin", "identitystore", "organizations"),
}
_botocore: list[Any] = []


def shared_botocore_session() -> Any:
    """One botocore session per process (and inherited across the worker's fork).

    Its loader caches the service models: loading IAM's takes about 0.4 s, a client built
    from a warm session about 0.05 s. Credentials are still resolved per process.
    """
    if not _botocore:
        import botocore.session

        _botocore.append(botocore.session.get_session())
    return _botocore[0]


def load_aws_models(providers: set[str]) -> None:
    """Build (and drop) one client per AWS service these providers use, so the shared
    session has loaded every model and rule set a client needs: clients built later, in
    any forked child, start fast. No connection is made."""
    import boto3

    for service in sorted({s for p in providers for s in AWS_SERVICES.get(p, ())}):
        boto3.session.Session(botocore_session=shared_botocore_session()).client(service)


def _needs(settings: Any, provider: str) -> None:
    """Fail with the settings' names (processes refuse such flows at start already)."""
    from app.providers.base import ProviderError

    problem = "no settings" if settings is None else settings.provider_problem(provider)
    if problem:
        raise ProviderError(f"{provider}: {problem}", transient=False)


class ProviderRegistry:
    """Providers by name, each built on first use (so the web never builds cloud clients)."""

    def __init__(
        self,
        factories: dict[str, Callable[[], Provider]],
        custom: dict[str, type[CustomProvider]] | None = None,
    ) -> None:
        self._factories = factories
        self._custom = custom or {}
        self._built: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        if name not in self._built:
            if name not in self._factories:
                raise KeyError(f"no provider named {name!r}")
            self._built[name] = self._factories[name]()
        return self._built[name]

    def shows_credentials(self, name: str) -> bool:
        """Whether this provider's grants come with a login and password the holder is shown
        (Show credentials): the database providers, and a custom provider that defines
        `credentials(spec)`. Asked of the class, so the web builds nothing to tell."""
        if name in WITH_CREDENTIALS:
            return True
        custom = self._custom.get(name)
        return custom is not None and callable(getattr(custom, "credentials", None))

    def principal_problem(self, name: str, principal: str) -> str | None:
        """Why `principal` cannot be a principal of this provider: format only, from the
        class (never an instance, so nothing connects anywhere)."""
        if name in principals.BUILTIN:
            return principals.BUILTIN[name](principal)
        custom = self._custom.get(name)
        return custom.principal_problem(principal) if custom else None


def default_providers(
    *,
    custom: dict[str, type[CustomProvider]] | None = None,
    gcp_endpoint: str | None = None,
    gcp_grpc_endpoint: str | None = None,
    boto3_session_factory: Callable[[], Any] | None = None,
    settings: Any = None,
) -> ProviderRegistry:
    """Every built-in provider plus the flows folder's custom ones."""

    def boto3_client(service: str) -> Any:
        import boto3

        session = (
            boto3_session_factory()
            if boto3_session_factory
            else boto3.session.Session(botocore_session=shared_botocore_session())
        )
        # boto3 reads AWS_ENDPOINT_URL itself, which is how tests and the demo reach moto.
        return session.client(service)

    google: list[Any] = []

    def gcp_clients() -> Any:
        # One set of Google clients (and channels) shared by both GCP providers.
        if not google:
            from app.providers.gcp_clients import build_gcp_clients

            google.append(build_gcp_clients(gcp_endpoint, gcp_grpc_endpoint))
        return google[0]

    # Each imports its module on first use, so the web process never loads cloud SDKs.
    def aws_iam_group() -> Provider:
        from app.providers.aws_iam import AwsIamGroupProvider

        return AwsIamGroupProvider(boto3_client("iam"))

    def aws_sso() -> Provider:
        from app.providers.aws_sso import AwsSsoPermissionSetProvider

        return AwsSsoPermissionSetProvider(
            boto3_client("sso-admin"),
            boto3_client("identitystore"),
            organizations=boto3_client("organizations"),
        )

    def aws_role() -> Provider:
        from app.providers.aws_role import AwsRoleProvider

        return AwsRoleProvider(boto3_client("iam"))

    def gcp_role() -> Provider:
        from app.providers.gcp_role import GcpRoleBindingProvider

        clients = gcp_clients()
        return GcpRoleBindingProvider(clients.projects, clients.folders)

    def gcp_impersonation() -> Provider:
        from app.providers.gcp_impersonation import GcpImpersonationProvider

        return GcpImpersonationProvider(gcp_clients().iam)

    def google_group() -> Provider:
        from app.providers.idp.google_groups import GoogleGroupProvider, build_groups_service

        endpoint = settings.google_groups_endpoint if settings is not None else None
        return GoogleGroupProvider(build_groups_service(endpoint))

    def entra_group() -> Provider:
        from app.providers.idp.entra import EntraGroupProvider

        _needs(settings, "entra_group")
        return EntraGroupProvider(
            tenant_id=settings.entra_tenant_id,
            client_id=settings.entra_client_id,
            client_secret=settings.entra_client_secret.get_secret_value(),
            authority_url=settings.entra_authority_url,
            graph_url=settings.entra_graph_url,
        )

    def okta_group() -> Provider:
        from app.providers.idp.okta import OktaGroupProvider

        _needs(settings, "okta_group")
        return OktaGroupProvider(settings.okta_url, settings.okta_api_token.get_secret_value())

    def postgres_login() -> Provider:
        from app.providers.databases.postgres import PostgresLoginProvider

        _needs(settings, "postgres_login")
        return PostgresLoginProvider(
            settings.postgres_login_url.get_secret_value(),
            settings.credentials_key.get_secret_value().encode(),
        )

    def postgres_account() -> Provider:
        from app.providers.databases.postgres_account import PostgresAccountProvider

        _needs(settings, "postgres_account")
        return PostgresAccountProvider(
            settings.postgres_login_url.get_secret_value(),
            settings.credentials_key.get_secret_value().encode(),
        )

    def mariadb_login() -> Provider:
        from app.providers.databases.mariadb import MariaDBLoginProvider

        _needs(settings, "mariadb_login")
        return MariaDBLoginProvider(
            settings.mariadb_login_url.get_secret_value(),
            settings.credentials_key.get_secret_value().encode(),
        )

    factories: dict[str, Callable[[], Provider]] = {
        "aws_iam_group": aws_iam_group,
        "aws_sso": aws_sso,
        "aws_role": aws_role,
        "gcp_role": gcp_role,
        "gcp_impersonation": gcp_impersonation,
        "google_group": google_group,
        "entra_group": entra_group,
        "okta_group": okta_group,
        "postgres_login": postgres_login,
        "postgres_account": postgres_account,
        "mariadb_login": mariadb_login,
    }
    for name, cls in (custom or {}).items():
        factories[name] = lambda c=cls: Guarded(c)
    return ProviderRegistry(factories, custom)
