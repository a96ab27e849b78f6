"""What a flow can grant: one model per kind of target, each checking its provider's
identifiers (ARNs, account ids, project ids…) by format when the flow file loads.

`latchkey flows check --online` asks the providers whether they also exist.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from app.flows.base_targets import (  # noqa: F401 (re-exported)
    SLACK_CHANNEL,
    Routed,
    Strict,
    _matching,
)
from app.flows.db_targets import MariaDBLoginTarget, PostgresAccountTarget, PostgresLoginTarget

# IAM names: https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateGroup.html
_IAM_NAME = re.compile(r"^[\w+=,.@-]{1,128}$")
# Formats from the AWS and Google API references, checked when a flow loads.
_PARTITION = r"arn:aws(?:-cn|-us-gov|-iso|-iso-b)?"
_AWS_ACCOUNT = re.compile(r"\d{12}")
_SSO_INSTANCE_ARN = re.compile(_PARTITION + r":sso:::instance/(?:sso)?ins-[a-zA-Z0-9-.]{16}")
_SSO_PERMISSION_SET_ARN = re.compile(
    _PARTITION + r":sso:::permissionSet/(?:sso)?ins-[a-zA-Z0-9-.]{16}/ps-[a-zA-Z0-9-./]{16}"
)
_IDENTITY_STORE = re.compile(
    r"d-[0-9a-f]{10}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)
_ROLE_ARN = re.compile(_PARTITION + r":iam::\d{12}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}")
_GCP_PROJECT = r"[a-z][a-z0-9-]{4,28}[a-z0-9]"
_GCP_RESOURCE = re.compile(rf"projects/{_GCP_PROJECT}|folders/\d{{1,20}}")
_GCP_ROLE = re.compile(
    r"roles/[a-zA-Z0-9_.]{1,64}|(?:projects|organizations)/[a-z0-9-]+/roles/[a-zA-Z0-9_.]{1,64}"
)
_GCP_SERVICE_ACCOUNT = re.compile(r"[a-z][a-z0-9-]{4,29}@[a-z0-9.-]+\.gserviceaccount\.com")
_PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_]{1,62}")
_GROUP_EMAIL = re.compile(r"[^@\s:/]+@[^@\s:/]+\.[^@\s:/]+")
# Entra object ids are GUIDs; Okta group ids are 20 characters starting 00g.
_ENTRA_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_OKTA_GROUP_ID = re.compile(r"00g[A-Za-z0-9]{17}")


class AwsIamGroupTarget(Routed):
    """Membership of an AWS IAM group for the requester's IAM user (no native expiry)."""

    provider: Literal["aws_iam_group"] = "aws_iam_group"
    name: str = Field(description="what requesters pick; unique within the flow")
    group_name: str
    # Every member of this group got there through Latchkey: reconciliation removes
    # members without a live grant. Leave False for groups people are also added to by hand.
    exclusive: bool = False
    description: str = ""

    @field_validator("group_name")
    @classmethod
    def _iam_group_name(cls, value: str) -> str:
        return _matching(value, _IAM_NAME, "an IAM group name (1-128 of letters, digits, +=,.@_-)")

    @property
    def resource(self) -> str:
        return f"group/{self.group_name}"


class AwsSsoPermissionSetTarget(Routed):
    """An IAM Identity Center permission set on one AWS account, assigned to the requester's
    Identity Center user (found in the identity store by the mapped principal, an email by
    default). Identity Center assignments have no native expiry: sessions already started
    last up to the permission set's session duration, so keep that short."""

    provider: Literal["aws_sso"] = "aws_sso"
    name: str
    instance_arn: str
    permission_set_arn: str
    account_id: str
    # Looked up from the instance when not given (one extra call per grant).
    identity_store_id: str | None = None
    description: str = ""

    @field_validator("instance_arn")
    @classmethod
    def _instance(cls, value: str) -> str:
        return _matching(
            value,
            _SSO_INSTANCE_ARN,
            "an Identity Center instance ARN (arn:aws:sso:::instance/ssoins-…)",
        )

    @field_validator("permission_set_arn")
    @classmethod
    def _permission_set(cls, value: str) -> str:
        return _matching(
            value,
            _SSO_PERMISSION_SET_ARN,
            "a permission set ARN (arn:aws:sso:::permissionSet/ssoins-…/ps-…)",
        )

    @field_validator("account_id")
    @classmethod
    def _account(cls, value: str) -> str:
        return _matching(value, _AWS_ACCOUNT, "an AWS account id (12 digits)")

    @field_validator("identity_store_id")
    @classmethod
    def _store(cls, value: str | None) -> str | None:
        if value is None:
            return value
        return _matching(value, _IDENTITY_STORE, "an identity store id (d-… or a UUID)")

    @property
    def resource(self) -> str:
        return f"{self.account_id}/{self.permission_set_arn}"


class AwsRoleTarget(Routed):
    """The right to assume an AWS role, given to the requester's IAM user as an inline policy
    that AWS itself stops honouring at the grant's end (`DateLessThan aws:CurrentTime`)."""

    provider: Literal["aws_role"] = "aws_role"
    name: str
    role_arn: str
    description: str = ""

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str) -> str:
        return _matching(value, _ROLE_ARN, "an IAM role ARN (arn:aws:iam::123456789012:role/name)")

    @property
    def role_name(self) -> str:
        return self.role_arn.rsplit("/", 1)[1]

    @property
    def resource(self) -> str:
        return self.role_arn


