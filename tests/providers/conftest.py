"""Fixtures shared by the provider tests: the Google stand-ins and clients built on them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.providers.gcp_clients import GcpClients, build_gcp_clients
from app.testing.gcp_standin import GcpStandIn


@pytest.fixture(scope="module")
def standin() -> Iterator[GcpStandIn]:
    with GcpStandIn() as running:
        yield running


@pytest.fixture(scope="module")
def clients(standin: GcpStandIn) -> Iterator[GcpClients]:
    built = build_gcp_clients(standin.endpoint, standin.grpc_endpoint)
    yield built
    built.close()  # before the server stops, so the channel is not left dangling


@pytest.fixture
def sleeps() -> list[float]:
    """The backoff a provider asked for, recorded instead of slept."""
    return []
