"""What the admin commands about one person's records share (`latchkey passkey …`,
`latchkey identity …`): the database and audit trail from the settings, and the shape of
the commands: one that shows a Slack user's records, one that removes them, audited."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from app.audit import AuditLog
from app.config import get_settings
from app.db import Database

Command = tuple[str, str, Callable[[argparse.Namespace], int]]  # name, help, function


def open_trail() -> tuple[Database, AuditLog]:
    settings = get_settings()
    return Database(settings.database_url), AuditLog(settings.require_audit_key())


def register_person_commands(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    help_text: str,
    show: Command,
    remove: Command,
) -> None:
    commands = sub.add_parser(name, help=help_text).add_subparsers(
        dest=f"{name}_command", required=True
    )
    for (command, said, fn), audited in ((show, False), (remove, True)):
        parser = commands.add_parser(command, help=said)
        parser.add_argument("user", help="the Slack user id (U…)")
        if audited:
            parser.add_argument(
                "--by", required=True, help="who is doing this, for the audit trail"
            )
        parser.set_defaults(fn=fn)
