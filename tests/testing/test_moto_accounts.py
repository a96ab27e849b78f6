"""moto holds every test stack's AWS in one process, kept apart by account: emptying the
default account (what `moto_server()` does at its start and end) leaves a stack's alone."""

from __future__ import annotations

from typing import Any

from app.testing.aws_faults import MOTO_ACCOUNT_HEADER
from app.testing.moto import client, moto_server

STACK_ACCOUNT = "210987654321"


def _in_account(iam: Any, account: str) -> Any:
    def add_header(request: Any, **_: Any) -> None:
        request.headers[MOTO_ACCOUNT_HEADER] = account

    iam.meta.events.register("before-send.iam", add_header)
    return iam


def _groups(iam: Any) -> list[str]:
    return [g["GroupName"] for g in iam.list_groups()["Groups"]]


def test_a_server_started_and_stopped_beside_a_stack_leaves_the_stacks_aws() -> None:
    with moto_server() as endpoint:
        stack_iam = _in_account(client("iam", endpoint), STACK_ACCOUNT)
        stack_iam.create_group(GroupName="stack-admins")
        client("iam", endpoint).create_group(GroupName="module-admins")
        assert _groups(stack_iam) == ["stack-admins"]  # apart while both live
    with moto_server() as endpoint:  # another module's server: empty default account
        assert _groups(client("iam", endpoint)) == []
        assert _groups(_in_account(client("iam", endpoint), STACK_ACCOUNT)) == ["stack-admins"]
