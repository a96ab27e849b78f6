"""Service clients' bearer tokens: made once, shown once, kept only as a hash.

A token is 256 random bits, so a plain SHA-256 is enough to keep it (nothing to brute
force, unlike a password) and lets the web find the client by an indexed lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

# Says what a leaked string is (secret scanners can match it), and lets the web refuse a
# Slack token or an audit key pasted by mistake without a database lookup.
TOKEN_PREFIX = "lkc_"  # noqa: S105 - a public prefix, not a secret
_TOKEN_BYTES = 32
# The longest token header worth reading; anything longer is refused unread.
MAX_TOKEN_LENGTH = 100


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_hash(a: str, b: str) -> bool:
    """Constant-time comparison of two token hashes."""
    return hmac.compare_digest(a.encode(), b.encode())


def bearer_token(header: str | None) -> tuple[str | None, str | None]:
    """(token, None) from an `Authorization: Bearer lkc_…` header, or (None, why not)."""
    if not header:
        return None, "no token: send Authorization: Bearer <token>"
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None, "the Authorization header is not 'Bearer <token>'"
    if len(token) > MAX_TOKEN_LENGTH or not token.startswith(TOKEN_PREFIX):
        return None, f"not a Latchkey client token (they start with {TOKEN_PREFIX})"
    return token, None
