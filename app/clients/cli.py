"""`latchkey clients …`: an admin's commands for service clients.

latchkey clients create ci-deploy --flows migrations --principal ci@example.com --by U0ADMIN
                                    prints the client's token once (Latchkey keeps only its
                                    hash); audited `service_client_created`, actor cli:<by>
latchkey clients list               every client, its flows, principal and state
latchkey clients revoke ci-deploy --by U0ADMIN
                                    the token stops working at once; live grants end at the
                                    next reconciliation pass; audited `service_client_revoked`
"""

from __future__ import annotations

import argparse
import sys

from app.admin_cli import open_trail
from app.clients.store import ClientError, create, listing, revoke
from app.config import get_settings


def _flows(value: str) -> list[str]:
    return [f.strip() for f in value.split(",") if f.strip()]


def _flow_warnings(name: str, flows: list[str]) -> tuple[list[str], list[str]]:
    """(problems, warnings) about the flows a new client is scoped to: an unknown flow is a
    typo to refuse; a flow that does not yet admit the client may be on its way in review."""
    from app.flows.loader import load_flows

    registry = load_flows(get_settings().flows_dir)
    problems, warnings = [], []
    for flow_name in flows:
        loaded = registry.get(flow_name)
        if loaded is None:
            problems.append(f"there is no flow named {flow_name!r} in {get_settings().flows_dir}")
        elif name not in loaded.flow.service_clients:
            warnings.append(
                f"the {flow_name} flow does not admit {name} yet: add "
                f'service_clients=("{name}",) to it, or its requests are refused'
            )
    return problems, warnings


def cmd_create(args: argparse.Namespace) -> int:
    flows = _flows(args.flows)
    problems, warnings = _flow_warnings(args.name, flows)
    for problem in problems:
        print(f"latchkey clients create: {problem}", file=sys.stderr)
    if problems:
        return 2
    db, audit = open_trail()
    try:
        with db.session() as session:
            client, token = create(
                session,
                audit,
                name=args.name,
                flows=flows,
                principal=args.principal,
                actor=f"cli:{args.by}",
            )
    except ClientError as exc:
        print(f"latchkey clients create: {exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"created service client {client.name} for {', '.join(client.flows)} "
        f"(principal {client.principal}); its token, shown this once:",
        file=sys.stderr,
    )
    # The token alone on stdout, so a script can capture it: `TOKEN=$(latchkey clients create …)`.
    print(token)
    return 0


def cmd_list(_: argparse.Namespace) -> int:
    db, audit = open_trail()
    try:
        with db.session() as session:
            rows = listing(session, audit)
    finally:
        db.dispose()
    if not rows:
        print("no service clients")
    for name, client in rows:
        if client is None:
            print(f"{name}: NOT VOUCHED FOR by the audit trail (edited?); it authenticates nobody")
            continue
        state = f"revoked {client.revoked_at:%Y-%m-%d %H:%M} UTC" if client.revoked_at else "active"
        print(
            f"{name}: {state}; flows {', '.join(client.flows)}; principal {client.principal}; "
            f"created {client.created_at:%Y-%m-%d %H:%M} UTC by {client.created_by}"
        )
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    db, audit = open_trail()
    try:
        with db.session() as session:
            revoke(session, audit, args.name, actor=f"cli:{args.by}")
    except ClientError as exc:
        print(f"latchkey clients revoke: {exc}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    print(
        f"{args.name}: revoked (audited as service_client_revoked by cli:{args.by}); its token "
        "no longer works, and its live grants end at the next reconciliation pass"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    commands = sub.add_parser(
        "clients", help="service clients: tokens for pipelines that request access over the API"
    ).add_subparsers(dest="clients_command", required=True)
    made = commands.add_parser("create", help="make a client and print its token once (audited)")
    made.add_argument("name", help="the client's name, e.g. ci-deploy (2-28 of a-z, 0-9, -)")
    made.add_argument(
        "--flows", required=True, help="the flows its token may request, comma-separated"
    )
    made.add_argument(
        "--principal",
        required=True,
        help="who it is at the providers (an IAM user, serviceAccount:…, an email)",
    )
    made.add_argument("--by", required=True, help="who is doing this, for the audit trail")
    made.set_defaults(fn=cmd_create)
    commands.add_parser("list", help="every client and its state").set_defaults(fn=cmd_list)
    ended = commands.add_parser("revoke", help="revoke a client's token for good (audited)")
    ended.add_argument("name", help="the client's name")
    ended.add_argument("--by", required=True, help="who is doing this, for the audit trail")
    ended.set_defaults(fn=cmd_revoke)
