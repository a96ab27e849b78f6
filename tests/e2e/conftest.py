"""Real stacks (web, worker, beat, Redis, DB, moto, Slack stand-in): a shared one per
backend on each of SHARED_STACKS workers for the tests that take `stack`, and one per module
and backend for `module_stack`."""

from __future__ import annotations

import secrets
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql
from sqlalchemy.engine import make_url

from app.testing.gcp_standin import GcpStandIn
from app.testing.google_groups_standin import GoogleGroupsStandIn
from app.testing.graph_standin import GraphStandIn
from app.testing.mariadb_server import MariaDBCorner
from app.testing.oidc_standin import OidcStandIn
from app.testing.okta_standin import OktaStandIn
from app.testing.opsgenie_standin import OpsgenieStandIn
from app.testing.pagerduty_standin import PagerDutyStandIn
from app.testing.panel_standin import PanelStandIn
from app.testing.receiver import AuditReceiver
from app.testing.stack import LocalStack
from tests.conftest import (
    BACKENDS,
    MARIADB_URL,
    POSTGRES_URL,
    migrated_database_for,
    worker_index,
)
from tests.factories import (
    APPROVER,
    APPROVER_GROUP,
    DBA_CHANNEL,
    GROUP_APPROVER,
    GROUP_NAME,
    HOOK_LEAD,
    HOOK_LEAD_EMAIL,
    NO_BOT_CHANNEL,
    OUTSIDER,
    SECOND_APPROVER,
    WATCH_CHANNEL,
    WATCHER,
    write_flow,
)

SIEM_SECRET = "local-siem-secret-0123456789"
PAGERDUTY_TOKEN = "pd-read-only-token"
OPSGENIE_KEY = "og-api-key"
OIDC_CLIENT_ID = "latchkey-test"
OIDC_CLIENT_SECRET = "oidc-client-secret-0123456789"
# The PagerDuty escalation policy and service, and the Opsgenie schedules, of the flows.
PD_POLICY, PD_SERVICE, OG_SCHEDULE = "PEPOLICY1", "PSERVICE1", "dba-rota"
# Roles are cluster-wide: one per test worker, or two workers race to create it.
DB_ROLE = f"latchkey_e2e_read_{worker_index()}"
GCP_PROJECT = "acme-prod"
GCP_SERVICE_ACCOUNT = "deployer@acme-prod.iam.gserviceaccount.com"
# Identity-provider groups (issue 17): a Google group, an Entra tenant, an Okta org.
GOOGLE_GROUP = "eng-admins@example.com"
ENTRA_TENANT, ENTRA_CLIENT = "72f988bf-86f1-41af-91ab-2d7cd011db47", "latchkey-e2e"
ENTRA_SECRET = "entra-client-secret-0123456789"
OKTA_TOKEN = "okta-api-token-0123456789"
CREDENTIALS_KEY = "local-credentials-key-0123456789"
PANEL_TOKEN = "panel-operator-token-0123456789"
IDP_DURATIONS = "timedelta(seconds=5), timedelta(seconds=8), timedelta(hours=1)"
# The service clients the flows admit (tests/e2e/test_service_clients.py makes them).
SERVICE_CLIENTS = ("ci-deploy", "ci-other", "ci-revoked", "ci-waiter", "ci-gone", "ci-retry")
DB_CLIENT = "ci-db"

ONCALL_HOOK = """

from app.flows.hooks import approve, deny


def on_request(request):
    # Stands in for an on-call lookup (PagerDuty etc.): any Python the admin writes.
    if "PAGE-" in request.reason:
        return approve(f"on call for {request.reason.split()[0]}")
    if "weekend" in request.reason:
        return deny("no weekend changes")
    return None
"""

NAMING_HOOKS = """

def get_requesters():
    return ["U0HOOKED"]


def get_approvers(request):
    # e.g. the owners of the service named in the request, from a service catalogue
    return ["U0OUTSIDER"]
"""

# The people a service catalogue names for a request: an email, found in Slack.
ESCALATION_HOOK = f"""

def get_escalation_leads(request):
    return ["{HOOK_LEAD_EMAIL}"]
"""

