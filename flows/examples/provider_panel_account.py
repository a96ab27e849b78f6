"""A custom provider that lends a shared account: the one admin login of a vendor's web
console, checked out to one holder at a time (`CustomTarget(..., checkout="queue")`).

Check-out (grant): the account's password is set, through the console's operator API, to
one derived from LATCHKEY_CREDENTIALS_KEY and a new nonce (as Latchkey's own database
logins are: nothing secret is stored anywhere), then its note is set to name the holder and
the nonce, and its sessions are ended. The holder reads the password with **Show
credentials** (`credentials`). Check-in (revoke): a random password nobody is shown, the
note `latchkey checked in`, sessions ended. Password first, note second, each time: a
crash in between leaves a note that does not match, and the retry rotates again.

Who holds the account is Latchkey's to decide (its `account_checkout` table, the same for
every shared account); this provider only rotates when asked, and tells from the note
whether a grant is a check-out or an extension of the same holder's.

    CustomTarget(name="console-admin", using="panel_account",
                 settings={"account": "admin"}, checkout="queue")

Settings: LATCHKEY_PANEL_URL and LATCHKEY_PANEL_TOKEN (an operator token of the console),
and LATCHKEY_CREDENTIALS_KEY. Tested against app/testing/panel_standin.py.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import urllib.error
import urllib.request
from typing import Any

from app.providers.base import GrantSpec, ProviderError
from app.providers.custom import CustomProvider
from app.providers.databases.credentials import (
    CHECKED_IN,
    checkout_comment,
    new_nonce,
    parse_checkout,
    password,
)

_ACCOUNT = re.compile(r"[a-z0-9_-]{1,64}")


class PanelAccount(CustomProvider):
    name = "panel_account"
    native_expiry = False  # the console has no expiry: Latchkey's revoke and sweep end it

    def __init__(self) -> None:
        self._url = os.environ.get("LATCHKEY_PANEL_URL", "").rstrip("/")
        self._token = os.environ.get("LATCHKEY_PANEL_TOKEN", "")
        self._key = os.environ.get("LATCHKEY_CREDENTIALS_KEY", "").encode()
        if not (
            self._url.startswith(("https://", "http://")) and self._token and len(self._key) >= 16
        ):
            raise ProviderError(
                "panel_account needs LATCHKEY_PANEL_URL (http or https), LATCHKEY_PANEL_TOKEN and a "
                "LATCHKEY_CREDENTIALS_KEY of at least 16 characters",
                transient=False,
            )

    @classmethod
    def settings_problems(cls, settings: dict[str, Any]) -> list[str]:
        account = settings.get("account")
        if not isinstance(account, str) or not _ACCOUNT.fullmatch(account):
            return ["settings.account: the console's account name (a-z, 0-9, _, -)"]
        return [f"settings.{key}: not a setting of panel_account" for key in sorted(settings)
                if key != "account"]  # fmt: skip

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        account = spec.target.settings["account"]
        held = parse_checkout(self._note(account))
        if held is not None and held[1] == spec.principal:
            return {"account": account, "rotated": False}  # a retry, or re-applied
        nonce = new_nonce()
        self._call("PUT", f"{account}/password", {"password": password(self._key, account, nonce)})
        self._call("PUT", f"{account}/note", {"note": checkout_comment(nonce, spec.principal)})
        ended = self._call("DELETE", f"{account}/sessions")["ended"]
        return {"account": account, "rotated": True, "sessions_terminated": ended}

    def revoke(self, spec: GrantSpec) -> dict[str, Any]:
        account = spec.target.settings["account"]
        held = parse_checkout(self._note(account))
        if held is None or held[1] != spec.principal:
            return {"account": account, "already_checked_in": True}
        self._call("PUT", f"{account}/password", {"password": secrets.token_urlsafe(32)})
        self._call("PUT", f"{account}/note", {"note": CHECKED_IN})
        ended = self._call("DELETE", f"{account}/sessions")["ended"]
        return {"account": account, "rotated": True, "sessions_terminated": ended}

    def check(self, spec: GrantSpec) -> bool:
        held = parse_checkout(self._note(spec.target.settings["account"]))
        return held is not None and held[1] == spec.principal

    def credentials(self, spec: GrantSpec) -> dict[str, str] | None:
        account = spec.target.settings["account"]
        held = parse_checkout(self._note(account))
        if held is None or held[1] != spec.principal:
            return None
        secret = password(self._key, account, held[0])
        return {"login": account, "password": secret, "connection": f"{self._url}/login"}

    def provisioned(self, target: Any) -> list[str]:
        held = parse_checkout(self._note(target.settings["account"]))
        return [held[1]] if held else []

    def verify(self, target: Any) -> list[str]:
        try:
            self._note(target.settings["account"])
        except ProviderError as exc:
            return [str(exc)]
        return []

    def _note(self, account: str) -> str:
        return str(self._call("GET", account).get("note", ""))

    def _call(self, method: str, path: str, body: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 (http or https: checked in __init__)
            f"{self._url}/api/accounts/{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            # The console said no (no such account, a refused password): not worth retrying.
            raise ProviderError(
                f"the console refused {method} {path.split('/')[0]}: HTTP {exc.code}",
                transient=exc.code >= 500 or exc.code == 429,
            ) from None
        except OSError as exc:
            raise ProviderError(f"the console is unreachable: {exc}", transient=True) from None
        return json.loads(raw) if raw else {}
