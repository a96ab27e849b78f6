"""The Flow schema: what can be requested, by whom, who approves, for how long.

A flow file in `flows/` builds one `Flow`; pydantic validates it when the file loads,
so a mistake is reported with the field at fault before any process starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_SLACK_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")
_SLACK_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")
# IAM names: https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateGroup.html
_IAM_NAME = re.compile(r"^[\w+=,.@-]{1,128}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-zA-Z0-9-]{1,63}\.)+[a-zA-Z]{2,63}$")
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AwsIamGroupTarget(_Strict):
    """Membership of an AWS IAM group for the requester's IAM user (no native expiry)."""

    provider: Literal["aws_iam_group"] = "aws_iam_group"
    name: str = Field(description="what requesters pick; unique within the flow")
    group_name: str
    description: str = ""

    @field_validator("group_name")
    @classmethod
    def _iam_group_name(cls, value: str) -> str:
        return _matching(value, _IAM_NAME, "an IAM group name (1-128 of letters, digits, +=,.@_-)")

    @property
    def resource(self) -> str:
        return f"group/{self.group_name}"


class AwsSsoPermissionSetTarget(_Strict):
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


class AwsRoleTarget(_Strict):
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


class GcpRoleBindingTarget(_Strict):
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


class GcpImpersonationTarget(_Strict):
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


class CustomTarget(_Strict):
    """Access granted by a provider class in the flows folder, registered under `using`."""

    provider: Literal["custom"] = "custom"
    name: str
    using: str
    # Handed to the provider as is; it checks them (`latchkey flows check` shows its words).
    settings: dict[str, Any] = Field(default_factory=dict)
    description: str = ""

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
    | CustomTarget,
    Field(discriminator="provider"),
]
BUILTIN_PROVIDERS = ("aws_iam_group", "aws_sso", "aws_role", "gcp_role", "gcp_impersonation")


def provider_of(target: Any) -> str:
    """The registry name of the provider that grants this target."""
    return target.using if isinstance(target, CustomTarget) else target.provider


def _matching(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"{value!r} is not {what}")
    return value


class People(_Strict):
    """A set of people: Slack user ids, user-group ids (members resolved when a decision is
    made) and, where it makes sense, email domains of Slack profiles."""

    users: tuple[str, ...] = ()
    usergroups: tuple[str, ...] = ()
    email_domains: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.users or self.usergroups or self.email_domains)

    def includes(
        self, user_id: str, email: str | None, group_members: Mapping[str, frozenset[str]]
    ) -> str | None:
        """Why this person is in the set (None when they are not)."""
        if user_id in self.users:
            return f"<@{user_id}> is listed"
        for group in self.usergroups:
            if user_id in group_members.get(group, frozenset()):
                return f"<@{user_id}> is in <!subteam^{group}>"
        domain = (email or "").rpartition("@")[2].lower()
        if domain and domain in self.email_domains:
            return f"their email is in {domain}"
        return None

    @field_validator("email_domains")
    @classmethod
    def _domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for domain in value:
            if not _DOMAIN.match(domain):
                raise ValueError(f"{domain!r} is not an email domain (like example.com)")
        return tuple(d.lower() for d in value)

    @field_validator("users")
    @classmethod
    def _user_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for user in value:
            if not _SLACK_USER.match(user):
                raise ValueError(f"{user!r} is not a Slack user id (U… or W…)")
        return value

    @field_validator("usergroups")
    @classmethod
    def _group_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for group in value:
            if not _SLACK_GROUP.match(group):
                raise ValueError(f"{group!r} is not a Slack user-group id (S…)")
        return value


# Approvers are People too; the name stays for the admin's readability.
Approvers = People


class Identity(_Strict):
    """How a Slack user becomes a principal at a provider.

    In order: the provider's own map, the flow's map, the flow's `get_principal` hook (when
    the module defines one, it decides for everyone not mapped), the Slack profile email
    (unless `use_email` is False). Map keys are Slack user ids or emails.
    """

    principals: dict[str, str] = Field(default_factory=dict)
    # Provider name (aws_sso, gcp_role, a custom provider's name…) -> its own map.
    per_provider: dict[str, dict[str, str]] = Field(default_factory=dict)
    use_email: bool = True


