"""A moto server for tests and benchmarks, started and left empty.

moto keeps one AWS per process, shared by every server started in it: a module that seeded
thousands of IAM users left every later module's calls seconds slower (each listing walked
them) and its groups visible to the next. So a server here starts from an empty AWS and
empties it again when it stops.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from moto.server import ThreadedMotoServer


def reset(endpoint: str) -> None:
    """Forget every account's state (moto's own reset endpoint)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=5).close()


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
        reset(endpoint)
        yield endpoint
    finally:
        try:
            reset(endpoint)
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
