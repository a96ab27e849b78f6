"""The WebAuthn ceremonies, through py_webauthn: options for the browser, and checks of
what it sends back (challenge, origin, relying party id, signature, sign count).

The relying party is LATCHKEY_PUBLIC_URL's host; the expected origin is that URL. An
approval's challenge begins with the request's id (16 bytes) followed by 16 random bytes:
the authenticator signs client data holding it, so the assertion is about that request
and no other, and the challenge is stored on the single-use link and checked once."""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialRequestOptions,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from app.config import Settings
from app.models import Passkey, WebLink

RP_NAME = "Latchkey"
TIMEOUT_MS = 120_000


class CeremonyFailed(Exception):
    """The browser's answer does not verify; the message says why, for the page."""


@dataclass(frozen=True)
class RelyingParty:
    id: str
    origin: str

    @classmethod
    def of(cls, settings: Settings) -> RelyingParty:
        if not settings.public_url:
            raise CeremonyFailed("Passkeys need LATCHKEY_PUBLIC_URL, which is not set.")
        return cls(id=urlsplit(settings.public_url).hostname or "", origin=settings.public_url)


# A setup link's state, kept in its `challenge`: someone who already has a passkey proves it
# is them with one (a stolen Slack session alone must not add the thief's passkey) before
# the new one is made. "up:<c>" an assertion is awaited; "ok" it verified; "reg:<c>" /
# "reg+ok:<c>" a registration is awaited (without / after that proof).
STEP_UP, STEPPED, REG, REG_STEPPED = "up:", "ok", "reg:", "reg+ok:"


def needs_step_up(link: WebLink, have: list[Passkey]) -> bool:
    return bool(have) and not (link.challenge or "").startswith((STEPPED, REG_STEPPED))


def step_up_options(rp: RelyingParty, link: WebLink, have: list[Passkey]) -> str:
    """Options for navigator.credentials.get() with one of the person's passkeys, marked
    so the page knows to ask for it first."""
    challenge = secrets.token_bytes(32)
    link.challenge = STEP_UP + bytes_to_base64url(challenge)
    options = _assertion_options(rp, challenge, have)
    return json.dumps({**json.loads(options_to_json(options)), "mode": "step-up"})


def verify_step_up(rp: RelyingParty, link: WebLink, have: list[Passkey], body: bytes) -> None:
    if not (link.challenge or "").startswith(STEP_UP):
        raise CeremonyFailed("Start again: this page asked for no passkey yet.")
    _assert(rp, base64url_to_bytes(link.challenge[len(STEP_UP) :]), have, body)
    link.challenge = STEPPED


def registration_options(rp: RelyingParty, link: WebLink, name: str, have: list[Passkey]) -> str:
    """Options for navigator.credentials.create(); the challenge is kept on the link."""
    challenge = secrets.token_bytes(32)
    stepped = (link.challenge or "").startswith((STEPPED, REG_STEPPED))
    link.challenge = (REG_STEPPED if stepped else REG) + bytes_to_base64url(challenge)
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=RP_NAME,
        user_id=link.user_id.encode(),
        user_name=name,
        user_display_name=name,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
    )
    return options_to_json(options)


@dataclass(frozen=True)
class NewPasskey:
    credential_id: str
    public_key: str
    sign_count: int


def verify_registration(rp: RelyingParty, link: WebLink, body: bytes) -> NewPasskey:
    state = link.challenge or ""
    prefix = next((p for p in (REG_STEPPED, REG) if state.startswith(p)), None)
    if prefix is None:
        raise CeremonyFailed("Start again: this page asked for no passkey yet.")
    try:
        verified = verify_registration_response(
            credential=_credential(body),
            expected_challenge=base64url_to_bytes(state[len(prefix) :]),
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise CeremonyFailed(f"The passkey could not be registered: {exc}") from None
    return NewPasskey(
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=bytes_to_base64url(verified.credential_public_key),
        sign_count=verified.sign_count,
    )


def approval_challenge(request_id: uuid.UUID) -> bytes:
    return request_id.bytes + secrets.token_bytes(16)


def approval_options(rp: RelyingParty, link: WebLink, passkeys: list[Passkey]) -> str:
    """Options for navigator.credentials.get(): only this person's passkeys are allowed."""
    assert link.request_id is not None
    challenge = approval_challenge(link.request_id)
    link.challenge = bytes_to_base64url(challenge)
    options = _assertion_options(rp, challenge, passkeys)
    return options_to_json(options)


def verify_approval(
    rp: RelyingParty, link: WebLink, passkeys: list[Passkey], body: bytes
) -> Passkey:
    """The person's passkey that signed this request's challenge (its sign count moved
    on), or CeremonyFailed: another person's passkey, a stale or replayed assertion."""
    if not link.challenge or link.request_id is None:
        raise CeremonyFailed("Start again: this page asked for no passkey yet.")
    challenge = base64url_to_bytes(link.challenge)
    if challenge[:16] != link.request_id.bytes:
        raise CeremonyFailed("This confirmation is not about this request.")
    return _assert(rp, challenge, passkeys, body)


def _assert(rp: RelyingParty, challenge: bytes, passkeys: list[Passkey], body: bytes) -> Passkey:
    """The person's passkey that signed this challenge (its sign count moved on)."""
    credential = _credential(body)
    used = next((p for p in passkeys if p.credential_id == credential.get("id")), None)
    if used is None:
        raise CeremonyFailed(
            "That passkey is not one of yours registered with Latchkey: only the person "
            "this link was made for can confirm with it."
        )
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=base64url_to_bytes(used.public_key),
            credential_current_sign_count=used.sign_count,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise CeremonyFailed(f"The passkey's answer does not verify: {exc}") from None
    used.sign_count = verified.new_sign_count
    return used


def _assertion_options(
    rp: RelyingParty, challenge: bytes, passkeys: list[Passkey]
) -> PublicKeyCredentialRequestOptions:
    """Options for navigator.credentials.get(): only these passkeys, user verified."""
    return generate_authentication_options(
        rp_id=rp.id,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        allow_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(p.credential_id)) for p in passkeys
        ],
        user_verification=UserVerificationRequirement.REQUIRED,
    )


def _credential(body: bytes) -> dict[str, Any]:
    try:
        credential = json.loads(body)
    except ValueError:
        raise CeremonyFailed("The browser's answer is not JSON.") from None
    if not isinstance(credential, dict):
        raise CeremonyFailed("The browser's answer is not a credential.")
    return credential