class Flow(_Strict):
    """One access flow, as the admin wrote it."""

    name: str
    description: str
    targets: tuple[Target, ...] = Field(min_length=1)
    approvers: People
    approval_channel: str
    durations: tuple[timedelta, ...] = Field(min_length=1)
    max_duration: timedelta
    # Who may request; None means everyone in the workspace.
    requesters: People | None = None
    # N approvals from N distinct approvers; one deny ends the request.
    approvals_required: int = Field(default=1, ge=1, le=10)
    # The requester may approve their own request (and counts toward the quorum) only
    # when this says so; `latchkey flows check` warns about it.
    allow_self_approval: bool = False
    # Break-glass: a requester may activate access at once (mandatory reason, a confirm
    # step); the channel is alerted loudly and an approver reviews it afterwards.
    break_glass: bool = False
    # People whose requests are approved without a human (declarative auto-approval).
    auto_approve: People | None = None
    # Requests with no decision in this time are timed out; approvers are reminded once
    # halfway. None: they wait until someone decides or the requester cancels.
    pending_timeout: timedelta | None = timedelta(hours=24)
    reason_required: bool = True
    reason_min_length: int = Field(default=0, ge=0, le=500)
    # A regular expression the reason must contain a match of (e.g. a ticket id), and the
    # words that tell the requester what is expected when it does not.
    reason_pattern: str | None = None
    reason_hint: str = ""
    identity: Identity = Field(default_factory=Identity)
    # The requester is warned this long before a grant ends, or a tenth of the grant's
    # length when that is shorter (a 20-minute grant is warned 2 minutes ahead). None: never.
    expiry_notice: timedelta | None = timedelta(minutes=10)
    # Extensions: how many a grant may have (0: none), whether each needs an approver
    # (through the same card as a request) or is granted automatically within the limits,
    # and the most a grant may last in all, extensions included (default: max_duration
    # for the grant and again for each allowed extension).
    max_extensions: int = Field(default=2, ge=0, le=20)
    extension_needs_approval: bool = True
    max_total_duration: timedelta | None = None

    @property
    def total_duration_cap(self) -> timedelta:
        return self.max_total_duration or self.max_duration * (1 + self.max_extensions)

    def notice_lead(self, window: timedelta) -> timedelta | None:
        """How long before the end of a grant of this length its holder is warned."""
        if self.expiry_notice is None:
            return None
        return min(self.expiry_notice, window / 10)

    @field_validator("reason_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError("must be lowercase letters, digits, '-' or '_' (at most 63)")
        return value

    @field_validator("approval_channel")
    @classmethod
    def _channel_id(cls, value: str) -> str:
        if not _SLACK_CHANNEL.match(value):
            raise ValueError(f"{value!r} is not a Slack channel id (C… or G…)")
        return value

    @field_validator("durations")
    @classmethod
    def _positive_sorted(cls, value: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
        if any(d <= timedelta(0) for d in value):
            raise ValueError("every duration must be longer than zero")
        if len(set(value)) != len(value):
            raise ValueError("durations are listed twice")
        return tuple(sorted(value))

    @model_validator(mode="after")
    def _consistent(self) -> Flow:
        if self.max_duration <= timedelta(0):
            raise ValueError("max_duration must be longer than zero")
        too_long = [d for d in self.durations if d > self.max_duration]
        if too_long:
            raise ValueError(
                f"durations {', '.join(format_duration(d) for d in too_long)} exceed "
                f"max_duration {format_duration(self.max_duration)}"
            )
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError("two targets share a name; target names must be unique")
        if self.approvers.email_domains:
            raise ValueError("approvers: email domains cannot approve; list users or user groups")
        if self.pending_timeout is not None and self.pending_timeout <= timedelta(0):
            raise ValueError("pending_timeout must be longer than zero (or None)")
        if self.expiry_notice is not None and self.expiry_notice <= timedelta(0):
            raise ValueError("expiry_notice must be longer than zero (or None)")
        if self.max_total_duration is not None and self.max_total_duration < self.max_duration:
            raise ValueError("max_total_duration cannot be shorter than max_duration")
        if self.reason_pattern and not self.reason_hint:
            raise ValueError(
                "reason_hint: say what reason_pattern expects (e.g. 'a JIRA ticket like OPS-123')"
            )
        return self

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)


def format_duration(duration: timedelta) -> str:
    """'1h 30m', '45s', '2d' — how durations appear in menus and messages."""
    seconds = int(duration.total_seconds())
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts) or "0s"


def dump_flow(flow: Flow) -> dict[str, Any]:
    return flow.model_dump(mode="json")
