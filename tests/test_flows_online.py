"""`latchkey flows check --online` asks each provider about every target: a typo in a
group, role or project is found before anyone requests it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from app.testing.gcp_standin import GcpStandIn
from app.testing.mariadb_server import MariaDBCorner
from app.testing.moto import client, moto_server
from tests.conftest import MARIADB_URL, POSTGRES_URL
from tests.factories import write_flow
from tests.test_cli_startup import _run

ACCOUNT = "123456789012"  # moto's default account
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:RoleSessionName": "${aws:username}"}},
        }
    ],
}


@pytest.fixture(scope="module")
def aws() -> Iterator[str]:
    with moto_server() as endpoint:
        iam = client("iam", endpoint)
        iam.create_group(GroupName="latchkey-admins")
        iam.create_role(RoleName="latchkey-deploy", AssumeRolePolicyDocument=json.dumps(TRUST))
        loose = {**TRUST, "Statement": [{**TRUST["Statement"][0], "Condition": {}}]}
        iam.create_role(RoleName="latchkey-loose", AssumeRolePolicyDocument=json.dumps(loose))
        yield endpoint


@pytest.fixture(scope="module")
def google() -> Iterator[GcpStandIn]:
    with GcpStandIn(projects=["acme-prod"]) as standin:
        yield standin


def _targets(*items: str) -> str:
    return "(" + ", ".join(items) + ",)"


def test_online_check_names_every_target_that_is_missing_or_unsafe(
    tmp_path: Path, aws: str, google: GcpStandIn
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    role = f"arn:aws:iam::{ACCOUNT}:role/"
    write_flow(
        flows,
        targets=_targets(
            'AwsIamGroupTarget(name="admins", group_name="latchkey-admins")',
            'AwsIamGroupTarget(name="typo", group_name="latchkey-admns")',
            f'AwsRoleTarget(name="deploy", role_arn="{role}latchkey-deploy")',
            f'AwsRoleTarget(name="loose", role_arn="{role}latchkey-loose")',
            f'AwsRoleTarget(name="gone", role_arn="{role}latchkey-gone")',
            'GcpRoleBindingTarget(name="viewer", resource_name="projects/acme-prod", role="roles/viewer")',
            'GcpRoleBindingTarget(name="other", resource_name="projects/acme-stage", role="roles/viewer")',
        ),
    )
    env = {
        "LATCHKEY_FLOWS": str(flows),
        "AWS_ENDPOINT_URL": aws,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LATCHKEY_GCP_ENDPOINT": google.endpoint,
        "LATCHKEY_GCP_GRPC_ENDPOINT": google.grpc_endpoint,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    offline = _run(["flows", "check"], env, tmp_path)
    assert offline.returncode == 0, offline.stderr  # formats are fine: only AWS/Google know

    done = _run(["flows", "check", "--online"], env, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "ok   test-admin/admins (aws_iam_group): exists and can be managed" in lines
    assert "ok   test-admin/deploy (aws_role): exists and can be managed" in lines
    assert "ok   test-admin/viewer (gcp_role): exists and can be managed" in lines
    failures = [line for line in lines if line.startswith("FAIL")]
    assert failures[0] == (
        "FAIL test-admin/typo (aws_iam_group): IAM group 'latchkey-admns' does not exist"
    )
    assert failures[1].startswith("FAIL test-admin/loose (aws_role): the trust policy of")
    assert failures[2] == (
        f"FAIL test-admin/gone (aws_role): IAM role {role}latchkey-gone does not exist"
    )
    assert failures[3].startswith("FAIL test-admin/other (gcp_role):")
    assert "projects/acme-stage" in failures[3]
    assert len(failures) == 4


def test_offline_check_names_a_malformed_arn(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    path = write_flow(
        flows,
        targets=_targets('AwsRoleTarget(name="deploy", role_arn="arn:aws:iam::12345:role/x")'),
    )
    done = _run(
        ["flows", "check"],
        {"LATCHKEY_FLOWS": str(flows), "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        tmp_path,
    )
    assert done.returncode == 2
    assert (
        f"{path}: role_arn: Value error, 'arn:aws:iam::12345:role/x' is not "
        "an IAM role ARN (arn:aws:iam::123456789012:role/name)"
    ) in done.stderr


def test_online_check_names_every_channel_the_bot_cannot_post_to(tmp_path: Path) -> None:
    from app.testing.slack_standin import SlackStandIn

    flows = tmp_path / "flows"
    flows.mkdir()
    write_flow(
        flows,
        targets=_targets(
            'AwsIamGroupTarget(name="admins", group_name="latchkey-admins")',
            'AwsIamGroupTarget(name="dba", group_name="latchkey-admins", approval_channel="C0DBAS")',
        ),
        extra='notify=Watchers(channels=("C0GONE",)),',
    )
    slack = SlackStandIn(token="xoxb-test-token")
    slack.start()
    try:
        slack.add_channel("C0APPROVALS", name="access-approvals")
        slack.add_channel("C0DBAS", name="dbas", bot_member=False)
        env = {
            "LATCHKEY_FLOWS": str(flows),
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "SLACK_API_URL": slack.base_url,
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }
        done = _run(["flows", "check", "--online"], env, tmp_path)
    finally:
        slack.stop()
    lines = done.stdout.splitlines()
    assert "ok   channel C0APPROVALS (test-admin): the bot is a member" in lines, done.stdout
    assert any(
        line.startswith("FAIL channel C0DBAS (test-admin): the bot is not a member")
        for line in lines
    )
    assert any(
        line.startswith("FAIL channel C0GONE (test-admin): Slack has no such channel")
        for line in lines
    )
    assert done.returncode == 1


def test_online_check_names_a_missing_identity_provider_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.testing.google_groups_standin import GoogleGroupsStandIn
    from app.testing.graph_standin import GraphStandIn
    from app.testing.okta_standin import OktaStandIn

    google = GoogleGroupsStandIn().start()
    graph = GraphStandIn("tenant-1", "client-1", "secret-1").start()
    okta = OktaStandIn("okta-token").start()
    try:
        google.add_group("eng@example.com")
        entra = graph.add_group("support")
        okta_group = okta.add_group("admins")
        missing_guid = "0" * 8 + "-0000-0000-0000-" + "0" * 12
        flows = tmp_path / "flows"
        flows.mkdir()
        write_flow(
            flows,
            targets=_targets(
                'GoogleGroupTarget(name="eng", group_email="eng@example.com")',
                'GoogleGroupTarget(name="typo", group_email="egn@example.com")',
                f'EntraGroupTarget(name="support", group_id="{entra}", mode="membership")',
                f'EntraGroupTarget(name="gone", group_id="{missing_guid}", mode="pim")',
                f'OktaGroupTarget(name="admins", group_id="{okta_group}")',
                'OktaGroupTarget(name="nope", group_id="00gNOSUCHGROUP000000")',
            ),
        )
        env = {
            "LATCHKEY_FLOWS": str(flows),
            "LATCHKEY_GOOGLE_GROUPS_ENDPOINT": google.url,
            "LATCHKEY_ENTRA_TENANT_ID": "tenant-1",
            "LATCHKEY_ENTRA_CLIENT_ID": "client-1",
            "LATCHKEY_ENTRA_CLIENT_SECRET": "secret-1",
            "LATCHKEY_ENTRA_AUTHORITY_URL": graph.graph_url,
            "LATCHKEY_ENTRA_GRAPH_URL": graph.graph_url,
            "REQUESTS_CA_BUNDLE": graph.ca_file,
            "LATCHKEY_OKTA_URL": okta.url,
            "LATCHKEY_OKTA_API_TOKEN": "okta-token",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }
        unset = _run(["flows", "check"], {**env, "LATCHKEY_OKTA_API_TOKEN": ""}, tmp_path)
        assert unset.returncode != 0
        assert "okta_group targets need LATCHKEY_OKTA_API_TOKEN not set" in unset.stderr
        done = _run(["flows", "check", "--online"], env, tmp_path)
    finally:
        google.stop()
        graph.stop()
        okta.stop()
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for ok in ("eng (google_group)", "support (entra_group)", "admins (okta_group)"):
        assert f"ok   test-admin/{ok}: exists and can be managed" in lines, lines
    failures = [line for line in lines if line.startswith("FAIL")]
    assert len(failures) == 3, failures
    assert failures[0].startswith("FAIL test-admin/typo (google_group): Google group")
    assert "'egn@example.com' does not exist" in failures[0]
    assert failures[1] == (
        f"FAIL test-admin/gone (entra_group): Entra group {missing_guid} does not exist"
    )
    assert failures[2] == (
        "FAIL test-admin/nope (okta_group): Okta group 00gNOSUCHGROUP000000 does not exist"
    )


@pytest.mark.skipif(not POSTGRES_URL, reason="LATCHKEY_TEST_POSTGRES_URL is not set (CI sets it)")
def test_a_postgres_login_flow_needs_its_settings_and_its_roles(tmp_path: Path) -> None:
    assert POSTGRES_URL is not None
    role = f"lk_test_read_{uuid.uuid4().hex[:8]}"
    flows = tmp_path / "flows"
    flows.mkdir()
    write_flow(
        flows,
        targets=_targets(
            f'PostgresLoginTarget(name="read", database="test", roles=("{role}",))',
            'PostgresLoginTarget(name="gone", database="test", roles=("no_such_role",))',
        ),
    )
    env = {
        "LATCHKEY_FLOWS": str(flows),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    unset = _run(["flows", "check"], env, tmp_path)
    assert unset.returncode != 0
    assert (
        "postgres_login targets need LATCHKEY_POSTGRES_LOGIN_URL, LATCHKEY_CREDENTIALS_KEY "
        "not set" in unset.stderr
    )
    env["LATCHKEY_POSTGRES_LOGIN_URL"] = POSTGRES_URL
    env["LATCHKEY_CREDENTIALS_KEY"] = "short"
    weak = _run(["flows", "check"], env, tmp_path)
    assert "LATCHKEY_CREDENTIALS_KEY of at least 16 characters" in weak.stderr
    env["LATCHKEY_CREDENTIALS_KEY"] = "credentials-key-0123456789abcdef"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} NOLOGIN")
    try:
        done = _run(["flows", "check", "--online"], env, tmp_path)
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {role}")
    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ok   test-admin/read (postgres_login): exists and can be managed" in lines, lines
    assert any(
        line.startswith("FAIL") and "'no_such_role' does not exist" in line for line in lines
    ), lines


def test_a_mariadb_login_flow_needs_its_settings_and_its_role(tmp_path: Path) -> None:
    corner = MariaDBCorner(MARIADB_URL).create()
    flows = tmp_path / "flows"
    flows.mkdir()
    write_flow(
        flows,
        targets=_targets(
            f'MariaDBLoginTarget(name="read", database="{corner.data}", role="{corner.role}")',
            f'MariaDBLoginTarget(name="gone", database="{corner.data}", role="no_such_role")',
        ),
    )
    env = {
        "LATCHKEY_FLOWS": str(flows),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    try:
        unset = _run(["flows", "check"], env, tmp_path)
        assert unset.returncode != 0
        assert (
            "mariadb_login targets need LATCHKEY_MARIADB_LOGIN_URL, LATCHKEY_CREDENTIALS_KEY "
            "not set" in unset.stderr
        )
        env["LATCHKEY_MARIADB_LOGIN_URL"] = corner.admin_url
        env["LATCHKEY_CREDENTIALS_KEY"] = "short"
        weak = _run(["flows", "check"], env, tmp_path)
        assert "LATCHKEY_CREDENTIALS_KEY of at least 16 characters" in weak.stderr
        env["LATCHKEY_CREDENTIALS_KEY"] = "credentials-key-0123456789abcdef"
        done = _run(["flows", "check", "--online"], env, tmp_path)
    finally:
        corner.drop()
    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ok   test-admin/read (mariadb_login): exists and can be managed" in lines, lines
    assert any(
        line.startswith("FAIL") and "MariaDB role 'no_such_role' does not exist" in line
        for line in lines
    ), lines


EXAMPLES = Path(__file__).resolve().parents[1] / "flows" / "examples"


@pytest.mark.skipif(not POSTGRES_URL, reason="LATCHKEY_TEST_POSTGRES_URL is not set (CI sets it)")
def test_the_database_example_flows_check_and_name_what_the_server_lacks(tmp_path: Path) -> None:
    """The shipped examples (flows/examples/, not loaded unless copied into a flows folder):
    valid as written, refused without their settings, and `--online` names the account and
    role a new server does not have yet."""
    assert POSTGRES_URL is not None
    flows = tmp_path / "flows"
    flows.mkdir()
    for name in ("vendor_db_read.py", "dba_breakglass.py", "ci_migration_window.py"):
        (flows / name).write_text((EXAMPLES / name).read_text())
    env = {"LATCHKEY_FLOWS": str(flows), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    unset = _run(["flows", "check"], env, tmp_path)
    assert unset.returncode != 0
    assert "postgres_account targets need LATCHKEY_POSTGRES_LOGIN_URL" in unset.stderr
    env["LATCHKEY_POSTGRES_LOGIN_URL"] = POSTGRES_URL
    env["LATCHKEY_CREDENTIALS_KEY"] = "credentials-key-0123456789abcdef"
    assert _run(["flows", "check"], env, tmp_path).returncode == 0
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        present = conn.execute(
            "SELECT rolname FROM pg_roles "
            "WHERE rolname IN ('dba_breakglass', 'warehouse_read', 'app_migrator')"
        ).fetchall()
    if present:
        pytest.fail(f"the machine's PostgreSQL already has {present}: the check needs them absent")
    lacking = _run(["flows", "check", "--online"], env, tmp_path)
    assert lacking.returncode == 1
    assert "PostgreSQL account 'dba_breakglass' does not exist" in lacking.stdout
    assert "PostgreSQL role 'warehouse_read' does not exist" in lacking.stdout
    assert "PostgreSQL role 'app_migrator' does not exist" in lacking.stdout
