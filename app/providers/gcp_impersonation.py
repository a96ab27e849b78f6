"""The right to impersonate a GCP service account, for as long as the grant lasts.

roles/iam.serviceAccountTokenCreator on the account's own IAM policy, with the same
expiring condition as role grants: Google stops minting tokens for the member at the
grant's end. (Tokens minted before then live out their own lifetime, one hour by default.)
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from app.flows.schema import GcpImpersonationTarget
from app.providers.base import GrantSpec
from app.providers.gcp_policy import Clock, IamPolicyEditor, Sleep, principal_key

TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"  # noqa: S105 (a role name, not a secret)


def account_resource(target: GcpImpersonationTarget) -> str:
    # "-" lets IAM find the account's project from its email.
    return f"projects/-/serviceAccounts/{target.service_account}"


class GcpImpersonationProvider:
    name = "gcp_impersonation"
    native_expiry = True

    def __init__(
        self,
        iam: Any,
        *,
        sleep: Sleep = time.sleep,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        """`iam`: a google.cloud.iam_admin_v1 IAMClient."""
        self._editor = IamPolicyEditor(iam, sleep=sleep, clock=clock)

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        resource = account_resource(spec.target)
        return self._editor.grant(resource, TOKEN_CREATOR, spec.principal, spec.expires_at)

    def revoke(self, spec: GrantSpec) -> dict[str, Any]:
        return self._editor.revoke(account_resource(spec.target), TOKEN_CREATOR, spec.principal)

    def check(self, spec: GrantSpec) -> bool:
        return self._editor.check(account_resource(spec.target), TOKEN_CREATOR, spec.principal)

    def provisioned(self, target: GcpImpersonationTarget) -> list[str]:
        """Members of Latchkey's token-creator bindings on the account (orphan detection)."""
        return self._editor.provisioned(account_resource(target), TOKEN_CREATOR)

    def member_scope(self, target: GcpImpersonationTarget) -> str:
        return account_resource(target)

    def members(self, target: GcpImpersonationTarget) -> dict[str, set[str]]:
        """Holders of Latchkey's token-creator binding on the account, from one policy read."""
        held = self._editor.holders(account_resource(target)).get(TOKEN_CREATOR, set())
        return {target.resource: held}

    def lists_own(self, target: GcpImpersonationTarget) -> bool:
        return True  # members lists only bindings carrying Latchkey's condition

    def principal_key(self, principal: str) -> str:
        return principal_key(principal)

    def verify(self, target: GcpImpersonationTarget) -> list[str]:
        return self._editor.verify(account_resource(target), "iam.serviceAccounts.setIamPolicy")
