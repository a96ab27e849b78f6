"""The OpenID Connect authorization code flow, as a confidential client: Authlib's OAuth 2
client talks to the provider (discovery, authorize URL, token exchange with the client's
secret), joserfc checks the ID token: its signature against the provider's JWKS, issuer,
audience, expiry and the nonce this login was started with.

The state is random per login and kept on the single-use link (and in a cookie of the
browser that opened it); the nonce is derived from the state, so the ID token is bound
to that one login."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from app.config import Settings

SCOPES = "openid email profile"
DISCOVERY_TTL = 3600.0
TIMEOUT = 10.0
_discovered: dict[str, tuple[float, dict[str, Any]]] = {}


class OidcFailed(Exception):
    """The provider refused, or its answer does not verify; the message says why."""


@dataclass(frozen=True)
class VerifiedIdentity:
    issuer: str
    subject: str
    email: str


def redirect_uri(settings: Settings) -> str:
    return f"{settings.public_url}/identity/callback"


def nonce_for(state: str) -> str:
    return hashlib.sha256(f"latchkey-nonce:{state}".encode()).hexdigest()


def discovery(settings: Settings) -> dict[str, Any]:
    issuer = settings.oidc_issuer or ""
    hit = _discovered.get(issuer)
    if hit and time.monotonic() - hit[0] < DISCOVERY_TTL:
        return hit[1]
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        answer = requests.get(url, timeout=TIMEOUT, allow_redirects=False)
        answer.raise_for_status()
        document = answer.json()
    except (requests.RequestException, ValueError) as exc:
        raise OidcFailed(f"the identity provider's discovery ({url}) failed: {exc}") from None
    if document.get("issuer") != issuer:
        raise OidcFailed(f"discovery names issuer {document.get('issuer')!r}, not {issuer!r}")
    _discovered[issuer] = (time.monotonic(), document)
    return document


def _client(settings: Settings) -> OAuth2Session:
    return OAuth2Session(
        settings.oidc_client_id,
        settings.oidc_client_secret.get_secret_value(),
        scope=SCOPES,
        redirect_uri=redirect_uri(settings),
        token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
    )


def authorize_url(settings: Settings, state: str) -> str:
    endpoint = discovery(settings)["authorization_endpoint"]
    url, _ = _client(settings).create_authorization_url(
        endpoint, state=state, nonce=nonce_for(state), prompt="login"
    )
    return str(url)


def finish_login(settings: Settings, code: str, state: str) -> VerifiedIdentity:
    """Exchange the code and check the ID token; the verified subject and email."""
    document = discovery(settings)
    try:
        token = _client(settings).fetch_token(
            document["token_endpoint"], code=code, grant_type="authorization_code", timeout=TIMEOUT
        )
    except Exception as exc:  # Authlib raises its OAuthError, requests its own
        raise OidcFailed(f"the identity provider refused the login: {exc}") from None
    raw = token.get("id_token")
    if not raw:
        raise OidcFailed("the identity provider sent no ID token")
    try:
        keys = requests.get(document["jwks_uri"], timeout=TIMEOUT, allow_redirects=False)
        keys.raise_for_status()
        key_set = KeySet.import_key_set(keys.json())
        decoded = jwt.decode(raw, key_set, algorithms=["RS256", "ES256"])
        jwt.JWTClaimsRegistry(
            leeway=60,
            iss={"essential": True, "value": settings.oidc_issuer},
            aud={"essential": True, "value": settings.oidc_client_id},
            sub={"essential": True},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce_for(state)},
        ).validate(decoded.claims)
    except (requests.RequestException, ValueError, JoseError) as exc:
        raise OidcFailed(f"the ID token does not verify: {exc}") from None
    claims = decoded.claims
    email = claims.get("email")
    if not email or claims.get("email_verified") is not True:
        raise OidcFailed("the identity provider did not vouch for an email (email_verified)")
    return VerifiedIdentity(str(claims["iss"]), str(claims["sub"]), str(email).lower())
