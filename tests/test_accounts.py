"""The account rule: which Slack accounts may request, approve or hold access."""

from __future__ import annotations

import pytest

from app.accounts import Account, Workspace, account_problem

HOME = Workspace(team_id="T0HOME")
GRID = Workspace(team_id="T0HOME", enterprise_id="E0ACME")


def slack_user(**fields: object) -> dict[str, object]:
    """A users.info `user`, as Slack answers for a full member of our workspace."""
    user: dict[str, object] = {
        "id": "U0ANN",
        "team_id": "T0HOME",
        "deleted": False,
        "is_bot": False,
        "is_restricted": False,
        "is_ultra_restricted": False,
        "is_email_confirmed": True,
        "profile": {"email": "ann@example.com", "team": "T0HOME"},
    }
    user.update(fields)
    return user


@pytest.mark.parametrize(
    ("fields", "workspace", "opt_in", "problem"),
    [
        ({}, HOME, {}, None),
        ({"deleted": True}, HOME, {}, "deactivated"),
        # No flow opts a deactivated account in.
        ({"deleted": True}, HOME, {"allow_guests": True, "allow_other_teams": True}, "deactivated"),
        ({"is_bot": True}, HOME, {}, "Bots"),
        ({"id": "USLACKBOT", "is_bot": False}, HOME, {}, "Bots"),
        ({"is_email_confirmed": False}, HOME, {}, "email is not confirmed"),
        # Older payloads without the flag are not refused for it.
        ({"is_email_confirmed": None}, HOME, {}, None),
        ({"is_restricted": True}, HOME, {}, "Guest accounts (multi-channel)"),
        (
            {"is_restricted": True, "is_ultra_restricted": True},
            HOME,
            {},
            "Guest accounts (single-channel)",
        ),
        ({"is_ultra_restricted": True}, HOME, {"allow_guests": True}, None),
        ({"team_id": "T0OTHER"}, HOME, {}, "another organisation"),
        ({"team_id": "T0OTHER"}, HOME, {"allow_other_teams": True}, None),
        ({"is_stranger": True}, HOME, {}, "another organisation"),
        (
            {"team_id": "T0OTHER", "enterprise_user": {"enterprise_id": "E0EVIL"}},
            HOME,
            {},
            "another organisation",
        ),
        # Another workspace of our own Enterprise Grid organisation is not foreign.
        ({"team_id": "T0SISTER", "enterprise_user": {"enterprise_id": "E0ACME"}}, GRID, {}, None),
        ({"enterprise_user": {"enterprise_id": "E0EVIL"}}, GRID, {}, "another organisation"),
        # The guest opt-in does not open the door to other organisations, nor the reverse.
        ({"team_id": "T0OTHER"}, HOME, {"allow_guests": True}, "another organisation"),
        ({"is_restricted": True}, HOME, {"allow_other_teams": True}, "Guest accounts"),
    ],
)
def test_account_problem(
    fields: dict[str, object], workspace: Workspace, opt_in: dict[str, bool], problem: str | None
) -> None:
    found = account_problem(Account.from_slack(slack_user(**fields)), workspace, **opt_in)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_team_comes_from_the_profile_when_the_user_has_none() -> None:
    user = slack_user(team_id=None, profile={"team": "T0OTHER"})
    assert Account.from_slack(user).team_id == "T0OTHER"
    assert account_problem(Account.from_slack(user), HOME) is not None
