"""`latchkey …`: run the processes, migrate, check flows, verify the audit trail, demo."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.api import client as cli_request
from app.audit import cli as cli_audit
from app.clients import cli as cli_clients
from app.config import ConfigError, get_settings
from app.flows.loader import FlowError
from app.identity_links import cli as cli_identity
from app.passkeys import cli as cli_passkey

if TYPE_CHECKING:
    from app.worker.pools import Pool

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _alembic_config(database_url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    """Upgrade the schema to `revision` (alembic)."""
    from alembic import command

    command.upgrade(_alembic_config(database_url), revision)


def migrate_to(database_url: str, revision: str) -> str:
    """Upgrade or downgrade the schema to `revision`; which one was done."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from app.health import migrations_head

    config = _alembic_config(database_url)
    current = current_revision(database_url)
    script = ScriptDirectory.from_config(config)
    wanted = script.get_revision(revision)  # raises for a revision alembic does not know
    target = wanted.revision if wanted is not None else None
    if revision == "head":
        target = migrations_head()
    below = {r.revision for r in script.iterate_revisions(current, "base")} if current else set()
    if target is not None and target != current and target in below:
        command.downgrade(config, target)
        return f"downgraded from {current} to {target}"
    command.upgrade(config, revision)
    return f"upgraded from {current or 'an empty database'} to {current_revision(database_url)}"


def current_revision(database_url: str) -> str | None:
    """The revision the database is at (None: never migrated)."""
    from app.db import Database
    from app.health import _revision

    db = Database(database_url)
    try:
        with db.session() as session:
            return _revision(session)
    finally:
        db.dispose()


def cmd_migrate(args: argparse.Namespace) -> int:
    from alembic.util import CommandError

    from app.health import migrations_head

    url = get_settings().database_url
    if args.current:
        print(f"database: {current_revision(url) or 'none (never migrated)'}")
        print(f"head:     {migrations_head()}")
        return 0
    if args.to:
        try:
            print(f"database {migrate_to(url, args.to)}")
        except CommandError as exc:
            print(f"latchkey migrate: {exc}", file=sys.stderr)
            return 1
        return 0
    migrate(url)
    print("database is at the latest migration")
    return 0


def cmd_flows_check(args: argparse.Namespace) -> int:
    from app.flows.lint import lint
    from app.flows.loader import load_flows
    from app.flows.needs import settings_problems

    directory = Path(args.dir) if args.dir else get_settings().flows_dir
    registry = load_flows(directory)
    warned = 0
    for loaded in registry:
        flow = loaded.flow
        print(f"ok   {loaded.path}: {flow.name} ({len(flow.targets)} targets, {_routes(flow)})")
        for warning in lint(loaded):
            warned += 1
            print(f"warn {loaded.path}: {warning}")
    needs = settings_problems(registry, get_settings())
    for path, problem in needs:
        print(f"FAIL {path}: {problem}", file=sys.stderr)
    if needs:
        return 2
    failed = _check_online(registry) if args.online else 0
    return 1 if failed or (warned and args.strict) else 0


def _routes(flow) -> str:  # type: ignore[no-untyped-def]
    """Where the flow's cards go, as `flows check` prints it."""
    channels = dict.fromkeys(flow.channel_for(t.name) for t in flow.targets)
    said = f"channel{'s' if len(channels) > 1 else ''} {', '.join(channels)}"
    if flow.approver_dms:
        said += ", approvers' DMs"
    watchers = len(flow.notify.users) + len(flow.notify.channels)
    if watchers:
        said += f", {watchers} watcher{'s' if watchers > 1 else ''}"
    if flow.approval_assurance == "passkey":
        said += ", approvals confirmed with a passkey"
    if flow.requester_assurance == "passkey":
        said += ", break-glass confirmed with a passkey"
    if flow.identity.verified:
        said += ", grants to verified identities"
    if flow.service_clients:
        said += f", service clients {', '.join(flow.service_clients)} (API)"
    return said


def _check_online(registry) -> int:  # type: ignore[no-untyped-def]
    """Ask the providers about every target; the number of targets with problems."""
    from app.flows.online import verify_targets
    from app.providers.registry import default_providers

    settings = get_settings()
    providers = default_providers(
        custom=registry.providers,
        gcp_endpoint=settings.gcp_endpoint,
        gcp_grpc_endpoint=settings.gcp_grpc_endpoint,
        settings=settings,
    )
    failed = 0
    for result in verify_targets(registry, providers):
        where = f"{result.flow}/{result.target} ({result.provider})"
        if not result.checked:
            print(f"skip {where}: the provider has no online check")
        elif result.problems:
            failed += 1
            for problem in result.problems:
                print(f"FAIL {where}: {problem}")
        else:
            print(f"ok   {where}: exists and can be managed")
    return failed + _check_channels(registry, settings)


