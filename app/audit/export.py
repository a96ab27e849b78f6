"""Export the audit trail as JSON lines or CSV, streamed, filtered, safe to open in a sheet.

Events are read in `seq` order a batch at a time and written as they come, so a year of
events never sits in memory. CSV cells that a spreadsheet would run as a formula (`=`,
`+`, `-`, `@`, tab, carriage return) are prefixed with `'`; JSON lines are exact.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import or_, select
from sqlmodel import Session

from app.audit import as_record
from app.models import AuditEvent

COLUMNS = (
    "seq",
    "at",
    "event",
    "actor",
    "request_id",
    "flow",
    "target",
    "subject",
    "details",
    "prev_hash",
    "hash",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Cells starting with the escape itself are escaped too, so reading back is exact.
_ESCAPE = "'"


@dataclass(frozen=True)
class ExportFilter:
    since: datetime | None = None
    until: datetime | None = None
    flow: str | None = None
    # A Slack user id: events they did (actor) or that were about them (subject).
    user: str | None = None
    target: str | None = None


def iter_events(
    session: Session, where: ExportFilter = ExportFilter(), batch: int = 2000
) -> Iterator[AuditEvent]:
    """Matching events in chain order, a batch at a time (keyset paging on seq)."""
    after = 0
    while True:
        query = select(AuditEvent).where(AuditEvent.seq > after)  # type: ignore[arg-type]
        if where.since is not None:
            query = query.where(AuditEvent.at >= where.since)  # type: ignore[arg-type]
        if where.until is not None:
            query = query.where(AuditEvent.at < where.until)  # type: ignore[arg-type]
        if where.flow is not None:
            query = query.where(AuditEvent.flow == where.flow)  # type: ignore[arg-type]
        if where.target is not None:
            query = query.where(AuditEvent.target == where.target)  # type: ignore[arg-type]
        if where.user is not None:
            query = query.where(
                or_(AuditEvent.actor == where.user, AuditEvent.subject == where.user)  # type: ignore[arg-type]
            )
        rows = session.execute(query.order_by(AuditEvent.seq).limit(batch)).scalars().all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq
        session.expunge_all()  # keep the identity map from growing with the export


def write_jsonl(events: Iterable[AuditEvent], out: TextIO) -> int:
    count = 0
    for event in events:
        out.write(json.dumps(as_record(event), ensure_ascii=False, sort_keys=True) + "\n")
        count += 1
    return count


def neutralise(cell: str) -> str:
    """Make a cell inert in spreadsheets (CSV injection): a leading `'` before formula starts."""
    return _ESCAPE + cell if cell.startswith((*_FORMULA_START, _ESCAPE)) else cell


def write_csv(events: Iterable[AuditEvent], out: TextIO) -> int:
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    count = 0
    for event in events:
        record = as_record(event)
        record["details"] = json.dumps(record["details"], ensure_ascii=False, sort_keys=True)
        writer.writerow([neutralise("" if record[c] is None else str(record[c])) for c in COLUMNS])
        count += 1
    return count


def read_csv(source: TextIO) -> Iterator[dict[str, Any]]:
    """Read an export back (for round trips and for auditors' tooling): undoes neutralise()."""
    for row in csv.DictReader(source):
        values = {k: v[1:] if v.startswith(_ESCAPE) else v for k, v in row.items()}
        yield {
            **values,
            "seq": int(values["seq"]),
            "request_id": values["request_id"] or None,
            "flow": values["flow"] or None,
            "target": values["target"] or None,
            "subject": values["subject"] or None,
            "details": json.loads(values["details"]),
        }


def read_jsonl(source: TextIO) -> Iterator[dict[str, Any]]:
    for line in source:
        if line.strip():
            yield json.loads(line)
