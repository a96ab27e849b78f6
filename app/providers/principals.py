"""The shape of a principal at each built-in provider, checked when a request is made.

Kept apart from the providers so the web process checks a requester's identity without
importing boto3 or the Google clients inside Slack's 3-second window.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateUser.html
_IAM_USER = re.compile(r"[\w+=,.@-]{1,64}")
# The member types a Latchkey principal may name at Google; a bare email is a `user:`.
GCP_MEMBER_TYPES = ("user", "group", "serviceAccount")
_EMAIL = re.compile(r"[^@\s:]+@[^@\s:]+\.[^@\s:]+")


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
    kind, sep, email = principal.partition(":")
    if not sep:
        email = principal
    elif kind not in GCP_MEMBER_TYPES:
        return f"{principal!r} has type {kind!r}; GCP access takes user:, group: or serviceAccount:"
    if not _EMAIL.fullmatch(email):
        return f"{principal!r} is not an email address, which GCP IAM needs for a member"
    return None


def email_problem(principal: str) -> str | None:
    if _EMAIL.fullmatch(principal):
        return None
    return f"{principal!r} is not an email address, which the identity provider's group needs"


def okta_login_problem(principal: str) -> str | None:
    # Okta logins are emails by default but may be any unique name (no spaces, ≤ 100).
    if 0 < len(principal) <= 100 and not any(c.isspace() for c in principal):
        return None
    return "an Okta login is 1-100 characters without spaces (an email by default)"


def login_owner_problem(principal: str) -> str | None:
    # Whom an ephemeral login is for (its comment): the person's email by default.
    if 0 < len(principal) <= 200 and principal.isprintable():
        return None
    return "the person an ephemeral login is for is named in 1-200 printable characters"


BUILTIN: dict[str, Callable[[str], str | None]] = {
    "aws_iam_group": iam_user_problem,
    "aws_role": iam_user_problem,
    "aws_sso": identity_center_user_problem,
    "gcp_role": gcp_member_problem,
    "gcp_impersonation": gcp_member_problem,
    "google_group": email_problem,
    "entra_group": email_problem,
    "okta_group": okta_login_problem,
    "postgres_login": login_owner_problem,
    "postgres_account": login_owner_problem,
    "mariadb_login": login_owner_problem,
}
