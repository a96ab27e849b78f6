"""`latchkey audit verify|check-key|rotate-key|export` and `latchkey report access|who`: the auditor's commands."""

from __future__ import annotations

import argparse
import os
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


def cmd_verify(args: argparse.Namespace) -> int:
    from app.audit import AuditLog
    from app.audit.keys import previous_keys

    settings = get_settings()
    key, old = settings.require_audit_key(), previous_keys(settings)
    checkpoint = _checkpoint(args.checkpoint) if args.checkpoint else None
    with _database().session() as session:
        results = [AuditLog(key).verify(session, old)]
        if checkpoint is not None:
            from app.audit.checkpoint import verify_checkpoint

            results.append(verify_checkpoint(session, checkpoint, [key, *old]))
    for result in results:
        print(("ok   " if result.ok else "FAIL ") + result.message)
    return 0 if all(r.ok for r in results) else 1


def _checkpoint(source: str):  # type: ignore[no-untyped-def]
    from app.audit.checkpoint import load_checkpoint

    try:
        return load_checkpoint(source)
    except ValueError as exc:
        raise ConfigError(f"--checkpoint: {exc}") from None


def cmd_check_key(_: argparse.Namespace) -> int:
    """What every process does at start, on its own: is LATCHKEY_AUDIT_KEY the chain's key?"""
    from app.audit.keys import key_id, require_matching_key

    key = get_settings().require_audit_key()
    require_matching_key(_database(), key)
    print(f"ok   LATCHKEY_AUDIT_KEY (key id {key_id(key)}) is the audit trail's current key")
    return 0


def cmd_rotate_key(_: argparse.Namespace) -> int:
    """Hand the chain to a new key: a rotation event signed with the old one.

    The new key comes from the environment, never argv, which `ps` shows to everyone.
    """
    from app.audit import AuditLog
    from app.audit.keys import MIN_KEY_LENGTH, ROTATED, key_id, require_matching_key

    old = get_settings().require_audit_key()
    new = os.environ.get("LATCHKEY_NEW_AUDIT_KEY", "").encode()
    if len(new) < MIN_KEY_LENGTH:
        raise ConfigError(
            f"LATCHKEY_NEW_AUDIT_KEY must be set to the new key, at least {MIN_KEY_LENGTH} "
            "characters (generate one with `openssl rand -hex 32`)"
        )
    if new == old:
        raise ConfigError("LATCHKEY_NEW_AUDIT_KEY is the current LATCHKEY_AUDIT_KEY")
    database = _database()
    require_matching_key(database, old)  # only the key that wrote the head may hand it on
    with database.session() as session:
        event = AuditLog(old).append(
            session,
            event=ROTATED,
            actor="latchkey",
            details={"old_key_id": key_id(old), "new_key_id": key_id(new), "by": _operator()},
        )
    print(f"ok   event {event.seq}: the audit key is now key id {key_id(new)} (was {key_id(old)})")
    print("Next, in every process's environment (web, worker, beat), then restart them all:")
    print("  LATCHKEY_AUDIT_KEY=<the new key>")
    print("  LATCHKEY_AUDIT_PREVIOUS_KEYS=<the old key>[,<older keys>]   (for `audit verify`)")
    print("Until they restart, processes still on the old key refuse to write audit events.")
    return 0


def _operator() -> str:
    """The account that ran a command, for the record (containers may have no passwd entry)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


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
    from app.audit.report import who_had, write_who_csv, write_who_text

    with _database().session() as session:
        holders = who_had(session, args.target, args.at)
    if args.format == "csv":
        write_who_csv(holders, sys.stdout)
    else:
        write_who_text(holders, args.target, args.at, sys.stdout)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit.add_parser("verify", help="check the hash chain")
    verify.add_argument(
        "--checkpoint",
        metavar="FILE_OR_JSON",
        help="also check a published checkpoint: a JSON object, or a file of lines (last wins)",
    )
    verify.set_defaults(fn=cmd_verify)
    audit.add_parser(
        "check-key", help="check LATCHKEY_AUDIT_KEY is the chain's current key"
    ).set_defaults(fn=cmd_check_key)
    audit.add_parser(
        "rotate-key", help="hand the chain to the key in $LATCHKEY_NEW_AUDIT_KEY"
    ).set_defaults(fn=cmd_rotate_key)
    export = audit.add_parser("export", help="stream events as JSON lines or CSV")
    export.add_argument("--since", type=moment, help="events at or after (UTC unless zoned)")
    export.add_argument("--until", type=moment, help="events before")
    export.add_argument(
        "--format", choices=("jsonl", "csv"), default="jsonl", help="output format (default: jsonl)"
    )
    export.add_argument("--flow", help="only this flow")
    export.add_argument("--user", help="only events by or about this Slack user id")
    export.add_argument("--target", help="only this target")
    export.add_argument("--output", "-o", help="write to this file (default: stdout)")
    export.set_defaults(fn=cmd_export)

    report = sub.add_parser("report", help="reports for access reviews").add_subparsers(
        dest="report_command", required=True
    )
    access = report.add_parser("access", help="per person and target: grants, time, approvers")
    access.add_argument(
        "--since", type=moment, required=True, help="start of the period (UTC unless zoned)"
    )
    access.add_argument("--until", type=moment, help="default: now")
    access.add_argument(
        "--format", choices=("text", "csv"), default="text", help="output format (default: text)"
    )
    access.set_defaults(fn=cmd_report_access)
    who = report.add_parser("who", help="who had access to a target at a moment")
    who.add_argument("--target", required=True, help="the target name, as in the flow")
    who.add_argument("--at", type=moment, required=True, help="the moment (UTC unless zoned)")
    who.add_argument(
        "--format", choices=("text", "csv"), default="text", help="output format (default: text)"
    )
    who.set_defaults(fn=cmd_report_who)