BROKEN_HOOK = """

def on_request(request):
    raise RuntimeError("pagerduty unreachable")
"""


@pytest.fixture
def db_role_server() -> Iterator[psycopg.Connection]:
    """The machine's PostgreSQL, with this worker's DB_ROLE, which the stack's flows hand
    out (a custom provider's role membership; ephemeral logins' role). CI always has it."""
    if POSTGRES_URL is None:
        pytest.skip("LATCHKEY_TEST_POSTGRES_URL is not set: no PostgreSQL to grant roles in")
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (DB_ROLE,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(DB_ROLE)))
        yield conn


@pytest.fixture(scope="session", params=BACKENDS)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[LocalStack]:
    """The standard stack, one per backend for the whole session: shared by every module
    that does not start its own, since starting one costs seconds of CPU. Each test makes
    its own people and requests, so what earlier modules left (live grants, audit events)
    is never what it asserts on. A module that counts everything (a forged request changed
    nothing at all) takes `module_stack` instead. It uses its own Redis database, so a
    module's own stack on this worker's Redis never shares a broker with it."""
    yield from _standard_stack(request, tmp_path_factory, _apart(redis_url))


@pytest.fixture(scope="module", params=BACKENDS)
def module_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[LocalStack]:
    """The standard stack, for one module only."""
    yield from _standard_stack(request, tmp_path_factory, redis_url)


# The shared stack's Redis database: this many above the worker's own.
SHARED_DB_OFFSET = 8


def _apart(redis_url: str) -> str:
    url = make_url(redis_url)
    db = int(url.database or 0) + SHARED_DB_OFFSET
    if db > 15:
        pytest.fail(f"the shared e2e stack needs Redis db {db} beside {redis_url} (0-15 exist)")
    return url.set(database=str(db)).render_as_string(hide_password=False)


def _standard_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[LocalStack]:
    # Ephemeral MariaDB logins (issue 18): a corner of the machine's MariaDB per stack, with
    # its own least-privilege admin, bookkeeping, role and data.
    mariadb = MariaDBCorner(MARIADB_URL).create()
    accounts = _shared_accounts()
    try:
        yield from _stack_with(request, tmp_path_factory, redis_url, mariadb, accounts)
    finally:
        mariadb.drop()
        _drop_shared_accounts(accounts)


def _shared_accounts() -> tuple[str, str]:
    """Two accounts that exist before Latchkey, checked out through the stack's flow
    `checkout-dba` (issue 18.3): one queues, one refuses while it is out."""
    names = (f"dba_{uuid.uuid4().hex[:10]}", f"dba_{uuid.uuid4().hex[:10]}")
    if POSTGRES_URL:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            for name in names:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    return names