class GcpRoleBindingTarget(Routed):
    """A role on a GCP project or folder, bound to the requester with an IAM condition that
    Google stops honouring at the grant's end (`request.time < timestamp(…)`)."""

    provider: Literal["gcp_role"] = "gcp_role"
    name: str
    # "projects/<project-id>" or "folders/<number>"
    resource_name: str
    role: str
    description: str = ""

    @field_validator("resource_name")
    @classmethod
    def _resource(cls, value: str) -> str:
        return _matching(value, _GCP_RESOURCE, "projects/<project-id> or folders/<number>")

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        return _matching(
            value, _GCP_ROLE, "a GCP role (roles/…, projects/…/roles/… or organizations/…/roles/…)"
        )

    @property
    def resource(self) -> str:
        return f"{self.resource_name}/{self.role}"


class GcpImpersonationTarget(Routed):
    """The right to impersonate a GCP service account: roles/iam.serviceAccountTokenCreator on
    that account, with the same expiring IAM condition."""

    provider: Literal["gcp_impersonation"] = "gcp_impersonation"
    name: str
    service_account: str
    description: str = ""

    @field_validator("service_account")
    @classmethod
    def _account(cls, value: str) -> str:
        return _matching(
            value,
            _GCP_SERVICE_ACCOUNT,
            "a service account email (name@project.iam.gserviceaccount.com)",
        )

    @property
    def resource(self) -> str:
        return f"serviceAccounts/{self.service_account}"


class GoogleGroupTarget(Routed):
    """Membership of a Google Workspace / Cloud Identity group, created with Google's own
    expiry (`expiryDetail`) at the grant's end: it ends even when Latchkey is down. Someone
    already a member is left as they are (reported, never shortened or removed)."""

    provider: Literal["google_group"] = "google_group"
    name: str
    group_email: str
    description: str = ""

    @field_validator("group_email")
    @classmethod
    def _email(cls, value: str) -> str:
        return _matching(value, _GROUP_EMAIL, "a group's email address (eng-admins@example.com)")

    @property
    def resource(self) -> str:
        return f"groups/{self.group_email.lower()}"


class EntraGroupTarget(Routed):
    """Membership of a Microsoft Entra ID group through Microsoft Graph. `mode="pim"`: an
    active assignment through Privileged Identity Management for Groups, which Entra ends
    itself at the grant's end; `mode="membership"`: a plain member (`members/$ref`), ended
    by Latchkey's revoke and sweep. Someone already a member is left as they are."""

    provider: Literal["entra_group"] = "entra_group"
    name: str
    group_id: str
    mode: Literal["pim", "membership"]
    description: str = ""

    @field_validator("group_id")
    @classmethod
    def _guid(cls, value: str) -> str:
        return _matching(value, _ENTRA_ID, "an Entra group's object id (a GUID)").lower()

    @property
    def resource(self) -> str:
        return f"entra/{self.group_id}"


class OktaGroupTarget(Routed):
    """Membership of an Okta group (OKTA_GROUP) through Okta's Groups API, ended by
    Latchkey's revoke, sweep and reconciliation (Okta has no membership expiry). Someone
    already a member is left as they are."""

    provider: Literal["okta_group"] = "okta_group"
    name: str
    group_id: str
    description: str = ""

    @field_validator("group_id")
    @classmethod
    def _okta_id(cls, value: str) -> str:
        return _matching(
            value, _OKTA_GROUP_ID, "an Okta group id (00g followed by 17 letters/digits)"
        )

    @property
    def resource(self) -> str:
        return f"okta/{self.group_id}"


class CustomTarget(Routed):
    """Access granted by a provider class in the flows folder, registered under `using`."""

    provider: Literal["custom"] = "custom"
    name: str
    using: str
    # Handed to the provider as is; it checks them (`latchkey flows check` shows its words).
    settings: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    # A shared account the provider lends (an admin panel's one login): one holder at a
    # time (app.checkouts), and what an approved request meets while it is out, as for
    # PostgresAccountTarget. The provider rotates its password in grant and revoke, and
    # shows it through `credentials(spec)`. None: not exclusive.
    checkout: Literal["queue", "refuse"] | None = None

    @property
    def exclusive(self) -> bool:
        return self.checkout is not None

    @property
    def when_checked_out(self) -> str:
        return self.checkout or "queue"

    @field_validator("using")
    @classmethod
    def _registered_name(cls, value: str) -> str:
        return _matching(value, _PROVIDER_NAME, "a provider name (lowercase letters, digits, _)")

    @property
    def resource(self) -> str:
        return f"{self.using}/{sorted(self.settings.items())}"


Target = Annotated[
    AwsIamGroupTarget
    | AwsSsoPermissionSetTarget
    | AwsRoleTarget
    | GcpRoleBindingTarget
    | GcpImpersonationTarget
    | GoogleGroupTarget
    | EntraGroupTarget
    | OktaGroupTarget
    | PostgresLoginTarget
    | PostgresAccountTarget
    | MariaDBLoginTarget
    | CustomTarget,
    Field(discriminator="provider"),
]
BUILTIN_PROVIDERS = (
    "aws_iam_group",
    "aws_sso",
    "aws_role",
    "gcp_role",
    "gcp_impersonation",
    "google_group",
    "entra_group",
    "okta_group",
    "postgres_login",
    "postgres_account",
    "mariadb_login",
)


def provider_of(target: Any) -> str:
    """The registry name of the provider that grants this target."""
    return target.using if isinstance(target, CustomTarget) else target.provider
