"""The shape of a principal at each built-in provider, checked when a request is made.

Kept apart from the providers so the web process checks a requester's identity without
importing boto3 or the Google clients inside Slack's 3-second window.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateUser.html
_IAM_USER = re.compile(r"[\w+=,.@-]{1,64}")
# What Google accepts after `user:`/`group:`/`serviceAccount:` is an email address.
_EMAIL = re.compile(r"[^@\s:]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_GCP_MEMBER = re.compile(r"(?:(?:user|group|serviceAccount):)?" + _EMAIL.pattern)


def iam_user_problem(principal: str) -> str | None:
    if _IAM_USER.fullmatch(principal):
        return None
    return "an IAM user name is 1-64 of letters, digits and +=,.@_-"


def identity_center_user_problem(principal: str) -> str | None:
    # Identity Center users are found by email or by user name (1-128, no spaces).
    if 0 < len(principal) <= 128 and not any(c.isspace() for c in principal):
        return None
    return "an IAM Identity Center user is an email or a user name (1-128, no spaces)"


def gcp_member_problem(principal: str) -> str | None:
    if _GCP_MEMBER.fullmatch(principal):
        return None
    return "a Google Cloud principal is an email (or user:/group:/serviceAccount: and an email)"


BUILTIN: dict[str, Callable[[str], str | None]] = {
    "aws_iam_group": iam_user_problem,
    "aws_role": iam_user_problem,
    "aws_sso": identity_center_user_problem,
    "gcp_role": gcp_member_problem,
    "gcp_impersonation": gcp_member_problem,
}
