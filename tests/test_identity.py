"""Who a Slack user is at each provider, and the words they get when there is nobody."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.flows.loader import LoadedFlow, load_flow_file, load_flows
from app.identity import principal_for
from app.providers.registry import default_providers
from tests.factories import REQUESTER, write_flow

PROVIDERS = default_providers()

TARGETS = (
    '(AwsIamGroupTarget(name="admins", group_name="latchkey-admins"), '
    'GcpRoleBindingTarget(name="gcp-viewer", resource_name="projects/acme-prod", role="roles/viewer"))'
)


def _flow(tmp_path: Path, extra: str = "", hooks: str = "") -> LoadedFlow:
    return load_flow_file(write_flow(tmp_path, extra=extra, hooks=hooks, targets=TARGETS))


def _who(loaded: LoadedFlow, target: str = "admins", email: str | None = "ann@example.com"):  # type: ignore[no-untyped-def]
    return principal_for(PROVIDERS, loaded, target, user_id=REQUESTER, email=email)


def test_the_profile_email_is_the_default(tmp_path: Path) -> None:
    loaded = _flow(tmp_path)
    assert _who(loaded).value == "ann@example.com"
    nobody = _who(loaded, email=None)
    assert nobody.value is None
    assert nobody.problem == (
        "Your Slack profile has no email, and this flow maps no identity for you."
    )


def test_a_providers_own_map_wins_over_the_flows(tmp_path: Path) -> None:
    loaded = _flow(
        tmp_path,
        extra=(
            f'identity=Identity(principals={{"{REQUESTER}": "ann-iam"}}, '
            'per_provider={"gcp_role": {"ann@example.com": "ann.gcp@example.com"}}),'
        ),
    )
    assert _who(loaded, "admins").value == "ann-iam"
    assert _who(loaded, "gcp-viewer").value == "ann.gcp@example.com"


def test_without_email_fallback_only_mapped_people_may_request(tmp_path: Path) -> None:
    loaded = _flow(tmp_path, extra="identity=Identity(use_email=False),")
    refused = _who(loaded)
    assert refused.value is None
    assert refused.problem == (
        "test-admin maps no identity for you at aws_iam_group; ask its owner to add you."
    )


HOOK = """

def get_principal(who):
    if who.provider == "gcp_role":
        return f"{who.email.split('@')[0]}@gcp.example.com"
    if who.email == "boom@example.com":
        raise RuntimeError("directory down")
    return None
"""


def test_the_hook_decides_for_unmapped_people(tmp_path: Path) -> None:
    loaded = _flow(tmp_path, hooks=HOOK)
    assert _who(loaded, "gcp-viewer").value == "ann@gcp.example.com"
    assert _who(loaded, "admins").problem == "test-admin has no identity for you at aws_iam_group."
    failed = _who(loaded, "admins", email="boom@example.com")
    assert failed.value is None
    assert failed.problem == (
        "The flow's get_principal hook failed (RuntimeError: directory down)."
    )


def test_a_principal_the_provider_cannot_use_is_refused_by_name(tmp_path: Path) -> None:
    loaded = _flow(tmp_path, extra=f'identity=Identity(principals={{"{REQUESTER}": "ann smith"}}),')
    refused = _who(loaded, "admins")
    assert refused.value is None
    assert refused.problem == (
        "Your identity for admins ('ann smith') cannot be used: an IAM user name is 1-64 of "
        "letters, digits and +=,.@_-."
    )
    assert "cannot be used" in (_who(loaded, "gcp-viewer").problem or "")


@pytest.mark.parametrize(
    ("module", "problem"),
    [
        (
            'CustomTarget(name="db", using="nope")',
            "targets.0.using: no custom provider named 'nope' (postgres_role)",
        ),
        (
            'CustomTarget(name="db", using="postgres_role", settings={"role": "Bad Role"})',
            "targets.0.settings.role: a PostgreSQL role name (lowercase letters, digits, _)",
        ),
        (
            'CustomTarget(name="db", using="postgres_role", settings={"role": "ok", "x": 1})',
            "targets.0.settings.x: not a setting of postgres_role",
        ),
    ],
)
def test_custom_targets_are_checked_when_flows_load(
    tmp_path: Path, module: str, problem: str
) -> None:
    example = Path(__file__).resolve().parent.parent / "flows" / "provider_postgres_role.py"
    (tmp_path / example.name).write_text(example.read_text())
    path = write_flow(tmp_path, targets=f"({module},)")
    with pytest.raises(Exception, match=r"targets\.0") as raised:
        load_flows(tmp_path)
    assert f"{path}: {problem}" in str(raised.value)


def test_a_custom_provider_cannot_take_a_builtin_name(tmp_path: Path) -> None:
    (tmp_path / "provider_x.py").write_text(
        "from app.providers.custom import CustomProvider\n\n"
        "class Sneaky(CustomProvider):\n    name = 'aws_role'\n"
    )
    write_flow(tmp_path)
    with pytest.raises(Exception) as raised:
        load_flows(tmp_path)
    assert "provider_x.py: Sneaky: 'aws_role' is a built-in provider's name" in str(raised.value)
