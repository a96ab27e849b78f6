"""`latchkey audit verify|export` and `latchkey report access|who`: the auditor's commands."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from app.config import ConfigError, get_settings


def moment(text: str) -> datetime:
    """An ISO 8601 date or time; without a zone it is UTC ('2026-01-01', '2026-01-01T09:00Z')."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date or time (use ISO 8601, e.g. 2026-01-31 or 2026-01-31T09:00Z)"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _database():  # type: ignore[no-untyped-def]
    from app.db import Database

    return Database(get_settings().database_url)


def cmd_verify(_: argparse.Namespace) -> int:
    from app.audit import AuditLog

    settings = get_settings()
    with _database().session() as session:
        result = AuditLog(settings.require_audit_key()).verify(session)
    print(("ok   " if result.ok else "FAIL ") + result.message)
    return 0 if result.ok else 1


def cmd_export(args: argparse.Namespace) -> int:
    from app.audit.export import ExportFilter, iter_events, write_csv, write_jsonl

    if args.since and args.until and args.since >= args.until:
        raise ConfigError("--since must be before --until")
    where = ExportFilter(args.since, args.until, args.flow, args.user, args.target)
    out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        with _database().session() as session:
            write = write_csv if args.format == "csv" else write_jsonl
            count = write(iter_events(session, where), out)
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"exported {count} events", file=sys.stderr)
    return 0


def cmd_report_access(args: argparse.Namespace) -> int:
    from app.audit.report import access_report, write_report_csv, write_report_text

    until = args.until or datetime.now(UTC)
    if args.since >= until:
        raise ConfigError("--since must be before --until")
    with _database().session() as session:
        rows = access_report(session, args.since, until)
    (write_report_csv if args.format == "csv" else write_report_text)(rows, sys.stdout)
    return 0


def cmd_report_who(args: argparse.Namespace) -> int:
    from app.audit.report import who_had

    with _database().session() as session:
        holders = who_had(session, args.target, args.at)
    when = args.at.strftime("%Y-%m-%d %H:%M:%S UTC")
    if not holders:
        print(f"nobody held {args.target} at {when}")
    for h in holders:
        print(
            f"{h.requester_id}\t{h.principal}\t{h.flow}\tfrom {h.start:%Y-%m-%d %H:%M:%S}"
            f"\tuntil {h.end:%Y-%m-%d %H:%M:%S}\trequest {h.request_id}"
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(
        dest="audit_command", required=True
    )
    audit.add_parser("verify", help="check the hash chain").set_defaults(fn=cmd_verify)
    export = audit.add_parser("export", help="stream events as JSON lines or CSV")
    export.add_argument("--since", type=moment, help="events at or after (UTC unless zoned)")
    export.add_argument("--until", type=moment, help="events before")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--flow", help="only this flow")
    export.add_argument("--user", help="only events by or about this Slack user id")
    export.add_argument("--target", help="only this target")
    export.add_argument("--output", "-o", help="write to this file (default: stdout)")
    export.set_defaults(fn=cmd_export)

    report = sub.add_parser("report", help="reports for access reviews").add_subparsers(
        dest="report_command", required=True
    )
    access = report.add_parser("access", help="per person and target: grants, time, approvers")
    access.add_argument("--since", type=moment, required=True)
    access.add_argument("--until", type=moment, help="default: now")
    access.add_argument("--format", choices=("text", "csv"), default="text")
    access.set_defaults(fn=cmd_report_access)
    who = report.add_parser("who", help="who had access to a target at a moment")
    who.add_argument("--target", required=True)
    who.add_argument("--at", type=moment, required=True)
    who.set_defaults(fn=cmd_report_who)
