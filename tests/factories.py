"""Builders for test state: flow files, people and requests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from textwrap import dedent
from typing import Any

from app.flows.schema import AwsIamGroupTarget, Flow, People

AUDIT_KEY = "test-audit-key-0123456789abcdef"
REQUESTER = "U0REQUESTER"
APPROVER = "U0APPROVER1"
SECOND_APPROVER = "U0APPROVER2"
GROUP_APPROVER = "U0GROUPLEAD"
OUTSIDER = "U0OUTSIDER"
APPROVER_GROUP = "S0LEADS"
CHANNEL = "C0APPROVALS"
DBA_CHANNEL = "C0DBAS"
WATCHER = "U0WATCHER"
HOOK_LEAD, HOOK_LEAD_EMAIL = "U0HOOKLEAD", "hal@example.com"
WATCH_CHANNEL = "C0WATCHING"
NO_BOT_CHANNEL = "C0NOBOT"
GROUP_NAME = "latchkey-test-admins"
# The audit trail of a request approved with one click: the click is kept, keyed, before
# its ack (decision_deferred); the worker decides it and records so (decision_resumed).
APPROVED_BY_CLICK = ["requested", "decision_deferred", "approved", "decision_resumed"]
IAM_USER = "requester@example.com"


def write_flow(
    directory: Path,
    *,
    name: str = "test-admin",
    durations: str = "timedelta(seconds=4), timedelta(seconds=6), timedelta(hours=1)",
    max_duration: str = "timedelta(hours=1)",
    extra: str = "",
    filename: str | None = None,
    hooks: str = "",
    targets: str = f'(AwsIamGroupTarget(name="admins", group_name="{GROUP_NAME}"),)',
    approvers: str = (
        f'Approvers(users=("{APPROVER}", "{SECOND_APPROVER}"), usergroups=("{APPROVER_GROUP}",))'
    ),
) -> Path:
    """Write a flow module the way an admin would, and return its path."""
    path = directory / (filename or f"{name.replace('-', '_')}.py")
    path.write_text(
        dedent(
            f'''
            from datetime import timedelta

            from app.flows.schema import *  # noqa: F403

            flow = Flow(
                name="{name}",
                description="Admin access for tests",
                targets={targets},
                approvers={approvers},
                approval_channel="{CHANNEL}",
                durations=({durations},),
                max_duration={max_duration},
                {extra}
            )
            '''
        )
        + dedent(hooks)
    )
    return path


def make_flow(**overrides: object) -> Flow:
    """The same flow as write_flow's, as an object, with fields overridden."""
    fields: dict[str, object] = {
        "name": "test-admin",
        "description": "Admin access for tests",
        "targets": (AwsIamGroupTarget(name="admins", group_name=GROUP_NAME),),
        "approvers": People(users=(APPROVER, SECOND_APPROVER), usergroups=(APPROVER_GROUP,)),
        "approval_channel": CHANNEL,
        "durations": (timedelta(seconds=4), timedelta(seconds=6), timedelta(hours=1)),
        "max_duration": timedelta(hours=1),
    }
    fields.update(overrides)
    return Flow(**fields)  # type: ignore[arg-type]


def activate(*, session: Any, audit: Any, request_id: Any, now: Any = None, **kwargs: Any) -> Any:
    """approved -> granting -> active as the worker does it: claim, then activate with the
    end the claim's holder handed to the provider (now + the request's duration)."""
    from app import lifecycle
    from app.db import utcnow
    from app.models import AccessRequest

    now = now or utcnow()
    owner = "test-worker"
    lifecycle.claim_grant(
        session=session,
        audit=audit,
        request_id=request_id,
        owner=owner,
        lease=timedelta(minutes=2),
        now=now,
    )
    request = session.get(AccessRequest, request_id)
    return lifecycle.activate(
        session=session,
        audit=audit,
        request_id=request_id,
        expires_at=now + request.duration,
        lease_owner=owner,
        now=now,
        **kwargs,
    )


def grant_row(
    session: Any,
    *,
    status: Any,
    expires_at: Any,
    flow: str = "test-admin",
    target: str = "admins",
    principal: str = IAM_USER,
    requested_seconds: int = 3600,
    reason: str = "incident",
    **grant: Any,
) -> Any:
    """A request in `status` with its grant row, written straight to the DB (no audit
    chain behind it): the state a sweep, a health check or a reconciliation pass reads.
    `grant` sets other Grant columns (resource, ended_at, notice_sent_for, granted_at)."""
    from app.models import AccessRequest, Grant

    request = AccessRequest(
        flow=flow,
        target=target,
        requester_id=REQUESTER,
        reason=reason,
        requested_seconds=requested_seconds,
        status=status,
    )
    session.add(request)
    session.flush()
    session.add(
        Grant(
            request_id=request.id,
            provider="aws_iam_group",
            target=target,
            principal=principal,
            expires_at=expires_at,
            **grant,
        )
    )
    return request.id
