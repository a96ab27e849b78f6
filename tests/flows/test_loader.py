from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from app.cli import main
from app.flows.loader import FlowError, load_flows
from tests.factories import write_flow

SHIPPED_FLOWS = Path(__file__).resolve().parents[2] / "flows"


def test_shipped_example_flows_are_valid() -> None:
    registry = load_flows(SHIPPED_FLOWS)
    assert len(registry) >= 2


def test_valid_flow_loads_with_sorted_durations(tmp_path: Path) -> None:
    write_flow(tmp_path, durations="timedelta(hours=1), timedelta(seconds=4)")
    flow = load_flows(tmp_path).get("test-admin").flow
    assert flow.durations == (timedelta(seconds=4), timedelta(hours=1))


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        (
            {"durations": "timedelta(hours=2)", "max_duration": "timedelta(hours=1)"},
            "flow",
            "exceed max_duration",
        ),
        ({"durations": "timedelta(seconds=-1)"}, "durations", "longer than zero"),
        ({"name": "Not A Slug"}, "name", "lowercase"),
        ({"extra": 'approval_channel_typo="C1",'}, "approval_channel_typo", "Extra inputs"),
        ({"extra": "max_extensions=-1,"}, "max_extensions", "greater than or equal to 0"),
        (
            {"extra": 'notify=Watchers(channels=("#security",)),'},
            "channels",
            "'#security' is not a Slack channel id",
        ),
        ({"extra": 'notify=Watchers(users=("ann",)),'}, "users", "not a Slack user id"),
        (
            {"extra": 'requesters=People(usergroups=("U0LEAD",)),'},
            "usergroups",
            "'U0LEAD' is not a Slack user-group id (S…)",
        ),
        (
            {"extra": 'auto_approve=People(users=("lead@example.com",)),'},
            "users",
            "'lead@example.com' is not a Slack user id (U… or W…)",
        ),
        (
            {
                "extra": "escalation=(Escalation(after=timedelta(minutes=30), "
                'to=People(users=("U0LEAD",))), Escalation(after=timedelta(minutes=10), '
                'to=People(users=("U0SEC",)))),'
            },
            "flow",
            "escalation: list the steps in order of `after`",
        ),
        (
            {
                "extra": "pending_timeout=timedelta(minutes=5), escalation=(Escalation("
                'after=timedelta(minutes=10), to=People(users=("U0LEAD",))),),'
            },
            "flow",
            "every step must come before pending_timeout",
        ),
        (
            {
                "extra": "escalation=(Escalation(after=timedelta(minutes=10), "
                'to=People(email_domains=("example.com",))),),'
            },
            "flow",
            "to: escalate to users or user groups, not email domains",
        ),
        (
            {"extra": 'escalation=(Escalation(after=timedelta(minutes=10), hook="leads"),),'},
            "flow",
            "hook: 'leads' must be a get_* function",
        ),
        (
            {"extra": 'escalation=(Escalation(after=timedelta(minutes=10), hook="get_leads"),),'},
            "escalation.0.hook",
            "no function get_leads() in this file",
        ),
        (
            {"targets": '(AwsIamGroupTarget(name="a", group_name="g", approval_channel="dbas"),)'},
            "approval_channel",
            "'dbas' is not a Slack channel id",
        ),
        ({"extra": "expiry_notice=timedelta(0),"}, "flow", "expiry_notice must be longer"),
        (
            {"extra": "max_total_duration=timedelta(minutes=5),"},
            "flow",
            "max_total_duration cannot be shorter than max_duration",
        ),
    ],
)
def test_invalid_flow_names_file_and_field(
    tmp_path: Path, kwargs: dict, field: str, message: str
) -> None:
    path = write_flow(tmp_path, filename="broken.py", **kwargs)
    with pytest.raises(FlowError) as caught:
        load_flows(tmp_path)
    text = str(caught.value)
    assert str(path) in text and field in text and message in text