def _check_channels(registry, settings) -> int:  # type: ignore[no-untyped-def]
    """Ask Slack about every channel the flows post to; the number with problems."""
    from app.flows.online import verify_channels
    from app.runtime import build_slack_client

    if not settings.slack_bot_token.get_secret_value():
        print("skip channels: SLACK_BOT_TOKEN is not set, so Slack was not asked")
        return 0
    failed = 0
    for result in verify_channels(registry, build_slack_client(settings)):
        where = f"channel {result.channel} ({', '.join(result.flows)})"
        if result.problem:
            failed += 1
            print(f"FAIL {where}: {result.problem}")
        else:
            print(f"ok   {where}: the bot is a member")
    return failed


def cmd_web(_: argparse.Namespace) -> int:
    from app.runtime import build_runtime

    settings = get_settings()
    rt = build_runtime(settings)  # fail closed before serving anything
    if settings.socket_mode:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        from app.logs import configure_logging
        from app.slack.app import create_app

        configure_logging(settings.log_level, settings.log_format)
        assert settings.slack_app_token is not None
        SocketModeHandler(
            create_app(rt), settings.slack_app_token.get_secret_value(), web_client=rt.slack
        ).start()
        return 0
    # gunicorn's settings live in app/gunicorn_conf.py; GUNICORN_CMD_ARGS overrides any.
    os.environ["PORT"] = str(settings.port)
    os.execvp(  # noqa: S606 — replaces this process with gunicorn, arguments are ours
        sys.executable,
        [sys.executable, "-m", "gunicorn", "-c", "python:app.gunicorn_conf", "app.web:wsgi()"],
    )
    return 0  # not reached


def cmd_worker(args: argparse.Namespace) -> int:
    from app.logs import configure_logging
    from app.worker.pools import parse_queues, supervise

    try:
        pools = parse_queues(args.queues)
    except ValueError as exc:
        print(f"latchkey worker: {exc}", file=sys.stderr)
        return 2
    settings = get_settings()
    from app.worker.tasks import runtime

    # Fail closed: an invalid flow or setting stops start-up here, once, with one line.
    # Cached, so the pools (forked from here) and their processes inherit it instead of
    # each building it again.
    runtime()
    configure_logging(settings.log_level, settings.log_format)
    if len(pools) > 1:
        return supervise(
            pools,
            concurrency=args.concurrency,
            name=args.name,
            metrics_port=settings.worker_metrics_port,
            run_pool=_run_pool,
        )
    return _run_pool(pools[0], args.concurrency, args.name)


def _run_pool(pool: Pool, concurrency: int, name: str) -> int:
    """One Celery worker consuming `pool`'s queues (in the supervisor's forked child, or
    on its own with `--queues`)."""
    from app.worker.celery_app import create_celery
    from app.worker.tasks import runtime

    # The settings again: a forked pool has its own metrics port in the environment.
    get_settings.cache_clear()
    settings = get_settings()
    rt = runtime()
    # Connections opened before a fork are the parent's: the pool opens its own.
    rt.db.engine.dispose(close=False)
    create_celery(settings).worker_main(
        [
            "worker",
            "--loglevel",
            settings.log_level,
            "--concurrency",
            str(concurrency),
            "-n",
            name,
            "--queues",
            ",".join(pool.queues),
            # Mingle (revoked ids and clocks from other workers at start) and gossip (their
            # events while running) serve Celery's own remote revoke, which Latchkey never
            # uses: a claim in the database decides who works on what. Mingle alone held
            # every start for a second waiting for neighbours to answer.
            "--without-mingle",
            "--without-gossip",
        ]
    )
    return 0


def cmd_beat(_: argparse.Namespace) -> int:
    from app.logs import configure_logging
    from app.runtime import build_runtime
    from app.worker.celery_app import create_celery

    settings = get_settings()
    # Fail closed like the others: the audit key must match the chain, flows must load.
    build_runtime(settings, require_slack=False)
    configure_logging(settings.log_level, settings.log_format)
    create_celery(settings).start(["beat", "--loglevel", settings.log_level])
    return 0


