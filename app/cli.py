"""`latchkey …`: run the processes, migrate, check flows, verify the audit trail, demo."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app.audit import cli as cli_audit
from app.config import ConfigError, get_settings
from app.flows.loader import FlowError

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _alembic_config(database_url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(_alembic_config(database_url), revision)


def cmd_migrate(_: argparse.Namespace) -> int:
    migrate(get_settings().database_url)
    print("database is at the latest migration")
    return 0


def cmd_flows_check(args: argparse.Namespace) -> int:
    from app.flows.lint import lint
    from app.flows.loader import load_flows

    directory = Path(args.dir) if args.dir else get_settings().flows_dir
    registry = load_flows(directory)
    warned = 0
    for loaded in registry:
        flow = loaded.flow
        print(
            f"ok   {loaded.path}: {flow.name} ({len(flow.targets)} targets, channel {flow.approval_channel})"
        )
        for warning in lint(loaded):
            warned += 1
            print(f"warn {loaded.path}: {warning}")
    failed = _check_online(registry) if args.online else 0
    return 1 if failed or (warned and args.strict) else 0


def _check_online(registry) -> int:  # type: ignore[no-untyped-def]
    """Ask the providers about every target; the number of targets with problems."""
    from app.flows.online import verify_targets
    from app.providers.registry import default_providers

    settings = get_settings()
    providers = default_providers(
        custom=registry.providers,
        gcp_endpoint=settings.gcp_endpoint,
        gcp_grpc_endpoint=settings.gcp_grpc_endpoint,
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
    return failed


def cmd_web(_: argparse.Namespace) -> int:
    from app.runtime import build_runtime

    settings = get_settings()
    rt = build_runtime(settings)  # fail closed before serving anything
    if settings.socket_mode:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        from app.logs import configure_logging
        from app.slack.app import create_app

        configure_logging(settings.log_level)
        assert settings.slack_app_token is not None
        SocketModeHandler(
            create_app(rt), settings.slack_app_token.get_secret_value(), web_client=rt.slack
        ).start()
        return 0
    workers = os.environ.get("WEB_CONCURRENCY", "2")
    os.execvp(  # noqa: S606 — replaces this process with gunicorn, arguments are ours
        sys.executable,
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"0.0.0.0:{settings.port}",
            "--workers",
            workers,
            "--worker-class",
            "gthread",
            "--threads",
            "8",
            # Slack's requests are small: a short request line, a few headers. Anything
            # larger is refused by gunicorn before the app sees it (docs/operations.md).
            "--limit-request-line",
            "2048",
            "--limit-request-fields",
            "50",
            "--limit-request-field_size",
            "4096",
            # A worker silent this long is restarted; a request waits on nothing that slow.
            "--timeout",
            "30",
            "--graceful-timeout",
            "20",
            "--keep-alive",
            "5",
            # No access log: app.slack.edge logs one bounded line per request itself, so
            # nothing a client sends (user agent, referer, query) reaches the log unescaped.
            "app.web:wsgi()",
        ],
    )
    return 0  # not reached


def cmd_worker(args: argparse.Namespace) -> int:
    from app.logs import configure_logging
    from app.runtime import build_runtime
    from app.worker.celery_app import create_celery

    settings = get_settings()
    build_runtime(settings)  # fail closed: an invalid flow or setting stops start-up here
    configure_logging(settings.log_level)
    create_celery(settings).worker_main(
        [
            "worker",
            "--loglevel",
            settings.log_level,
            "--concurrency",
            str(args.concurrency),
            "-n",
            args.name,
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
    configure_logging(settings.log_level)
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


def cmd_demo(args: argparse.Namespace) -> int:
    from app.demo import run_demo

    return run_demo(seconds=args.seconds)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latchkey", description="Just-in-time access from Slack.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="bring the database to the latest schema").set_defaults(
        fn=cmd_migrate
    )
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
    sub.add_parser("web", help="serve Slack (HTTP on $PORT, or Socket Mode)").set_defaults(
        fn=cmd_web
    )
    worker = sub.add_parser("worker", help="run the Celery worker (grants, revokes, messages)")
    worker.add_argument("--concurrency", type=int, default=4)
    worker.add_argument("--name", default="latchkey@%h")
    worker.set_defaults(fn=cmd_worker)
    sub.add_parser("beat", help="run the scheduler (exactly one)").set_defaults(fn=cmd_beat)
    sub.add_parser(
        "health", help="check DB, broker, schema, heartbeats and overdue grants (exit 1 if not ok)"
    ).set_defaults(fn=cmd_health)
    cli_audit.register(sub)
    demo = sub.add_parser("demo", help="run everything locally with stand-ins for Slack and AWS")
    demo.add_argument("--seconds", type=int, default=20, help="how long the demo grant lasts")
    demo.set_defaults(fn=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except (ConfigError, FlowError) as exc:
        print(f"latchkey: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
