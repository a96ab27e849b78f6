"""Risky settings `latchkey flows check` warns about: valid, but worth a second look."""

from __future__ import annotations

from datetime import timedelta

from app.flows.loader import LoadedFlow
from app.flows.schema import MAX_APPROVER_DMS, format_duration

LONG_ACCESS = timedelta(hours=12)


def lint(loaded: LoadedFlow) -> list[str]:
    """Warnings for one flow, each naming the field at fault."""
    flow, hooks = loaded.flow, loaded.hooks
    warnings: list[str] = []
    if flow.approvers.is_empty and flow.auto_approve is None and "on_request" not in hooks:
        warnings.append("approvers: none listed, so no request of this flow can ever be approved")
    elif flow.approvers.is_empty:
        warnings.append(
            "approvers: none listed; only auto-approval can grant, and nobody can review"
        )
    if flow.allow_self_approval and flow.approvals_required == 1:
        warnings.append(
            "allow_self_approval: with approvals_required=1 a requester can approve their own request alone"
        )
    if flow.max_duration > LONG_ACCESS:
        warnings.append(
            f"max_duration: {format_duration(flow.max_duration)} is standing access in all but name "
            f"(over {format_duration(LONG_ACCESS)})"
        )
    if (
        not flow.extension_needs_approval
        and flow.max_extensions
        and flow.max_total_duration is None
    ):
        warnings.append(
            "max_total_duration: extensions apply without approval and no overall cap is set, "
            f"so a grant can run to {format_duration(flow.total_duration_cap)}"
        )
    if flow.pending_timeout is None:
        warnings.append("pending_timeout: None, so undecided requests wait forever")
    if flow.auto_approve is not None and flow.auto_approve.email_domains:
        warnings.append("auto_approve: approves everyone in an email domain without a human")
    if flow.requesters is None and flow.auto_approve is not None:
        warnings.append(
            "requesters: anyone may request a flow that approves some requests automatically"
        )
    if flow.approver_dms and len(flow.approvers.users) > MAX_APPROVER_DMS:
        warnings.append(
            f"approver_dms: {len(flow.approvers.users)} approvers listed; only the first "
            f"{MAX_APPROVER_DMS} get the card by DM (the channel's card reaches everyone)"
        )
    if flow.break_glass and flow.approvers.is_empty:
        warnings.append("break_glass: on, but no approvers to review break-glass use")
    return warnings
