"""Build providers with their clients injected; nothing is created at import time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.providers.base import Provider


class ProviderRegistry:
    """Providers by name, each built on first use (so the web never builds cloud clients)."""

    def __init__(self, factories: dict[str, Callable[[], Provider]]) -> None:
        self._factories = factories
        self._built: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        if name not in self._built:
            if name not in self._factories:
                raise KeyError(f"no provider named {name!r}")
            self._built[name] = self._factories[name]()
        return self._built[name]


def default_providers(boto3_session_factory: Callable[[], Any] | None = None) -> ProviderRegistry:
    def aws_iam_group() -> Provider:
        import boto3

        from app.providers.aws_iam import AwsIamGroupProvider

        session = boto3_session_factory() if boto3_session_factory else boto3.session.Session()
        # boto3 reads AWS_ENDPOINT_URL itself, which is how tests and the demo reach moto.
        return AwsIamGroupProvider(session.client("iam"))

    return ProviderRegistry({"aws_iam_group": aws_iam_group})
