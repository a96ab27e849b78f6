"""The account rule: which Slack accounts may request, approve or hold access."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from app.accounts import Account, Workspace, account_problem
from app.slack.directory import (
    SlackChanges,
    SlackDirectory,
    group_key,
    slack_unreachable,
    user_key,
)
from app.testing.slack_standin import SlackStandIn

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


# ---- what a decision reads: never older than Slack's last change event --------------------


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    standin = SlackStandIn(token="xoxb-accounts-test").start()
    standin.add_user("U0ANN", name="ann", email="ann@example.com")
    standin.add_usergroup("S0LEADS", ["U0ANN"])
    yield standin
    standin.stop()


@pytest.fixture
def changes(redis_url: str) -> Iterator[SlackChanges]:
    client = Redis.from_url(redis_url)
    yield SlackChanges(client)
    client.delete(*(client.keys(SlackChanges.PREFIX + "*") or [b"-"]))


def test_a_change_event_makes_every_process_ask_again(
    slack: SlackStandIn, changes: SlackChanges
) -> None:
    client = WebClient(token="xoxb-accounts-test", base_url=slack.base_url)
    web, worker = SlackDirectory(client), SlackDirectory(client)  # two processes' caches
    groups = ("S0LEADS",)

    def members(directory: SlackDirectory) -> frozenset[str]:
        return directory.members_of(groups, changes.versions([group_key("S0LEADS")]))["S0LEADS"]

    assert members(web) == members(worker) == {"U0ANN"}
    asked = len(slack.calls("usergroups.users.list"))
    assert members(web) == {"U0ANN"} and len(slack.calls("usergroups.users.list")) == asked
    slack.add_usergroup("S0LEADS", [])
    changes.bump([group_key("S0LEADS")])  # what the events listener does, in one process
    assert members(web) == members(worker) == frozenset()

    def account(directory: SlackDirectory) -> Account | None:
        version = (changes.versions([user_key("U0ANN")]) or {})[user_key("U0ANN")]
        return directory.user("U0ANN", version=version).account

    assert account(web) == account(worker) and not account(web).deleted  # type: ignore[union-attr]
    slack.set_user_flags("U0ANN", deleted=True)
    changes.bump([user_key("U0ANN")])
    assert account(web).deleted and account(worker).deleted  # type: ignore[union-attr]


def test_without_the_counters_a_decision_asks_slack_afresh(slack: SlackStandIn) -> None:
    client = WebClient(token="xoxb-accounts-test", base_url=slack.base_url)
    directory = SlackDirectory(client)
    unreadable = SlackChanges(Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2))
    assert unreadable.versions([group_key("S0LEADS")]) is None
    for _ in range(2):
        directory.members_of(("S0LEADS",), {})
    assert len(slack.calls("usergroups.users.list")) == 2


def test_a_group_slack_does_not_have_lets_nobody_in_and_a_rate_limit_still_raises(
    slack: SlackStandIn,
) -> None:
    """A flow naming a deleted user group: nobody is a member (fail closed) and the other
    flows of the modal still work; a 429 is not mistaken for an empty group."""
    client = WebClient(token="xoxb-accounts-test", base_url=slack.base_url)
    directory = SlackDirectory(client)
    assert directory.members_of(("S0DELETED", "S0LEADS"), {}) == {
        "S0DELETED": frozenset(),
        "S0LEADS": frozenset({"U0ANN"}),
    }
    slack.rate_limit("usergroups.users.list", seconds=5, retry_after=1)
    with pytest.raises(SlackApiError):
        SlackDirectory(WebClient(token="xoxb-accounts-test", base_url=slack.base_url)).members_of(
            ("S0LEADS",), {}
        )


@pytest.mark.parametrize(
    ("status", "unreachable"), [(429, True), (500, True), (503, True), (200, False)]
)
def test_slack_unreachable(status: int, unreachable: bool) -> None:
    response = SlackResponse(
        client=None,
        http_verb="POST",
        api_url="u",
        req_args={},
        data={"ok": False},
        headers={},
        status_code=status,
    )
    assert slack_unreachable(SlackApiError("x", response)) is unreachable
    assert slack_unreachable(ConnectionRefusedError())
    assert not slack_unreachable(ValueError())
