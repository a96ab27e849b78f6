"""Extensions: more time on a live grant, through the same approval path as a request.

An extension is an AccessRequest with `extends_id` set. It is submitted, decided (by
approvers, by the on_request hook, or automatically within the flow's limits), timed
out or cancelled exactly like a request; once approved, the worker adds its time to the
grant it extends in one compare-and-set and the extension ends as `extended`. The grant
keeps its access throughout: nothing is revoked and re-granted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session

from app.audit import AuditLog
from app.flows.schema import Flow, format_duration
from app.lifecycle import lock_request, record, transition
from app.models import AccessRequest, Grant, RequestStatus
from app.queries import extensions_of, grant_of

S = RequestStatus


def extension_problem(
    session: Session,
    flow: Flow,
    parent: AccessRequest,
    grant: Grant | None,
    extra: timedelta,
    now: datetime,
) -> str | None:
    """Why this grant cannot be extended by `extra` now (None when it can)."""
    if parent.status != S.ACTIVE or grant is None or grant.expires_at <= now:
        return (
            f"Your access to {parent.target} has already ended, so it cannot be extended. "
            "Request it again with `/access`."
        )
    if flow.max_extensions == 0:
        return f"The flow {flow.name} does not allow extensions; request again when it ends."
    used = len(extensions_of(session, parent.id, (S.EXTENDED,)))
    if used >= flow.max_extensions:
        return (
            f"This grant was already extended {used} time{'s' if used != 1 else ''}, "
            f"the most {flow.name} allows."
        )
    if extra > flow.max_duration:
        return f"An extension can add at most {format_duration(flow.max_duration)}."
    total = grant.expires_at - grant.granted_at + extra
    if total > flow.total_duration_cap:
        room = flow.total_duration_cap - (grant.expires_at - grant.granted_at)
        return (
            f"That would make {format_duration(total)} in all; {flow.name} allows at most "
            f"{format_duration(flow.total_duration_cap)} per grant"
            + (f", so at most {format_duration(room)} more." if room.total_seconds() > 0 else ".")
        )
    return None


def request_extension(
    *,
    session: Session,
    audit: AuditLog,
    flow: Flow,
    parent_id: uuid.UUID,
    requester_id: str,
    extra: timedelta,
    reason: str,
    now: datetime,
) -> AccessRequest | str:
    """Store an extension request, or say why there can be none."""
    parent = lock_request(session, parent_id)
    if parent is None or parent.extends_id is not None:
        return "That button does not point at a grant."
    if parent.requester_id != requester_id:
        record(
            session, audit, parent, "extension_refused", requester_id, {"reason": "not the holder"}
        )
        return "Only the person who holds this access can extend it."
    if extensions_of(session, parent.id, (S.PENDING, S.APPROVED)):
        return "An extension of this grant is already waiting for a decision."
    problem = extension_problem(session, flow, parent, grant_of(session, parent.id), extra, now)
    if problem:
        return problem
    extension = AccessRequest(
        flow=parent.flow,
        target=parent.target,
        requester_id=requester_id,
        reason=reason.strip(),
        requested_seconds=int(extra.total_seconds()),
        extends_id=parent.id,
    )
    session.add(extension)
    session.flush()
    record(
        session,
        audit,
        extension,
        "extension_requested",
        requester_id,
        {
            "extends": str(parent.id),
            "duration_seconds": extension.requested_seconds,
            "reason": extension.reason,
        },
    )
    return extension


@dataclass(frozen=True)
class Applied:
    """What applying an approved extension did."""

    extension: AccessRequest | None
    grant: Grant | None = None
    problem: str | None = None


def apply_extension(
    *, session: Session, audit: AuditLog, flow: Flow, extension_id: uuid.UUID, now: datetime
) -> Applied:
    """approved extension -> extended, moving its grant's end later in the same transaction.

    The timed revoke scheduled for the old end then finds the grant not yet due and does
    nothing. An extension approved after its grant ended fails with a clear word.
    """
    extension = lock_request(session, extension_id)
    if extension is None or extension.status != S.APPROVED or extension.extends_id is None:
        return Applied(extension)
    parent = lock_request(session, extension.extends_id)
    assert parent is not None
    grant = grant_of(session, parent.id)
    problem = extension_problem(session, flow, parent, grant, extension.duration, now)
    if problem or grant is None:
        failed = transition(
            session,
            audit,
            extension.id,
            expected=S.APPROVED,
            new=S.FAILED,
            event="extension_failed",
            actor="latchkey",
            details={"error": problem},
            values={"failure": problem},
        )
        return Applied(failed, problem=problem)
    old_end = grant.expires_at
    new_end = old_end + extension.duration
    moved = session.execute(
        update(Grant)
        .where(Grant.id == grant.id, Grant.expires_at == old_end)  # type: ignore[arg-type]
        .values(expires_at=new_end)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return Applied(extension)  # someone moved it first; the caller's task re-reads
    done = transition(
        session,
        audit,
        extension.id,
        expected=S.APPROVED,
        new=S.EXTENDED,
        event="extension_applied",
        actor="latchkey",
        details={"extends": str(parent.id)},
    )
    record(
        session,
        audit,
        parent,
        "extended",
        extension.requester_id,
        {
            "extension": str(extension.id),
            "added_seconds": int(extension.duration.total_seconds()),
            "from_expires_at": old_end.isoformat(),
            "expires_at": new_end.isoformat(),
        },
    )
    session.refresh(grant)
    return Applied(done, grant)


def void_pending_extensions(
    *, session: Session, audit: AuditLog, request_id: uuid.UUID
) -> list[uuid.UUID]:
    """When a grant ends, its undecided extensions can no longer apply: close them."""
    voided = []
    for extension in extensions_of(session, request_id, (S.PENDING,)):
        if transition(
            session,
            audit,
            extension.id,
            expected=S.PENDING,
            new=S.CANCELLED,
            event="extension_void",
            actor="latchkey",
            details={"reason": "the grant ended before a decision"},
        ):
            voided.append(extension.id)
    return voided
