"""Settings from the environment (and `.env` in development), validated at start-up."""

from __future__ import annotations

import ipaddress
import json
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(RuntimeError):
    """Configuration that cannot run; the message names the setting."""


class Settings(BaseSettings):
    """Everything Latchkey reads from its environment. Secrets are SecretStr so they never print."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    slack_bot_token: SecretStr = Field(default=SecretStr(""), alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr = Field(default=SecretStr(""), alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", alias="SLACK_API_URL")
    database_url: str = Field(default="sqlite:///latchkey.db", alias="DATABASE_URL")
    redis_url: str = Field(default="redis://localhost:6379/0", alias="REDIS_URL")
    flows_dir: Path = Field(default=Path("./flows"), alias="LATCHKEY_FLOWS")
    port: int = Field(default=3000, alias="PORT", ge=1, le=65535)
    sweep_seconds: float = Field(default=30.0, alias="LATCHKEY_SWEEP_SECONDS", gt=0)
    # Key for the audit hash chain (HMAC). Kept outside the DB so DB access alone cannot
    # rewrite history. Required outside development; see README.
    audit_key: SecretStr = Field(default=SecretStr(""), alias="LATCHKEY_AUDIT_KEY")
    # Keys the chain was signed with before `latchkey audit rotate-key`, comma-separated:
    # `audit verify` needs them to check the events written before each rotation.
    audit_previous_keys: SecretStr = Field(
        default=SecretStr(""), alias="LATCHKEY_AUDIT_PREVIOUS_KEYS"
    )
    log_level: str = Field(default="INFO", alias="LATCHKEY_LOG_LEVEL")
    # `text` (one readable line per record) or `json` (one JSON object per line, for shippers).
    log_format: Literal["text", "json"] = Field(default="text", alias="LATCHKEY_LOG_FORMAT")
    # How long start-up waits for the database and Redis to answer before it gives up.
    startup_timeout_seconds: float = Field(
        default=30.0, alias="LATCHKEY_STARTUP_TIMEOUT_SECONDS", ge=0
    )
    # How often every active grant is checked at its provider (drift repaired, reported).
    reconcile_seconds: float = Field(default=300.0, alias="LATCHKEY_RECONCILE_SECONDS", gt=0)
    # Most provider reads one reconciliation pass makes (one per IAM group or GCP policy, one
    # per person's hold where a provider cannot list members); a larger estate is spread
    # over passes, each grant checked once every ceil(reads needed / budget) passes.
    reconcile_budget: int = Field(default=500, alias="LATCHKEY_RECONCILE_BUDGET", gt=0)
    # How often reconciliation asks Slack (users.info) about each person holding access, to
    # catch a deactivation whose event the web missed; the event itself acts at once.
    account_recheck_seconds: float = Field(
        default=300.0, alias="LATCHKEY_ACCOUNT_RECHECK_SECONDS", gt=0
    )
    # How long a worker's claim on a grant's provider call lasts; after it another worker may
    # take over (the first one, should it finish after all, takes its access back).
    grant_lease_seconds: float = Field(default=120.0, alias="LATCHKEY_GRANT_LEASE_SECONDS", gt=0)
    # A failed revoke is retried after this, doubling each time up to an hour.
    revoke_retry_seconds: float = Field(default=60.0, alias="LATCHKEY_REVOKE_RETRY_SECONDS", gt=0)
    # Slack user ids (U…) and user-group ids (S…), comma-separated, who may revoke any
    # grant with `/access revoke`. Flow approvers may revoke their flows' grants anyway.
    admins: str = Field(default="", alias="LATCHKEY_ADMINS")
    # SIEM: every audit event is POSTed here (batches, in chain order, HMAC-signed, at least
    # once, retried with backoff). Unset: no webhook.
    audit_webhook_url: str | None = Field(default=None, alias="LATCHKEY_AUDIT_WEBHOOK_URL")
    audit_webhook_secret: SecretStr = Field(
        default=SecretStr(""), alias="LATCHKEY_AUDIT_WEBHOOK_SECRET"
    )
    # How often the beat delivers what the SIEM has not had yet; unset: every sweep.
    audit_deliver_seconds: float | None = Field(
        default=None, alias="LATCHKEY_AUDIT_DELIVER_SECONDS", gt=0
    )
    # Extra request headers as a JSON object (e.g. {"Authorization": "Splunk …"}).
    audit_webhook_headers: SecretStr = Field(
        default=SecretStr("{}"), alias="LATCHKEY_AUDIT_WEBHOOK_HEADERS"
    )
    # Also write each committed audit event as one JSON line on stdout (for log shippers).
    audit_stdout: bool = Field(default=False, alias="LATCHKEY_AUDIT_STDOUT")
    # Google Cloud clients talk to this endpoint with anonymous credentials instead of
    # Google's with the machine's credentials: a local stand-in in tests and the demo only.
    # REST (Resource Manager, e.g. http://127.0.0.1:8123) and gRPC (IAM service accounts,
    # e.g. 127.0.0.1:8124): both or neither.
    gcp_endpoint: str | None = Field(default=None, alias="LATCHKEY_GCP_ENDPOINT")
    gcp_grpc_endpoint: str | None = Field(default=None, alias="LATCHKEY_GCP_GRPC_ENDPOINT")
    # On-call data for flows that name PagerDuty or Opsgenie (app.oncall): a read-only
    # REST API token / API key, and the API's base URL (a local stand-in in tests).
    pagerduty_token: SecretStr = Field(default=SecretStr(""), alias="LATCHKEY_PAGERDUTY_TOKEN")
    pagerduty_url: str = Field(default="https://api.pagerduty.com", alias="LATCHKEY_PAGERDUTY_URL")
    opsgenie_api_key: SecretStr = Field(default=SecretStr(""), alias="LATCHKEY_OPSGENIE_API_KEY")
    opsgenie_url: str = Field(default="https://api.opsgenie.com", alias="LATCHKEY_OPSGENIE_URL")
    # Identity-provider groups (app/providers/idp). Google: Application Default Credentials
    # with the Groups scope; the endpoint is for tests and demos (anonymous credentials).
    google_groups_endpoint: str | None = Field(
        default=None, alias="LATCHKEY_GOOGLE_GROUPS_ENDPOINT"
    )
    # Microsoft Entra ID: an app registration's client credentials in one tenant.
    entra_tenant_id: str = Field(default="", alias="LATCHKEY_ENTRA_TENANT_ID")
    entra_client_id: str = Field(default="", alias="LATCHKEY_ENTRA_CLIENT_ID")
    entra_client_secret: SecretStr = Field(
        default=SecretStr(""), alias="LATCHKEY_ENTRA_CLIENT_SECRET"
    )
    entra_authority_url: str = Field(
        default="https://login.microsoftonline.com", alias="LATCHKEY_ENTRA_AUTHORITY_URL"
    )
    entra_graph_url: str = Field(
        default="https://graph.microsoft.com", alias="LATCHKEY_ENTRA_GRAPH_URL"
    )
    # Okta: the org's URL (https://acme.okta.com) and an API token of a limited admin.
    okta_url: str = Field(default="", alias="LATCHKEY_OKTA_URL")
    okta_api_token: SecretStr = Field(default=SecretStr(""), alias="LATCHKEY_OKTA_API_TOKEN")
    # Ephemeral PostgreSQL logins (PostgresLoginTarget) and checked-out accounts
    # (PostgresAccountTarget): the admin connection that makes and drops the logins and
    # rotates the accounts' passwords (CREATEROLE, pg_signal_backend; never a superuser,
    # unless a checked-out account is one), and the key their passwords are derived from (app/providers/databases/credentials.py). Changing the key
    # changes the password shown for a live login: change it with no login live.
    postgres_login_url: SecretStr = Field(
        default=SecretStr(""), alias="LATCHKEY_POSTGRES_LOGIN_URL"
    )
    # Ephemeral MariaDB/MySQL logins (MariaDBLoginTarget): the admin connection, e.g.
    # mysql://latchkey_admin:…@db:3306/latchkey, whose database holds Latchkey's bookkeeping
    # of its logins (docs/providers.md has the grants it needs; never root).
    mariadb_login_url: SecretStr = Field(default=SecretStr(""), alias="LATCHKEY_MARIADB_LOGIN_URL")
    credentials_key: SecretStr = Field(default=SecretStr(""), alias="LATCHKEY_CREDENTIALS_KEY")
    # How long an answer about who is on call (or an open incident) is reused: a burst of
    # clicks asks once; a handover shows within this time.
    oncall_cache_seconds: float = Field(default=30.0, alias="LATCHKEY_ONCALL_CACHE_SECONDS", ge=0)
    # Where people reach the web process's own pages (passkeys): https://latchkey.example.com.
    # Its host is the passkeys' relying party id: changing it later orphans every passkey.
    public_url: str | None = Field(default=None, alias="LATCHKEY_PUBLIC_URL")
    # How long a passkey link (setup, or confirming one approval) may be opened; single use.
    link_seconds: float = Field(default=300.0, alias="LATCHKEY_LINK_SECONDS", gt=0, le=3600)
    # The company's OpenID Connect provider, for verified identity links (flows with
    # Identity(verified=True)): its issuer URL (discovery at /.well-known/openid-configuration)
    # and a confidential client whose redirect URI is LATCHKEY_PUBLIC_URL/identity/callback.
    oidc_issuer: str | None = Field(default=None, alias="LATCHKEY_OIDC_ISSUER")
    oidc_client_id: str = Field(default="", alias="LATCHKEY_OIDC_CLIENT_ID")
    oidc_client_secret: SecretStr = Field(
        default=SecretStr(""), alias="LATCHKEY_OIDC_CLIENT_SECRET"
    )
    # /healthz is not ok when a grant stays past its end longer than a sweep plus this.
    overdue_grace_seconds: float = Field(default=30.0, alias="LATCHKEY_OVERDUE_GRACE_SECONDS", ge=0)
    beat_schedule_file: Path = Field(
        default=Path("celerybeat-schedule"), alias="LATCHKEY_BEAT_SCHEDULE_FILE"
    )
    # The web refuses larger request bodies with 413 before reading them (Slack's are a few KiB).
    max_body_bytes: int = Field(
        default=1024 * 1024, alias="LATCHKEY_MAX_BODY_BYTES", ge=1024, le=64 * 1024 * 1024
    )
    # Prometheus metrics of the worker (GET /metrics on this port; 0 = no metrics server).
    worker_metrics_port: int = Field(
        default=9808, alias="LATCHKEY_WORKER_METRICS_PORT", ge=0, le=65535
    )
    worker_metrics_host: str = Field(default="0.0.0.0", alias="LATCHKEY_WORKER_METRICS_HOST")

    @field_validator(
        "audit_webhook_url",
        "gcp_endpoint",
        "gcp_grpc_endpoint",
        "google_groups_endpoint",
        mode="before",
    )
    @classmethod
    def _empty_url_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("audit_previous_keys")
    @classmethod
    def _previous_keys_long_enough(cls, value: SecretStr) -> SecretStr:
        # The message counts the keys, never shows one.
        keys = [k.strip() for k in value.get_secret_value().split(",") if k.strip()]
        short = [n for n, k in enumerate(keys, 1) if len(k) < 16]
        if short:
            raise ValueError(
                f"LATCHKEY_AUDIT_PREVIOUS_KEYS: key number {short[0]} is shorter than 16 "
                "characters (every audit key has at least 16)"
            )
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _api_url_ends_in_slash(cls, value: str) -> str:
        if not value.endswith("/"):
            raise ValueError("SLACK_API_URL must end in '/' (e.g. https://slack.com/api/)")
        return value

    @field_validator("admins")
    @classmethod
    def _admin_ids(cls, value: str) -> str:
        for item in _split(value):
            if not (item[:1] in ("U", "W", "S") and item.isalnum() and item.isupper()):
                raise ValueError(
                    f"LATCHKEY_ADMINS: {item!r} is not a Slack user id (U…) or user-group id (S…)"
                )
        return value

    @property
    def admin_users(self) -> frozenset[str]:
        return frozenset(i for i in _split(self.admins) if not i.startswith("S"))

    @property
    def admin_groups(self) -> tuple[str, ...]:
        return tuple(i for i in _split(self.admins) if i.startswith("S"))

    @field_validator("slack_app_token", mode="before")
    @classmethod
    def _empty_app_token_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _tokens_look_right(self) -> Settings:
        bot = self.slack_bot_token.get_secret_value()
        if bot and not bot.startswith("xoxb-"):
            raise ValueError("SLACK_BOT_TOKEN must be a bot token starting with 'xoxb-'")
        app = self.slack_app_token.get_secret_value() if self.slack_app_token else ""
        if app and not app.startswith("xapp-"):
            raise ValueError("SLACK_APP_TOKEN must be an app-level token starting with 'xapp-'")
        return self

    @model_validator(mode="after")
    def _gcp_endpoints(self) -> Settings:
        from app.providers.gcp_clients import endpoint_problems

        problems = endpoint_problems(self.gcp_endpoint, self.gcp_grpc_endpoint)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _webhook_complete(self) -> Settings:
        if self.audit_webhook_url is not None:
            if problem := _webhook_url_problem(self.audit_webhook_url):
                raise ValueError(f"LATCHKEY_AUDIT_WEBHOOK_URL {problem}")
            if len(self.audit_webhook_secret.get_secret_value()) < 16:
                raise ValueError(
                    "LATCHKEY_AUDIT_WEBHOOK_SECRET must be at least 16 characters when "
                    "LATCHKEY_AUDIT_WEBHOOK_URL is set (it signs every delivery)"
                )
            try:
                headers = json.loads(self.audit_webhook_headers.get_secret_value())
            except ValueError:
                headers = None
            if not isinstance(headers, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
            ):
                raise ValueError(
                    'LATCHKEY_AUDIT_WEBHOOK_HEADERS must be a JSON object of strings, e.g. {"Authorization": "…"}'
                )
        return self

    @field_validator("public_url", mode="before")
    @classmethod
    def _public_url(cls, value: object) -> object:
        if value in (None, ""):
            return None
        if problem := public_url_problem(str(value)):
            raise ValueError(f"LATCHKEY_PUBLIC_URL {problem}")
        return str(value).rstrip("/")

    @field_validator("oidc_issuer", mode="before")
    @classmethod
    def _oidc_issuer(cls, value: object) -> object:
        if value in (None, ""):
            return None
        if problem := _webhook_url_problem(str(value)):
            raise ValueError(f"LATCHKEY_OIDC_ISSUER {problem}")
        return str(value).rstrip("/")

    @property
    def oidc_problem(self) -> str | None:
        """What verified identity links lack in these settings, or None."""
        missing = [
            name
            for name, value in (
                ("LATCHKEY_PUBLIC_URL", self.public_url),
                ("LATCHKEY_OIDC_ISSUER", self.oidc_issuer),
                ("LATCHKEY_OIDC_CLIENT_ID", self.oidc_client_id),
                ("LATCHKEY_OIDC_CLIENT_SECRET", self.oidc_client_secret.get_secret_value()),
            )
            if not value
        ]
        return f"{', '.join(missing)} not set" if missing else None

    def provider_problem(self, provider: str) -> str | None:
        """What the identity-provider group targets of `provider` lack here, or None."""
        if provider == "postgres_account":  # the same admin connection and key
            provider = "postgres_login"
        needed = {
            "entra_group": (
                ("LATCHKEY_ENTRA_TENANT_ID", self.entra_tenant_id),
                ("LATCHKEY_ENTRA_CLIENT_ID", self.entra_client_id),
                ("LATCHKEY_ENTRA_CLIENT_SECRET", self.entra_client_secret.get_secret_value()),
            ),
            "okta_group": (
                ("LATCHKEY_OKTA_URL", self.okta_url),
                ("LATCHKEY_OKTA_API_TOKEN", self.okta_api_token.get_secret_value()),
            ),
            "postgres_login": (
                ("LATCHKEY_POSTGRES_LOGIN_URL", self.postgres_login_url.get_secret_value()),
                ("LATCHKEY_CREDENTIALS_KEY", self.credentials_key.get_secret_value()),
            ),
            "mariadb_login": (
                ("LATCHKEY_MARIADB_LOGIN_URL", self.mariadb_login_url.get_secret_value()),
                ("LATCHKEY_CREDENTIALS_KEY", self.credentials_key.get_secret_value()),
            ),
        }.get(provider, ())
        missing = [name for name, value in needed if not value]
        if missing:
            return f"{', '.join(missing)} not set"
        key = self.credentials_key.get_secret_value()
        if provider in ("postgres_login", "mariadb_login") and len(key) < 16:
            return "LATCHKEY_CREDENTIALS_KEY of at least 16 characters (openssl rand -hex 32)"
        return None

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    def require_slack(self) -> None:
        """Fail closed: the web and worker cannot talk to Slack without these settings."""
        if not self.slack_bot_token.get_secret_value():
            raise ConfigError("SLACK_BOT_TOKEN is not set (the bot token, xoxb-…)")
        if not self.socket_mode and not self.slack_signing_secret.get_secret_value():
            raise ConfigError(
                "SLACK_SIGNING_SECRET is not set: the web process refuses to serve HTTP "
                "without it (or set SLACK_APP_TOKEN to use Socket Mode)"
            )

    def require_audit_key(self) -> bytes:
        key = self.audit_key.get_secret_value()
        if len(key) < 16:
            raise ConfigError(
                "LATCHKEY_AUDIT_KEY must be set to a secret of at least 16 characters "
                "(it keys the audit hash chain; generate one with `openssl rand -hex 32`)"
            )
        return key.encode()


def _webhook_url_problem(url: str) -> str | None:
    """Why the SIEM webhook URL is refused, or None: https, or http to this machine only."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an https URL (http only to a loopback address)"
    if parts.scheme == "https":
        return None
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return (
            f"must use https: plain http would carry the audit trail and its Authorization "
            f"header in clear to {host!r} (http is accepted only for 127.0.0.0/8, ::1 and localhost)"
        )
    return None


def public_url_problem(url: str) -> str | None:
    """Why a URL cannot serve passkey pages, or None. Browsers offer passkeys only to a
    secure context (https, or http://localhost), and only to a domain name, not an IP."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        return f"must be an https URL with a host name, not {url!r}"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "must be the site's root (https://host[:port]), without a path"
    try:
        ipaddress.ip_address(host)
        return f"must name a host, not an IP address ({host}): passkeys belong to a domain"
    except ValueError:
        pass
    if parts.scheme == "http" and host != "localhost":
        return "must use https (browsers offer passkeys over plain http only on localhost)"
    return None


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def load_settings() -> Settings:
    """Read settings, turning pydantic's error into one that names the variable."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