def test_every_broken_file_is_reported_at_once(tmp_path: Path) -> None:
    write_flow(tmp_path, name="one", filename="one.py", durations="timedelta(0)")
    (tmp_path / "two.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(FlowError) as caught:
        load_flows(tmp_path)
    assert len(caught.value.problems) == 2
    assert "two.py: raised RuntimeError while loading: boom" in str(caught.value)


def test_two_flows_with_one_name_are_refused(tmp_path: Path) -> None:
    write_flow(tmp_path, filename="a.py")
    write_flow(tmp_path, filename="b.py")
    with pytest.raises(FlowError, match="already used by"):
        load_flows(tmp_path)


def test_flows_check_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_flow(tmp_path)
    assert main(["flows", "check", "--dir", str(tmp_path)]) == 0
    assert "test-admin" in capsys.readouterr().out
    write_flow(tmp_path, filename="bad.py", name="bad", extra="approvers_typo=1,")
    assert main(["flows", "check", "--dir", str(tmp_path)]) == 2
    assert "bad.py: approvers_typo" in capsys.readouterr().err


def test_flows_check_needs_the_settings_passkeys_and_identity_links_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import get_settings

    write_flow(
        tmp_path,
        extra='approval_assurance="passkey", identity=Identity(verified=True),',
    )
    for name in ("LATCHKEY_PUBLIC_URL", "LATCHKEY_OIDC_ISSUER", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    assert main(["flows", "check", "--dir", str(tmp_path)]) == 2
    said = capsys.readouterr().err
    assert "LATCHKEY_PUBLIC_URL" in said and "LATCHKEY_OIDC_ISSUER" in said
    monkeypatch.setenv("LATCHKEY_PUBLIC_URL", "https://latchkey.example.com")
    monkeypatch.setenv("LATCHKEY_OIDC_ISSUER", "https://login.example.com")
    monkeypatch.setenv("LATCHKEY_OIDC_CLIENT_ID", "latchkey")
    monkeypatch.setenv("LATCHKEY_OIDC_CLIENT_SECRET", "s3cret")
    get_settings.cache_clear()
    try:
        assert main(["flows", "check", "--dir", str(tmp_path)]) == 0
    finally:
        get_settings.cache_clear()
    said = capsys.readouterr().out
    assert "approvals confirmed with a passkey" in said and "grants to verified identities" in said


def test_flows_check_warns_about_risky_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_flow(
        tmp_path,
        durations="timedelta(hours=1)",
        max_duration="timedelta(days=2)",
        extra="allow_self_approval=True, pending_timeout=None,",
    )
    assert main(["flows", "check", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "allow_self_approval: with approvals_required=1" in out
    assert "max_duration: 2d is standing access" in out
    assert "pending_timeout: None" in out
    assert main(["flows", "check", "--strict", "--dir", str(tmp_path)]) == 1


def test_expiry_notice_lead_and_extension_cap() -> None:
    from tests.factories import make_flow

    flow = make_flow(max_duration=timedelta(hours=2))
    # Ten minutes ahead, or a tenth of the grant when that is shorter.
    assert flow.notice_lead(timedelta(hours=2)) == timedelta(minutes=10)
    assert flow.notice_lead(timedelta(minutes=20)) == timedelta(minutes=2)
    assert make_flow(expiry_notice=None).notice_lead(timedelta(hours=1)) is None
    assert flow.total_duration_cap == timedelta(hours=6)  # 2h, and 2h for each of 2 extensions
    assert make_flow(max_total_duration=timedelta(hours=3)).total_duration_cap == timedelta(hours=3)


def test_flows_check_warns_about_uncapped_automatic_extensions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_flow(tmp_path, extra="extension_needs_approval=False,")
    assert main(["flows", "check", "--dir", str(tmp_path)]) == 0
    assert "max_total_duration: extensions apply without approval" in capsys.readouterr().out


def test_flow_without_approvers_is_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_flow(tmp_path)
    path.write_text(
        path.read_text().replace(
            'approvers=Approvers(users=("U0APPROVER1", "U0APPROVER2"), usergroups=("S0LEADS",)),',
            "approvers=People(),",
        )
    )
    main(["flows", "check", "--dir", str(tmp_path)])
    assert "no request of this flow can ever be approved" in capsys.readouterr().out


def test_flows_check_says_where_each_flows_cards_go(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_flow(
        tmp_path,
        targets=(
            '(AwsIamGroupTarget(name="admins", group_name="g"), '
            'AwsIamGroupTarget(name="dba", group_name="d", approval_channel="C0DBAS"))'
        ),
        extra='approver_dms=True, notify=Watchers(users=("U0WATCHER",), channels=("C0SEC",)),',
    )
    assert main(["flows", "check", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(2 targets, channels C0APPROVALS, C0DBAS, approvers' DMs, 2 watchers)" in out
    flow = load_flows(tmp_path).get("test-admin").flow
    assert flow.channel_for("dba") == "C0DBAS" and flow.channel_for("admins") == "C0APPROVALS"


def test_the_example_flows_load_with_their_custom_provider() -> None:
    """flows/examples/ (copied into a flows folder to be used) is valid as it ships."""
    registry = load_flows(SHIPPED_FLOWS / "examples")
    names = {loaded.flow.name for loaded in registry}
    assert names == {"vendor-db-read", "dba-breakglass", "ci-migrations", "console-admin"}
    target = registry.get("console-admin").flow.target("console-admin")
    assert target is not None and getattr(target, "exclusive", False) is True
    # Never loaded in place: the shipped folder's own flows do not include them.
    assert not names & {loaded.flow.name for loaded in load_flows(SHIPPED_FLOWS)}