def _drop_shared_accounts(names: tuple[str, str]) -> None:
    if POSTGRES_URL:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            for name in names:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (name,),
                )
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def _stack_with(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    mariadb: MariaDBCorner,
    accounts: tuple[str, str],
) -> Iterator[LocalStack]:
    workdir = tmp_path_factory.mktemp("stack")
    flows_dir = workdir / "flows"
    flows_dir.mkdir()
    write_flow(flows_dir)
    write_flow(flows_dir, name="two-person", extra="approvals_required=2,")
    write_flow(flows_dir, name="short-fuse", extra="pending_timeout=timedelta(seconds=5),")
    write_flow(flows_dir, name="oncall", hooks=ONCALL_HOOK)
    write_flow(flows_dir, name="broken-hook", hooks=BROKEN_HOOK)
    write_flow(
        flows_dir,
        name="hooked",
        extra='requesters=People(users=("U0NOBODY",)),',
        hooks=NAMING_HOOKS,
    )
    write_flow(flows_dir, name="emergency", extra="break_glass=True,")
    write_flow(flows_dir, name="restricted", extra='requesters=People(users=("U0NOBODY",)),')
    lasting = "timedelta(seconds=20), timedelta(seconds=30), timedelta(hours=1)"
    write_flow(flows_dir, name="lasting", durations=lasting)
    write_flow(
        flows_dir,
        name="self-extend",
        durations=lasting,
        extra="extension_needs_approval=False, max_extensions=1,",
    )
    # The shipped custom-provider example, granting a role in a real PostgreSQL.
    example = Path(__file__).resolve().parents[2] / "flows" / "provider_postgres_role.py"
    (flows_dir / example.name).write_text(example.read_text())
    write_flow(
        flows_dir,
        name="db-read",
        targets=f'(CustomTarget(name="db-read", using="postgres_role", settings={{"role": "{DB_ROLE}"}}),)',
    )
    # Ephemeral PostgreSQL logins (issue 18), made in the machine's PostgreSQL: the password
    # semantics (a server that asks for it) are tested in tests/providers/test_postgres_login.py.
    if POSTGRES_URL:
        write_flow(
            flows_dir,
            name="ephemeral-db",
            targets=(
                f'(PostgresLoginTarget(name="warehouse", database="{make_url(POSTGRES_URL).database}", '
                f'roles=("{DB_ROLE}",)),)'
            ),
            durations=IDP_DURATIONS,
            extra=f"service_clients=({DB_CLIENT!r},),",
        )
        # Shared accounts checked out to one holder at a time (issue 18.3): the rotation
        # itself against a server that asks for passwords is in test_postgres_account.py.
        write_flow(
            flows_dir,
            name="checkout-dba",
            targets=(
                f'(PostgresAccountTarget(name="dba", account="{accounts[0]}", '
                f'database="{make_url(POSTGRES_URL).database}"), '
                f'PostgresAccountTarget(name="dba-now", account="{accounts[1]}", '
                f'database="{make_url(POSTGRES_URL).database}", when_checked_out="refuse"))'
            ),
            durations=IDP_DURATIONS,
        )
    # A shared account lent by a custom provider (issue 18.3): the shipped example's, the
    # one admin login of a console (app/testing/panel_standin.py).
    examples = Path(__file__).resolve().parents[2] / "flows" / "examples"
    panel_provider = examples / "provider_panel_account.py"
    (flows_dir / panel_provider.name).write_text(panel_provider.read_text())
    write_flow(
        flows_dir,
        name="console-admin",
        targets=(
            '(CustomTarget(name="console-admin", using="panel_account", '
            'settings={"account": "admin"}, checkout="queue"),)'
        ),
        durations=IDP_DURATIONS,
    )
    write_flow(
        flows_dir,
        name="ephemeral-mariadb",
        targets=(
            f'(MariaDBLoginTarget(name="shop", database="{mariadb.data}", role="{mariadb.role}"),)'
        ),
        durations=IDP_DURATIONS,
    )
    # A CI pipeline's migration window (issue 18.4): service clients over the API.
    write_flow(flows_dir, name="migrations", extra=f"service_clients={SERVICE_CLIENTS!r},")
    # Google Cloud: a project role and a service account, granted through local stand-ins.
    write_flow(
        flows_dir,
        name="gcp-viewer",
        targets=(
            f'(GcpRoleBindingTarget(name="viewer", resource_name="projects/{GCP_PROJECT}", '
            f'role="roles/viewer"), GcpImpersonationTarget(name="deployer", '
            f'service_account="{GCP_SERVICE_ACCOUNT}"))'
        ),
    )
    # Routing: one target decided in its own channel; approvers' DMs and watchers.
    write_flow(
        flows_dir,
        name="routed",
        targets=(
            f'(AwsIamGroupTarget(name="admins", group_name="{GROUP_NAME}"), '
            f'AwsIamGroupTarget(name="dba", group_name="{GROUP_NAME}", '
            f'approval_channel="{DBA_CHANNEL}"))'
        ),
    )
    write_flow(
        flows_dir,
        name="dm-approvers",
        extra=(
            f'approver_dms=True, notify=Watchers(users=("{WATCHER}",), '
            f'channels=("{WATCH_CHANNEL}",)),'
        ),
    )
    write_flow(
        flows_dir,
        name="dm-quorum",
        extra="approver_dms=True, approvals_required=2, pending_timeout=timedelta(seconds=12),",
    )
    write_flow(
        flows_dir,
        name="escalating",
        extra=(
            "escalation=(Escalation(after=timedelta(seconds=2), "
            f'to=People(users=("{WATCHER}",)), hook="get_escalation_leads"), '
            f'Escalation(after=timedelta(seconds=3), to=People(users=("{OUTSIDER}",)), '
            "may_approve=True)),"
        ),
        hooks=ESCALATION_HOOK,
    )
    # On call: the first level of a PagerDuty policy is approved automatically, only while
    # its service has an open incident; an Opsgenie rota approves (and a missing one).
    write_flow(
        flows_dir,
        name="pd-auto",
        extra=(
            "auto_approve=People(oncall=(PagerDutyOnCall("
            f'escalation_policy="{PD_POLICY}", max_level=1),)), '
            f'auto_approve_during=OpenIncident(source="pagerduty", service="{PD_SERVICE}"),'
        ),
    )
    for name, rota in (("og-approvers", OG_SCHEDULE), ("og-missing", "no-such-rota")):
        write_flow(
            flows_dir,
            name=name,
            approvers=f'Approvers(oncall=(OpsgenieOnCall(schedule="{rota}"),))',
        )
    # A target decided in a channel the bot was never invited to.
    write_flow(
        flows_dir,
        name="unroutable",
        targets=(
            f'(AwsIamGroupTarget(name="admins", group_name="{GROUP_NAME}", '
            f'approval_channel="{NO_BOT_CHANNEL}"),)'
        ),
    )
    # Approvers may request for someone else; only example.com people may be requested for.
    write_flow(
        flows_dir,
        name="on-behalf",
        extra='on_behalf=True, requesters=People(email_domains=("example.com",)),',
    )
    # Only people the flow maps may request: everyone else is refused in the modal.
    write_flow(flows_dir, name="mapped-only", extra="identity=Identity(use_email=False),")
    # Grants only to a verified identity link (issue 16), never to the Slack profile's email.
    write_flow(flows_dir, name="verified", extra="identity=Identity(verified=True),")
    # Approvals confirmed with a passkey on the web's page (issue 16), one and two needed.
    write_flow(flows_dir, name="passkey", extra='approval_assurance="passkey",')
    write_flow(
        flows_dir, name="passkey-two", extra='approval_assurance="passkey", approvals_required=2,'
    )
    # Break-glass that only the requester's passkey activates.
    write_flow(
        flows_dir, name="passkey-glass", extra='break_glass=True, requester_assurance="passkey",'
    )
    idp = _idp_groups(flows_dir)
    redis.Redis.from_url(redis_url).flushdb()
    for database_url in migrated_database_for(request, request.param, workdir):
        # Every stack streams its audit trail to a local SIEM that fails its first deliveries.
        receiver = AuditReceiver(SIEM_SECRET, fail_first=3).start()
        google = GcpStandIn(projects=[GCP_PROJECT], service_accounts=[GCP_SERVICE_ACCOUNT]).start()
        # On-call data (issue 15): PagerDuty and Opsgenie, asked afresh on every decision.
        pagerduty = PagerDutyStandIn(token=PAGERDUTY_TOKEN).start()
        opsgenie = OpsgenieStandIn(api_key=OPSGENIE_KEY).start()
        panel = PanelStandIn(PANEL_TOKEN, {"admin": secrets.token_urlsafe(24)}).start()
        local = LocalStack(
            workdir=workdir,
            flows_dir=flows_dir,
            redis_url=redis_url,
            database_url=database_url,
            migrated=True,
            extra_env={
                "LATCHKEY_AUDIT_WEBHOOK_URL": receiver.url,
                "LATCHKEY_AUDIT_WEBHOOK_SECRET": SIEM_SECRET,
                "LATCHKEY_AUDIT_WEBHOOK_HEADERS": '{"Authorization": "Bearer siem-token"}',
                # Not every 1 s sweep: a delivery each second was a tenth of an idle stack's CPU.
                "LATCHKEY_AUDIT_DELIVER_SECONDS": "3",
                "LATCHKEY_POSTGRES_ROLE_URL": POSTGRES_URL or "",
                "LATCHKEY_POSTGRES_LOGIN_URL": POSTGRES_URL or "",
                "LATCHKEY_MARIADB_LOGIN_URL": mariadb.admin_url,
                # One per stack: the logins' names are derived from it, and a stack's
                # reconciliation drops any login of its targets' that it holds no grant for,
                # which another stack's would be if both derived the same names.
                "LATCHKEY_CREDENTIALS_KEY": f"{CREDENTIALS_KEY}-{uuid.uuid4().hex}",
                "LATCHKEY_GCP_ENDPOINT": google.endpoint,
                "LATCHKEY_GCP_GRPC_ENDPOINT": google.grpc_endpoint,
                "LATCHKEY_PAGERDUTY_URL": pagerduty.url,
                "LATCHKEY_PAGERDUTY_TOKEN": PAGERDUTY_TOKEN,
                "LATCHKEY_OPSGENIE_URL": opsgenie.url,
                "LATCHKEY_OPSGENIE_API_KEY": OPSGENIE_KEY,
                "LATCHKEY_ONCALL_CACHE_SECONDS": "0",
                "LATCHKEY_PANEL_URL": panel.url,
                "LATCHKEY_PANEL_TOKEN": PANEL_TOKEN,
                **idp.env,
            },
        )
        # The passkey pages' address: localhost, the one http origin browsers trust.
        local.extra_env["LATCHKEY_PUBLIC_URL"] = f"http://localhost:{local.port}"
        # The company's OpenID Connect provider, for verified identity links.
        oidc = OidcStandIn(
            client_id=OIDC_CLIENT_ID,
            client_secret=OIDC_CLIENT_SECRET,
            redirect_uri=f"http://localhost:{local.port}/identity/callback",
        ).start()
        local.extra_env.update(
            LATCHKEY_OIDC_ISSUER=oidc.url,
            LATCHKEY_OIDC_CLIENT_ID=OIDC_CLIENT_ID,
            LATCHKEY_OIDC_CLIENT_SECRET=OIDC_CLIENT_SECRET,
        )
        local.oidc = oidc  # type: ignore[attr-defined]
        local.audit_receiver = receiver  # type: ignore[attr-defined]
        local.google = google  # type: ignore[attr-defined]
        local.pagerduty = pagerduty  # type: ignore[attr-defined]
        local.opsgenie = opsgenie  # type: ignore[attr-defined]
        local.panel = panel  # type: ignore[attr-defined]
        local.idp = idp  # type: ignore[attr-defined]
        local.mariadb = mariadb  # type: ignore[attr-defined]
        local.shared_accounts = accounts  # type: ignore[attr-defined]
        try:
            local.start()
            _people(local)
            yield local
        except BaseException:
            print(local.all_logs())
            raise
        finally:
            local.stop(kill=True)
            receiver.stop()
            google.stop()
            pagerduty.stop()
            opsgenie.stop()
            panel.stop()
            oidc.stop()
            idp.stop()
            redis.Redis.from_url(redis_url).flushdb()


