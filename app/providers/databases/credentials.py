"""Names and passwords of the logins Latchkey makes, derived, never stored.

A login's password is HMAC-SHA256(LATCHKEY_CREDENTIALS_KEY, its name and a random nonce),
so nothing secret is written anywhere (database, audit trail, task message, log): the
nonce, kept with the grant and on the login itself, is useless without the key, and the
holder's "Show credentials" derives the password again. The nonce is new each time a
login is created, so a password seen during one grant never opens the next one.

A login's name is derived the same way from the target and the person, so each person has
one login per target (overlapping grants share it, as they share a group membership) and
its name does not say whose it is; the login's comment does, for the database's admins.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

# A login Latchkey made: its name, and the comment it carries (nonce, then the person).
LOGIN_PREFIX = "lk_"
LOGIN_NAME = re.compile(r"lk_[0-9a-f]{20}")
COMMENT = re.compile(r"latchkey login (?P<nonce>[0-9a-f]{32}) for (?P<principal>.+)", re.S)


def login_name(key: bytes, resource: str, principal: str) -> str:
    """`lk_` and 20 hex digits: a valid identifier in PostgreSQL and MySQL alike (MySQL
    allows 32 characters in a user name), the same for the same person and target."""
    digest = hmac.new(key, f"login|{resource}|{principal}".encode(), hashlib.sha256)
    return LOGIN_PREFIX + digest.hexdigest()[:20]


def new_nonce() -> str:
    return secrets.token_hex(16)


def password(key: bytes, login: str, nonce: str) -> str:
    """32 characters of base64url (192 bits), from the key, the login and its nonce."""
    digest = hmac.new(key, f"password|{login}|{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def comment(nonce: str, principal: str) -> str:
    return f"latchkey login {nonce} for {principal}"


def parse_comment(text: str | None) -> tuple[str, str] | None:
    """(nonce, principal) of a comment Latchkey wrote; None for any other."""
    return _nonce_and_person(COMMENT, text)


def _nonce_and_person(pattern: re.Pattern[str], text: str | None) -> tuple[str, str] | None:
    match = pattern.fullmatch(text or "")
    return (match["nonce"], match["principal"]) if match else None


# A shared account checked out through Latchkey (app.providers.databases.postgres_account):
# its comment names the holder and the nonce of the password they were shown, until the
# account is checked in (rotated to a password nobody was shown).
CHECKOUT = re.compile(r"latchkey checkout (?P<nonce>[0-9a-f]{32}) for (?P<principal>.+)", re.S)
CHECKED_IN = "latchkey checked in"


def checkout_comment(nonce: str, principal: str) -> str:
    return f"latchkey checkout {nonce} for {principal}"


def parse_checkout(text: str | None) -> tuple[str, str] | None:
    """(nonce, holder) while the account is out; None when it is in (or never was)."""
    return _nonce_and_person(CHECKOUT, text)
