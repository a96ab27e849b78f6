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

from app.admin_cli import open_trail, register_person_commands
from app.identity_links.store import linked, unlink


def cmd_show(args: argparse.Namespace) -> int:
    db, audit = open_trail()
    with db.session() as session:
        row = linked(session, audit, args.user)
        if row is None:
            print(f"{args.user}: not linked")
            return 1
        since = f"{row.linked_at:%Y-%m-%d %H:%M} UTC"
        print(f"{args.user}: {row.email} (subject {row.subject} at {row.issuer}), since {since}")
    return 0


def cmd_unlink(args: argparse.Namespace) -> int:
    db, audit = open_trail()
    with db.session() as session:
        done = unlink(session, audit, args.user, actor=f"cli:{args.by}")
    if not done:
        print(f"{args.user}: not linked; nothing to do", file=sys.stderr)
        return 1
    print(f"{args.user}: unlinked (audited as identity_unlinked by cli:{args.by})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    register_person_commands(
        sub,
        "identity",
        "verified identity links",
        show=("show", "who a Slack user is linked to", cmd_show),
        remove=("unlink", "remove a Slack user's identity link (audited)", cmd_unlink),
    )
