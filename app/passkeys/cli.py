"""`latchkey passkey …`: an admin's view of people's passkeys.

latchkey passkey list U0123                 the passkeys the keyed trail vouches for
latchkey passkey remove U0123 --by U0ADMIN  remove them all (a lost device, a passkey
                                            someone else added), audited as
                                            `passkey_removed` by cli:<who>
"""

from __future__ import annotations

import argparse
import sys

from app.admin_cli import open_trail, register_person_commands
from app.passkeys.credentials import passkeys_of, remove_all


def cmd_list(args: argparse.Namespace) -> int:
    db, audit = open_trail()
    with db.session() as session:
        found = passkeys_of(session, audit, args.user)
        for passkey in found:
            used = f"{passkey.last_used_at:%Y-%m-%d %H:%M} UTC" if passkey.last_used_at else "never"
            print(
                f"{passkey.credential_id}  added {passkey.created_at:%Y-%m-%d %H:%M} UTC, "
                f"last used {used}"
            )
    if not found:
        print(f"{args.user}: no passkey")
        return 1
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    db, audit = open_trail()
    with db.session() as session:
        gone = remove_all(session, audit, args.user, actor=f"cli:{args.by}")
    if not gone:
        print(f"{args.user}: no passkey; nothing to do", file=sys.stderr)
        return 1
    print(f"{args.user}: {gone} passkey(s) removed (audited as passkey_removed by cli:{args.by})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    register_person_commands(
        sub,
        "passkey",
        "people's passkeys",
        show=("list", "a Slack user's passkeys", cmd_list),
        remove=("remove", "remove all of a Slack user's passkeys (audited)", cmd_remove),
    )
