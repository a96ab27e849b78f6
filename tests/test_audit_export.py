"""Export: streamed, filtered, exact round trips, and cells a spreadsheet cannot run."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.audit import AuditLog
from app.audit.export import (
    ExportFilter,
    as_record,
    iter_events,
    read_csv,
    read_jsonl,
    write_csv,
    write_jsonl,
)
from app.cli import main
from app.db import Database

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
HOSTILE = ['=HYPERLINK("http://x","y")', "+1+2", "-3", "@SUM(A1)", "'quoted", "\tTab", "ok é ✓"]


def _fill(db: Database, audit: AuditLog) -> None:
    with db.session() as session:
        for n, reason in enumerate(HOSTILE):
            audit.append(
                session,
                event="requested",
                actor=f"U0P{n}",
                flow="prod" if n % 2 else "dev",
                target="=cmd|' /C calc'!A0" if n == 0 else "admins",
                subject=f"U0P{n}",
                details={"reason": reason, "nested": {"n": n}},
                at=T0 + timedelta(hours=n),
            )


def _all(db: Database, where: ExportFilter | None = None) -> list[dict]:
    with db.session() as session:
        return [as_record(e) for e in iter_events(session, where or ExportFilter(), batch=3)]


def test_csv_and_jsonl_round_trip_exactly(database: Database, audit: AuditLog) -> None:
    _fill(database, audit)
    records = _all(database)
    assert len(records) == len(HOSTILE)
    with database.session() as session:
        csv_out, jsonl_out = io.StringIO(), io.StringIO()
        assert write_csv(iter_events(session, batch=2), csv_out) == len(HOSTILE)
        assert write_jsonl(iter_events(session, batch=2), jsonl_out) == len(HOSTILE)
    assert list(read_jsonl(io.StringIO(jsonl_out.getvalue()))) == records
    assert list(read_csv(io.StringIO(csv_out.getvalue()))) == records


def test_csv_cells_cannot_run_as_formulas(database: Database, audit: AuditLog) -> None:
    _fill(database, audit)
    out = io.StringIO()
    with database.session() as session:
        write_csv(iter_events(session), out)
    import csv

    cells = [c for row in csv.reader(io.StringIO(out.getvalue())) for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t")]
    assert "'=cmd|' /C calc'!A0" in cells


def test_filters_by_time_flow_user_and_target(database: Database, audit: AuditLog) -> None:
    _fill(database, audit)
    window = _all(
        database, ExportFilter(since=T0 + timedelta(hours=2), until=T0 + timedelta(hours=4))
    )
    assert [r["actor"] for r in window] == ["U0P2", "U0P3"]
    assert {r["flow"] for r in _all(database, ExportFilter(flow="prod"))} == {"prod"}
    assert [r["actor"] for r in _all(database, ExportFilter(user="U0P4"))] == ["U0P4"]
    assert "U0P0" not in [r["actor"] for r in _all(database, ExportFilter(target="admins"))]


def test_export_command_writes_a_file_and_names_bad_input(
    database: Database,
    audit: AuditLog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from app.config import get_settings

    _fill(database, audit)
    monkeypatch.setenv("DATABASE_URL", database.url)
    get_settings.cache_clear()
    target = tmp_path / "audit.jsonl"
    assert main(["audit", "export", "--since", "2026-03-01T10:00Z", "-o", str(target)]) == 0
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["actor"] for line in lines] == [f"U0P{n}" for n in range(1, len(HOSTILE))]
    assert "exported 6 events" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["audit", "export", "--since", "last tuesday"])
    assert "'last tuesday' is not a date or time" in capsys.readouterr().err
    assert main(["audit", "export", "--since", "2026-03-02", "--until", "2026-03-01"]) == 2
    assert "--since must be before --until" in capsys.readouterr().err
    get_settings.cache_clear()
