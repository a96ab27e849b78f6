"""Turning boto3 errors into ProviderErrors, shared by the AWS providers."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from app.providers.base import ProviderError

# Codes that say "try again later": throttling, AWS-side failures and concurrent changes
# (IAM's ConcurrentModification, Identity Center's ConflictException while another
# operation on the same assignment is still running).
TRANSIENT_CODES = {
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ServiceFailure",
    "InternalServerException",
    "ServiceUnavailable",
    "ConcurrentModification",
    "ConflictException",
}


def error_code(exc: Exception) -> str:
    """The AWS error code of a ClientError ("" for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def aws_error(exc: Exception, action: str, *, service: str = "AWS IAM") -> ProviderError:
    """A ProviderError naming the call; transient when retrying may help."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        transient = code in TRANSIENT_CODES or status >= 500
        return ProviderError(f"{service} {action} failed: {code}: {message}", transient=transient)
    # Connection trouble and other botocore errors: the endpoint may come back.
    return ProviderError(f"{service} {action} failed: {exc}", transient=True)


def call_with_backoff(
    call: Callable[..., Any],
    action: str,
    *,
    service: str,
    retry_codes: Collection[str],
    sleep: Callable[[float], None],
    backoff: Sequence[float] = (0.5, 1.0, 2.0),
    not_found: str | None = None,
    **kwargs: Any,
) -> Any:
    """`call(**kwargs)`, retried after each `backoff` delay while AWS answers a retry code.

    Returns None when AWS answers the `not_found` code; raises ProviderError otherwise.
    """
    delays = iter(backoff)
    while True:
        try:
            return call(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            code = error_code(exc)
            if not_found is not None and code == not_found:
                return None
            delay = next(delays, None) if code in retry_codes else None
            if delay is None:
                raise aws_error(exc, action, service=service) from None
        sleep(delay)
