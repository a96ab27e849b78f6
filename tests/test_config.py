from __future__ import annotations

import pytest

from app.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in (
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN",
        "SLACK_API_URL",
        "LATCHKEY_AUDIT_KEY",
        "LATCHKEY_ADMINS",
        "LATCHKEY_AUDIT_WEBHOOK_URL",
        "LATCHKEY_AUDIT_WEBHOOK_SECRET",
        "LATCHKEY_AUDIT_WEBHOOK_HEADERS",
        "LATCHKEY_MAX_BODY_BYTES",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_http_mode_refuses_to_start_without_signing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        load_settings().require_slack()


def test_socket_mode_needs_no_signing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    settings = load_settings()
    settings.require_slack()
    assert settings.socket_mode


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("SLACK_BOT_TOKEN", "xoxp-user-token", "SLACK_BOT_TOKEN"),
        ("SLACK_APP_TOKEN", "xoxb-wrong", "SLACK_APP_TOKEN"),
        ("SLACK_API_URL", "http://127.0.0.1:9/api", "SLACK_API_URL"),
        ("LATCHKEY_SWEEP_SECONDS", "0", "LATCHKEY_SWEEP_SECONDS"),
        # Passkeys need a secure context on a domain: https, or http only on localhost.
        ("LATCHKEY_PUBLIC_URL", "http://latchkey.example.com", "must use https"),
        ("LATCHKEY_PUBLIC_URL", "https://10.0.0.5", "not an IP address"),
        ("LATCHKEY_PUBLIC_URL", "https://example.com/latchkey", "without a path"),
    ],
)
def test_bad_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, named: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


def test_public_url_is_kept_as_the_sites_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATCHKEY_PUBLIC_URL", "https://latchkey.example.com/")
    assert load_settings().public_url == "https://latchkey.example.com"
    monkeypatch.setenv("LATCHKEY_PUBLIC_URL", "http://localhost:3000")
    assert load_settings().public_url == "http://localhost:3000"


def test_audit_key_is_required_and_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="LATCHKEY_AUDIT_KEY"):
        load_settings().require_audit_key()
    monkeypatch.setenv("LATCHKEY_AUDIT_KEY", "s3cret-key-0123456789")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-top-secret")
    settings = load_settings()
    assert settings.require_audit_key() == b"s3cret-key-0123456789"
    assert "s3cret" not in repr(settings) and "top-secret" not in repr(settings)


def test_admins_are_slack_user_and_group_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATCHKEY_ADMINS", "U0ALICE, S0SECURITY ,W0BOB")
    settings = load_settings()
    assert settings.admin_users == {"U0ALICE", "W0BOB"}
    assert settings.admin_groups == ("S0SECURITY",)
    monkeypatch.setenv("LATCHKEY_ADMINS", "U0ALICE,alice@example.com")
    with pytest.raises(ConfigError, match=r"LATCHKEY_ADMINS: 'alice@example\.com' is not a Slack"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"LATCHKEY_AUDIT_WEBHOOK_URL": "ftp://siem"}, "must be an http"),
        ({"LATCHKEY_AUDIT_WEBHOOK_URL": "https://siem"}, "LATCHKEY_AUDIT_WEBHOOK_SECRET must be"),
        (
            {
                "LATCHKEY_AUDIT_WEBHOOK_URL": "https://siem",
                "LATCHKEY_AUDIT_WEBHOOK_SECRET": "0123456789abcdef",
                "LATCHKEY_AUDIT_WEBHOOK_HEADERS": "Authorization: x",
            },
            "LATCHKEY_AUDIT_WEBHOOK_HEADERS must be a JSON object",
        ),
    ],
)
def test_webhook_settings_are_checked_at_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], problem: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=problem):
        load_settings()


@pytest.mark.parametrize(
    "url",
    [
        "http://siem.example.com/audit",
        "http://10.0.0.5:8088/services/collector",
        "http://localhost.example.com/audit",
        "http://[::2]/audit",
        "https:///no-host",
    ],
)
def test_webhook_must_be_https_unless_loopback(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("LATCHKEY_AUDIT_WEBHOOK_URL", url)
    monkeypatch.setenv("LATCHKEY_AUDIT_WEBHOOK_SECRET", "0123456789abcdef")
    with pytest.raises(
        ConfigError, match=r"LATCHKEY_AUDIT_WEBHOOK_URL must (be an https|use https)"
    ):
        load_settings()


@pytest.mark.parametrize(
    "url",
    [
        "https://siem.example.com/audit",
        "http://127.0.0.1:8088/audit",
        "http://127.3.2.1/audit",
        "http://[::1]:9000/audit",
        "http://localhost:8088/audit",
    ],
)
def test_webhook_over_https_or_to_loopback_is_accepted(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("LATCHKEY_AUDIT_WEBHOOK_URL", url)
    monkeypatch.setenv("LATCHKEY_AUDIT_WEBHOOK_SECRET", "0123456789abcdef")
    assert load_settings().audit_webhook_url == url


def test_max_body_bytes_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().max_body_bytes == 1024 * 1024
    monkeypatch.setenv("LATCHKEY_MAX_BODY_BYTES", "65536")
    assert load_settings().max_body_bytes == 65536
    monkeypatch.setenv("LATCHKEY_MAX_BODY_BYTES", "10")
    with pytest.raises(ConfigError, match="LATCHKEY_MAX_BODY_BYTES"):
        load_settings()