class IdpGroups:
    """The identity providers' stand-ins of a stack and the groups its flows grant."""

    def __init__(self) -> None:
        self.google = GoogleGroupsStandIn().start()
        self.graph = GraphStandIn(ENTRA_TENANT, ENTRA_CLIENT, ENTRA_SECRET).start()
        self.okta = OktaStandIn(OKTA_TOKEN).start()
        self.google.add_group(GOOGLE_GROUP)
        self.entra_pim_group = self.graph.add_group("prod-admins")
        self.entra_group = self.graph.add_group("support")
        self.okta_group = self.okta.add_group("prod-admins")
        self.env = {
            "LATCHKEY_GOOGLE_GROUPS_ENDPOINT": self.google.url,
            "LATCHKEY_ENTRA_TENANT_ID": ENTRA_TENANT,
            "LATCHKEY_ENTRA_CLIENT_ID": ENTRA_CLIENT,
            "LATCHKEY_ENTRA_CLIENT_SECRET": ENTRA_SECRET,
            "LATCHKEY_ENTRA_AUTHORITY_URL": self.graph.graph_url,
            "LATCHKEY_ENTRA_GRAPH_URL": self.graph.graph_url,
            # The Graph stand-in's throwaway CA, trusted as a real one would be.
            "REQUESTS_CA_BUNDLE": self.graph.ca_file,
            "LATCHKEY_OKTA_URL": self.okta.url,
            "LATCHKEY_OKTA_API_TOKEN": OKTA_TOKEN,
        }

    def stop(self) -> None:
        self.google.stop()
        self.graph.stop()
        self.okta.stop()


