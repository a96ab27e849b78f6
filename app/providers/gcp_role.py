"""A role on a GCP project or folder, bound with an IAM condition that ends with the grant.

The binding's condition (`request.time < timestamp(…)`) is native expiry: Google stops
honouring it at the grant's end even if Latchkey's revoke never runs. Revoke still removes
the binding so the policy stays tidy and access ends early when someone revokes it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from app.flows.schema import GcpRoleBindingTarget
from app.providers.base import GrantSpec
from app.providers.gcp_policy import Clock, IamPolicyEditor, Sleep, principal_key


class GcpRoleBindingProvider:
    name = "gcp_role"
    native_expiry = True

    def __init__(
        self,
        projects: Any,
        folders: Any,
        *,
        sleep: Sleep = time.sleep,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        """`projects`/`folders`: google.cloud.resourcemanager_v3 ProjectsClient/FoldersClient."""
        self._projects = IamPolicyEditor(projects, sleep=sleep, clock=clock)
        self._folders = IamPolicyEditor(folders, sleep=sleep, clock=clock)

    def _editor(self, target: GcpRoleBindingTarget) -> IamPolicyEditor:
        return self._folders if target.resource_name.startswith("folders/") else self._projects

    def grant(self, spec: GrantSpec) -> dict[str, Any]:
        target: GcpRoleBindingTarget = spec.target
        return self._editor(target).grant(
            target.resource_name, target.role, spec.principal, spec.expires_at
        )

    def revoke(self, spec: GrantSpec) -> dict[str, Any]:
        target: GcpRoleBindingTarget = spec.target
        return self._editor(target).revoke(target.resource_name, target.role, spec.principal)

    def check(self, spec: GrantSpec) -> bool:
        target: GcpRoleBindingTarget = spec.target
        return self._editor(target).check(target.resource_name, target.role, spec.principal)

    def provisioned(self, target: GcpRoleBindingTarget) -> list[str]:
        """Members of Latchkey's bindings of the target's role (reconciliation's orphans)."""
        return self._editor(target).provisioned(target.resource_name, target.role)

    def member_scope(self, target: GcpRoleBindingTarget) -> str:
        """Every role on one project or folder is answered by one policy read."""
        return target.resource_name

    def members(self, target: GcpRoleBindingTarget) -> dict[str, set[str]]:
        """Holders of every role Latchkey bound on the target's project or folder, by the
        resource a target of that role names (`<project or folder>/<role>`)."""
        by_role = self._editor(target).holders(target.resource_name)
        return {f"{target.resource_name}/{role}": held for role, held in by_role.items()}

    def lists_own(self, target: GcpRoleBindingTarget) -> bool:
        return True  # members lists only bindings carrying Latchkey's condition

    def principal_key(self, principal: str) -> str:
        return principal_key(principal)

    def verify(self, target: GcpRoleBindingTarget) -> list[str]:
        kind = "folders" if target.resource_name.startswith("folders/") else "projects"
        permission = f"resourcemanager.{kind}.setIamPolicy"
        return self._editor(target).verify(target.resource_name, permission)
