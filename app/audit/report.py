"""Access reviews: who held what, for how long, approved by whom; who held X at time T.

Built from the Grant rows (what was applied, from when, until when) and the audit trail
(break-glass uses, extensions), so the report agrees with the chain `audit verify` checks.
"""

from __future__ import annotations

import csv
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TextIO

from sqlalchemy import or_, select
from sqlmodel import Session

from app.audit.export import neutralise
from app.db import utcnow
from app.flows.schema import format_duration
from app.models import AccessRequest, Approval, AuditEvent, Decision, Grant


@dataclass
class AccessRow:
    """One person's use of one target over the period."""

    requester_id: str
    flow: str
    target: str
    principals: set[str] = field(default_factory=set)
    grants: int = 0
    held: timedelta = timedelta(0)
    approvers: set[str] = field(default_factory=set)
    break_glass: int = 0
    extensions: int = 0


@dataclass(frozen=True)
class Holder:
    request_id: uuid.UUID
    requester_id: str
    principal: str
    flow: str
    start: datetime
    # When the access ended; for a live grant, when it is due to end (its expires_at).
    end: datetime
    live: bool


def _end(grant: Grant, now: datetime) -> datetime:
    return grant.ended_at or min(grant.expires_at, now)


def _overlapping(
    session: Session, since: datetime, until: datetime
) -> list[tuple[Grant, AccessRequest]]:
    rows = session.execute(
        select(Grant, AccessRequest)
        .join(AccessRequest, AccessRequest.id == Grant.request_id)  # type: ignore[arg-type]
        .where(
            Grant.granted_at < until,  # type: ignore[arg-type]
            or_(Grant.ended_at.is_(None), Grant.ended_at > since),  # type: ignore[union-attr,operator]
        )
        .order_by(Grant.granted_at)
    ).all()
    return list(rows)  # type: ignore[arg-type]  # each Row is a (Grant, AccessRequest) tuple


def access_report(session: Session, since: datetime, until: datetime) -> list[AccessRow]:
    now = utcnow()
    rows: dict[tuple[str, str, str], AccessRow] = {}
    pairs = [(g, r) for g, r in _overlapping(session, since, until) if _end(g, now) > since]
    ids = [r.id for _, r in pairs]
    approvers: dict[uuid.UUID, set[str]] = defaultdict(set)
    counts: dict[tuple[uuid.UUID, str], int] = defaultdict(int)
    for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
        for approval in session.execute(
            select(Approval).where(
                Approval.request_id.in_(chunk),  # type: ignore[attr-defined]
                Approval.decision == Decision.APPROVE,  # type: ignore[arg-type]
            )
        ).scalars():
            approvers[approval.request_id].add(approval.approver_id)
        for request_id, name in session.execute(
            select(AuditEvent.request_id, AuditEvent.event).where(
                AuditEvent.request_id.in_(chunk),  # type: ignore[union-attr]
                AuditEvent.event.in_(("break_glass", "extended", "auto_approved")),  # type: ignore[attr-defined]
            )
        ):
            counts[(request_id, name)] += 1
    for grant, request in pairs:
        key = (request.requester_id, request.flow, request.target)
        row = rows.setdefault(key, AccessRow(*key))
        row.grants += 1
        row.principals.add(grant.principal)
        row.held += min(_end(grant, now), until) - max(grant.granted_at, since)
        row.approvers |= approvers[request.id]
        if counts[(request.id, "auto_approved")]:
            row.approvers.add("(automatic)")
        row.break_glass += counts[(request.id, "break_glass")]
        row.extensions += counts[(request.id, "extended")]
    return sorted(rows.values(), key=lambda r: (r.requester_id, r.flow, r.target))


REPORT_COLUMNS = (
    "requester",
    "principals",
    "flow",
    "target",
    "grants",
    "seconds_held",
    "approvers",
    "break_glass_uses",
    "extensions",
)


def write_report_csv(rows: Iterable[AccessRow], out: TextIO) -> None:
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                neutralise(v)
                for v in (
                    row.requester_id,
                    " ".join(sorted(row.principals)),
                    row.flow,
                    row.target,
                    str(row.grants),
                    str(int(row.held.total_seconds())),
                    " ".join(sorted(row.approvers)),
                    str(row.break_glass),
                    str(row.extensions),
                )
            ]
        )


def write_report_text(rows: list[AccessRow], out: TextIO) -> None:
    if not rows:
        out.write("No access was held in this period.\n")
        return
    for row in rows:
        flags = []
        if row.break_glass:
            flags.append(f"BREAK-GLASS x{row.break_glass}")
        if row.extensions:
            flags.append(f"{row.extensions} extension{'s' if row.extensions != 1 else ''}")
        out.write(
            f"{row.requester_id} ({', '.join(sorted(row.principals))}) held {row.flow}/{row.target}: "
            f"{row.grants} grant{'s' if row.grants != 1 else ''}, "
            f"{format_duration(row.held)} in all, approved by "
            f"{', '.join(sorted(row.approvers)) or 'nobody'}"
            + (f" — {'; '.join(flags)}" if flags else "")
            + "\n"
        )
    people = {r.requester_id for r in rows}
    out.write(f"{len(people)} people, {sum(r.grants for r in rows)} grants.\n")


def who_had(session: Session, target: str, at: datetime) -> list[Holder]:
    """Everyone whose grant of `target` covered the moment `at` (by the DB's record).

    A grant not yet taken back (no ended_at) covers every moment from its start up to
    now, even past its expires_at: until the revoke is confirmed the person may still
    hold the access, and an auditor must see them.
    """
    now = utcnow()
    holders = []
    for grant, request in _overlapping(session, at, at + timedelta(microseconds=1)):
        held = at < grant.ended_at if grant.ended_at is not None else at <= now
        if grant.target == target and grant.granted_at <= at and held:
            holders.append(
                Holder(
                    request.id,
                    request.requester_id,
                    grant.principal,
                    request.flow,
                    grant.granted_at,
                    grant.ended_at or grant.expires_at,
                    grant.ended_at is None,
                )
            )
    return holders


WHO_COLUMNS = ("requester", "principal", "flow", "start", "end", "live", "request_id")


def _end_words(holder: Holder, now: datetime) -> str:
    end = f"{holder.end:%Y-%m-%d %H:%M:%S}"
    if not holder.live:
        return f"until {end}"
    if holder.end <= now:
        return f"due to end {end}, not yet taken back"
    return f"active, expires {end}"


def write_who_text(holders: list[Holder], target: str, at: datetime, out: TextIO) -> None:
    if not holders:
        out.write(f"nobody held {target} at {at:%Y-%m-%d %H:%M:%S} UTC\n")
    now = utcnow()
    for h in holders:
        out.write(
            f"{h.requester_id}\t{h.principal}\t{h.flow}\tfrom {h.start:%Y-%m-%d %H:%M:%S}"
            f"\t{_end_words(h, now)}\trequest {h.request_id}\n"
        )


def write_who_csv(holders: Iterable[Holder], out: TextIO) -> None:
    writer = csv.writer(out)
    writer.writerow(WHO_COLUMNS)
    for h in holders:
        writer.writerow(
            [
                neutralise(v)
                for v in (
                    h.requester_id,
                    h.principal,
                    h.flow,
                    h.start.isoformat(),
                    h.end.isoformat(),
                    "yes" if h.live else "no",
                    str(h.request_id),
                )
            ]
        )