def _idp_groups(flows_dir: Path) -> IdpGroups:
    idp = IdpGroups()
    for name, target in (
        ("google-group", f'GoogleGroupTarget(name="eng-admins", group_email="{GOOGLE_GROUP}")'),
        (
            "entra-pim",
            f'EntraGroupTarget(name="prod-admins", group_id="{idp.entra_pim_group}", mode="pim")',
        ),
        (
            "entra-member",
            f'EntraGroupTarget(name="support", group_id="{idp.entra_group}", mode="membership")',
        ),
        ("okta-group", f'OktaGroupTarget(name="prod-admins", group_id="{idp.okta_group}")'),
    ):
        write_flow(
            flows_dir,
            name=name,
            targets=f"({target},)",
            durations=IDP_DURATIONS,
            extra="extension_needs_approval=False, max_extensions=1,",
        )
    return idp


def _people(stack: LocalStack) -> None:
    for user_id, name in (
        (APPROVER, "ann"),
        (SECOND_APPROVER, "bo"),
        (GROUP_APPROVER, "cy"),
        (OUTSIDER, "dee"),
        (WATCHER, "eve"),
        (HOOK_LEAD, HOOK_LEAD_EMAIL.split("@")[0]),
    ):
        stack.slack.add_user(user_id, name=name, email=f"{name}@example.com")
    stack.slack.add_usergroup(APPROVER_GROUP, [GROUP_APPROVER])
    stack.slack.add_channel(NO_BOT_CHANNEL, name="nobody-invited-the-bot", bot_member=False)
    stack.iam().create_group(GroupName=GROUP_NAME)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A failed e2e test's report carries the logs of every stack it used: without them a
    failure in CI (a process that stalled, a task that never ran) cannot be read."""
    report = yield
    if report.when == "call" and report.failed:
        for value in getattr(item, "funcargs", {}).values():
            for held in value if isinstance(value, tuple) else (value,):
                if isinstance(held, LocalStack):
                    report.sections.append(("process logs", held.all_logs()))
    return report


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent.name == "e2e":
            item.add_marker(pytest.mark.e2e)
            # `--dist loadgroup` (scripts/test) keeps the tests sharing a stack on one
            # worker: a module's stack per backend is started once, not on every worker.
            item.add_marker(pytest.mark.xdist_group(_stack_group(item)))


# How many test workers hold a shared stack of each backend. A shared stack lives for the
# whole run, and an idle one still sweeps every second: one on every worker (5 workers, two
# backends) cost more CPU than the tests run on them. Two per backend each serve about two
# minutes of tests, so the groups still spread over the workers.
SHARED_STACKS = 2


def _stack_group(item: pytest.Item) -> str:
    """The stack a test runs on, as an xdist group: a test on the session's shared stack
    goes to one of SHARED_STACKS groups of its backend (by a stable hash of its name, the
    same on every worker); any other e2e test to its module's group with the values of its
    module-wide parametrized fixtures (the backend)."""
    callspec = getattr(item, "callspec", None)
    defs = item._fixtureinfo.name2fixturedefs  # type: ignore[attr-defined]
    if "stack" in defs and defs["stack"][-1].scope == "session":
        slot = zlib.crc32(item.nodeid.split("[", 1)[0].encode()) % SHARED_STACKS
        return f"shared-{callspec.params['stack']}-{slot}"
    shared = [
        str(value)
        for name, value in (callspec.params.items() if callspec else ())
        if name in defs and defs[name][-1].scope in ("module", "package", "session")
    ]
    return "-".join([item.module.__name__.rsplit(".", 1)[-1], *shared])  # type: ignore[attr-defined]
