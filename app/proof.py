"""What the audit chain proves was decided: the worker acts on that, never on a row alone.

A DB row can be edited by anyone with DB access; an audit event cannot be forged without
LATCHKEY_AUDIT_KEY (DESIGN.md, invariant 4). So before the worker grants, extends or
re-applies, it asks here whether keyed events show that this exact request — requester,
target, duration — was decided (approved with its quorum, auto-approved or break-glass;
its duration shortened since only by a keyed `duration_clamped`), and, for a live grant,
that its principal, resource and end are the ones the chain recorded.
The answer is a reason to refuse, or None.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session

from app.audit import AuditLog
from app.flows.policy import quorum
from app.flows.schema import Flow
from app.models import AccessRequest, AuditEvent, Grant
from app.queries import events_of

# How far a legacy `granted` event's end may sit from the DB's (see binding_problem).
LEGACY_END_SLACK = timedelta(seconds=10)
DECISIONS = ("approved", "auto_approved", "break_glass")
APPROVALS = ("approval_recorded", "approved")
CLAMPS = ("duration_clamped",)
ASKED = ("requested", "extension_requested")
ENDS = ("granted", "extended")


def _keyed(audit: AuditLog, session: Session, request: AccessRequest, names: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """This request's events of these names that the key vouches for, in chain order,
    grouped by name: one query per check, however many kinds of event it weighs."""
    keyed: dict[str, list[AuditEvent]] = {name: [] for name in names}
    for e in events_of(session, request.id, names):
        if audit.authentic(e) and e.flow == request.flow and e.target == request.target:
            keyed[e.event].append(e)
    return keyed


def _of(keyed: dict[str, list[AuditEvent]], names: tuple[str, ...]) -> list[AuditEvent]:
    """The events of these names, in chain order."""
    return sorted((e for name in names for e in keyed[name]), key=lambda e: e.seq)


def decision_problem(
    *, session: Session, audit: AuditLog, flow: Flow, request: AccessRequest
) -> str | None:
    """Why this request may not be granted (or its extension applied), or None if the
    audit chain holds a keyed decision for exactly what the row says."""
    keyed = _keyed(audit, session, request, ASKED + DECISIONS + APPROVALS + CLAMPS)
    # Filed by the requester, or on their behalf by whoever the row and the event both name.
    filer = request.requested_by or request.requester_id
    asked = [e for e in _of(keyed, ASKED) if e.actor == filer and e.subject == request.requester_id]
    if not asked:
        return "no keyed record of this request in the audit trail"
    if int(asked[0].details.get("duration_seconds", -1)) != request.requested_seconds:
        return "the requested duration differs from the audit trail"
    decided = _of(keyed, DECISIONS)
    if not decided:
        return "no keyed approval of this request in the audit trail"
    decision = decided[0]
    approved: int | None = None  # seconds, when shorter than asked
    if decision.event == "break_glass":
        if not flow.break_glass or decision.actor != request.requester_id:
            return "a break-glass record the flow does not allow"
        if flow.requester_assurance == "passkey" and not decision.details.get("passkey"):
            return "a break-glass activation no passkey confirmed"
    elif decision.event == "approved":
        # Whoever filed it for someone else is no second pair of eyes (lifecycle.decide
        # refuses them by the row; the keyed `requested` says who they were even when the
        # row's requested_by was blanked around their click).
        filer_id = asked[0].actor if asked[0].actor != request.requester_id else None
        approvals = [e for e in _of(keyed, APPROVALS) if e.actor != filer_id]
        if flow.approval_assurance == "passkey":  # a Slack click alone is not an approval
            approvals = [e for e in approvals if e.details.get("passkey")]
        counted = quorum(
            flow, requester_id=request.requester_id, approver_ids=[e.actor for e in approvals]
        )
        if not counted.reached:
            return f"the audit trail shows {counted.progress} approvals"
        approved = min(
            (
                int(e.details["approved_seconds"])
                for e in approvals
                if "approved_seconds" in e.details
            ),
            default=None,
        )
    # A grant shortened to the flow as it is now (granting.py) is recorded by a keyed
    # `duration_clamped`; the latest one is the approved duration, and it only shortens.
    clamps = _of(keyed, CLAMPS)
    if clamps:
        clamped = int(clamps[-1].details.get("approved_seconds", -1))
        if not 0 < clamped <= (approved or request.requested_seconds):
            return "a clamped duration longer than what was decided"
        approved = clamped
    if approved != request.approved_seconds:
        return "the approved duration differs from the audit trail"
    return None


def binding_problem(
    *, session: Session, audit: AuditLog, request: AccessRequest, grant: Grant
) -> str | None:
    """Why this live grant may not be applied again, or None if its principal, resource and
    end are the ones the keyed `granted` (and latest `extended`) events recorded."""
    keyed = _keyed(audit, session, request, ENDS)
    granted = keyed["granted"]
    if not granted:
        return "no keyed record of this grant in the audit trail"
    bound = granted[-1].details
    if bound.get("principal") != grant.principal:
        return "the grant's principal differs from the audit trail"
    # Grants made before the one-end change (0.1 and earlier) recorded neither the resource
    # nor the DB's own end in `granted`: their provider's end was up to a few seconds early.
    legacy = "resource" not in bound
    if not legacy and bound["resource"] != (grant.resource or grant.target):
        return "the grant's resource differs from the audit trail"
    ends = _of(keyed, ENDS)
    recorded = _moment(ends[-1])
    slack = LEGACY_END_SLACK if legacy and ends[-1].event == "granted" else timedelta(0)
    if recorded is None or abs(recorded - grant.expires_at) > slack:
        return "the grant's end differs from the audit trail"
    return None


def _moment(event: AuditEvent) -> datetime | None:
    raw = event.details.get("expires_at")
    try:
        return datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
