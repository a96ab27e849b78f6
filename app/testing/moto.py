"""A moto server for tests and benchmarks, started and left empty.

moto keeps one AWS per process, shared by every server started in it: a module that seeded
thousands of IAM users left every later module's calls seconds slower (each listing walked
them) and its groups visible to the next. Its accounts are apart, though: a server here
empties moto's default account (the one its callers use) when it starts and stops, and a
test stack (app.testing.stack) works in an account of its own, which it empties at its end.
Emptying all of moto instead would take the AWS from under a stack still running beside it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

# moto's account when a request names none (no x-moto-account-id header, no MOTO_ACCOUNT_ID).
DEFAULT_ACCOUNT = "123456789012"


def forget(account: str) -> None:
    """Empty one account's state in every service moto has used in this process, leaving the
    other accounts as they are (moto's /moto-api/reset empties them all)."""
    from moto.core.base_backend import BackendDict, backend_lock

    # moto's list of the services in use: it has no public per-account reset.
    with backend_lock:
        for service in list(BackendDict._instances):
            held = service.pop(account, None)
            if held is not None:
                held.reset()


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on a free loopback port: its endpoint, with an empty AWS behind it."""
    # werkzeug logs every request moto serves; the test's own output is what matters.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        forget(DEFAULT_ACCOUNT)
        yield endpoint
    finally:
        try:
            forget(DEFAULT_ACCOUNT)
        finally:
            server.stop()


def client(service: str, endpoint: str) -> Any:
    """A boto3 client for `service` at `endpoint` (moto accepts any key)."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
