"""The Flow schema: what can be requested, by whom, who approves, for how long.

A flow file in `flows/` builds one `Flow`; pydantic validates it when the file loads,
so a mistake is reported with the field at fault before any process starts.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_SLACK_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")
_SLACK_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")
# IAM names: https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateGroup.html
_IAM_NAME = re.compile(r"^[\w+=,.@-]{1,128}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AwsIamGroupTarget(_Strict):
    """Membership of an AWS IAM group for the requester's IAM user."""

    provider: Literal["aws_iam_group"] = "aws_iam_group"
    name: str = Field(description="what requesters pick; unique within the flow")
    group_name: str
    description: str = ""

    @field_validator("group_name")
    @classmethod
    def _iam_group_name(cls, value: str) -> str:
        if not _IAM_NAME.match(value):
            raise ValueError("not a valid IAM group name (1-128 of letters, digits, +=,.@_-)")
        return value


Target = Annotated[AwsIamGroupTarget, Field(discriminator="provider")]


class Approvers(_Strict):
    """Who may decide: Slack user ids and user-group ids, resolved at click time."""

    users: tuple[str, ...] = ()
    usergroups: tuple[str, ...] = ()

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


class Identity(_Strict):
    """How a Slack user becomes a cloud principal: their profile email unless mapped."""

    # Slack user id or email -> principal. Anyone not listed uses their profile email.
    principals: dict[str, str] = Field(default_factory=dict)


class Flow(_Strict):
    """One access flow, as the admin wrote it."""

    name: str
    description: str
    targets: tuple[Target, ...] = Field(min_length=1)
    approvers: Approvers
    approval_channel: str
    durations: tuple[timedelta, ...] = Field(min_length=1)
    max_duration: timedelta
    reason_required: bool = True
    identity: Identity = Field(default_factory=Identity)

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
        if not self.approvers.users and not self.approvers.usergroups:
            raise ValueError("approvers: list at least one Slack user or user group")
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