def cmd_health(_: argparse.Namespace) -> int:
    """Print the health report as JSON; exit 0 when ok, 1 otherwise (a liveness probe)."""
    import json

    from app.db import Database
    from app.health import check

    settings = get_settings()
    db = Database(settings.database_url)
    try:
        ok, report = check(db, settings)
    finally:
        db.dispose()
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


def cmd_check(args: argparse.Namespace) -> int:
    """Run every start-up check (and with --online the providers'); exit 0 when all pass."""
    from app.startup import Probe, Skipped, run_all

    probe = Probe(get_settings(), wait_seconds=args.wait)
    failed = 0
    for name, problem in run_all(probe):
        if isinstance(problem, Skipped):
            print(f"skip {name}: {problem}")
        elif problem:
            failed += 1
            print(f"FAIL {name}: {problem}")
        else:
            print(f"ok   {name}")
    if args.online and probe.flows is not None:
        failed += _check_online(probe.flows)
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from app.demo import run_demo

    return run_demo(seconds=args.seconds)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("latchkey")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latchkey", description="Just-in-time access from Slack.")
    parser.add_argument(
        "--version", action="version", version=f"latchkey {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    migrate_cmd = sub.add_parser(
        "migrate", help="bring the database to the latest schema (or show / pick a revision)"
    )
    what = migrate_cmd.add_mutually_exclusive_group()
    what.add_argument(
        "--current",
        action="store_true",
        help="print the database's revision and the code's head; change nothing",
    )
    what.add_argument(
        "--to",
        metavar="REV",
        help="upgrade or downgrade to this revision (a downgrade can drop data: back up first)",
    )
    migrate_cmd.set_defaults(fn=cmd_migrate)
    flows = sub.add_parser("flows", help="work with flows").add_subparsers(
        dest="flows_command", required=True
    )
    check = flows.add_parser("check", help="validate every flow in LATCHKEY_FLOWS")
    check.add_argument("--dir", help="folder of flows (default: LATCHKEY_FLOWS)")
    check.add_argument("--strict", action="store_true", help="exit 1 when any flow has a warning")
    check.add_argument(
        "--online",
        action="store_true",
        help="also ask AWS / Google / custom providers that every target exists and can be managed",
    )
    check.set_defaults(fn=cmd_flows_check)
    checks = sub.add_parser(
        "check",
        help="run the start-up checks of web, worker and beat (settings, flows, database, "
        "schema, audit key, Redis); exit 1 naming each problem",
    )
    checks.add_argument(
        "--online",
        action="store_true",
        help="also ask the providers that every flow target exists and can be managed",
    )
    checks.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="how long to wait for the database and Redis to answer (default: 0, ask once)",
    )
    checks.set_defaults(fn=cmd_check)
    sub.add_parser("web", help="serve Slack (HTTP on $PORT, or Socket Mode)").set_defaults(
        fn=cmd_web
    )
    worker = sub.add_parser(
        "worker",
        help="run the Celery workers: an access pool (grants, revokes) and a messages pool",
    )
    worker.add_argument(
        "--queues",
        metavar="QUEUES",
        help="serve only these queues: access, messages, or access,messages in one pool "
        "(default: each in a pool of its own, so grants never wait behind Slack)",
    )
    worker.add_argument(
        "--concurrency", type=int, default=4, help="processes in each pool (default: 4)"
    )
    worker.add_argument(
        "--name", default="latchkey@%h", help="the worker's node name (default: latchkey@%%h)"
    )
    worker.set_defaults(fn=cmd_worker)
    sub.add_parser("beat", help="run the scheduler (exactly one)").set_defaults(fn=cmd_beat)
    sub.add_parser(
        "health", help="check DB, broker, schema, heartbeats and overdue grants (exit 1 if not ok)"
    ).set_defaults(fn=cmd_health)
    cli_audit.register(sub)
    cli_identity.register(sub)
    cli_passkey.register(sub)
    cli_clients.register(sub)
    cli_request.register(sub)
    demo = sub.add_parser("demo", help="run everything locally with stand-ins for Slack and AWS")
    demo.add_argument("--seconds", type=int, default=20, help="how long the demo grant lasts")
    demo.set_defaults(fn=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except (ConfigError, FlowError) as exc:
        # One line, whatever the message holds (a FlowError lists one problem per line).
        print(f"latchkey: {'; '.join(str(exc).splitlines())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
