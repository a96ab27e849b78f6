"""`latchkey identity …`: an admin's view of verified identity links.

latchkey identity show U0123          who this Slack user is linked to (if vouched for)
latchkey identity unlink U0123 --by U0ADMIN
                                      remove the link, audited (`identity_unlinked`,
                                      actor `cli:<who>`); their next grant from a flow
                                      with Identity(verified=True) waits for a new link
"""

from __future__ import annotations

import argparse
import sys

from app.audit import AuditLog
from app.config import get_settings
from app.db import Database
from app.identity_links.store import linked, unlink


def _open() -> tuple[Database, AuditLog]:
    settings = get_settings()
    return Database(settings.database_url), AuditLog(settings.require_audit_key())


def cmd_show(args: argparse.Namespace) -> int:
    db, audit = _open()
    with db.session() as session:
        row = linked(session, audit, args.user)
        if row is None:
            print(f"{args.user}: not linked")
            return 1
        print(
            f"{args.user}: {row.email} (subject {row.subject} at {row.issuer}), since {row.linked_at:%Y-%m-%d %H:%M} UTC"
        )
    return 0


def cmd_unlink(args: argparse.Namespace) -> int:
    db, audit = _open()
    with db.session() as session:
        done = unlink(session, audit, args.user, actor=f"cli:{args.by}")
    if not done:
        print(f"{args.user}: not linked; nothing to do", file=sys.stderr)
        return 1
    print(f"{args.user}: unlinked (audited as identity_unlinked by cli:{args.by})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    identity = sub.add_parser("identity", help="verified identity links").add_subparsers(
        dest="identity_command", required=True
    )
    show = identity.add_parser("show", help="who a Slack user is linked to")
    show.add_argument("user", help="the Slack user id (U…)")
    show.set_defaults(fn=cmd_show)
    drop = identity.add_parser("unlink", help="remove a Slack user's identity link (audited)")
    drop.add_argument("user", help="the Slack user id (U…)")
    drop.add_argument("--by", required=True, help="who is doing this, for the audit trail")
    drop.set_defaults(fn=cmd_unlink)
