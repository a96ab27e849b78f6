"""Which Slack accounts may take part at all: the account rule, one pure function.

Slack says more about a person than who they are: their account may be deactivated, a
guest's, a bot's, or belong to another organisation (Slack Connect). Latchkey refuses
such accounts at request, at approval and at grant, with a word that says why; a flow
may opt guests (`allow_guests`) and people of other teams (`allow_other_teams`) in as
requesters. Approvers are always full members of the bot's own workspace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SLACKBOT = "USLACKBOT"


@dataclass(frozen=True)
class Account:
    """What users.info says about an account that matters to the rule."""

    id: str
    deleted: bool = False
    is_bot: bool = False
    restricted: bool = False  # multi-channel guest
    ultra_restricted: bool = False  # single-channel guest
    team_id: str | None = None
    enterprise_id: str | None = None
    # Slack Connect: a person of another organisation seen from ours.
    stranger: bool = False
    # None when Slack did not say (older payloads); only an explicit False refuses.
    email_confirmed: bool | None = None

    @classmethod
    def from_slack(cls, user: Mapping[str, Any]) -> Account:
        """Read a users.info `user` object (or a user_change event's `user`)."""
        enterprise = user.get("enterprise_user") or {}
        confirmed = user.get("is_email_confirmed")
        return cls(
            id=str(user.get("id", "")),
            deleted=bool(user.get("deleted")),
            is_bot=bool(user.get("is_bot")),
            restricted=bool(user.get("is_restricted")),
            ultra_restricted=bool(user.get("is_ultra_restricted")),
            team_id=user.get("team_id") or (user.get("profile") or {}).get("team"),
            enterprise_id=enterprise.get("enterprise_id") or user.get("enterprise_id"),
            stranger=bool(user.get("is_stranger")),
            email_confirmed=None if confirmed is None else bool(confirmed),
        )


@dataclass(frozen=True)
class Workspace:
    """The bot's own team (and Enterprise Grid organisation), from auth.test."""

    team_id: str
    enterprise_id: str | None = None


DEACTIVATED = "The Slack account is deactivated."


def withdrawal_reason(problem: str) -> str:
    """The audited reason Latchkey ends a person's access for an account problem."""
    return "Slack account deactivated" if problem == DEACTIVATED else f"Slack account: {problem}"


def account_problem(
    account: Account,
    workspace: Workspace,
    *,
    allow_guests: bool = False,
    allow_other_teams: bool = False,
) -> str | None:
    """Why this account may not request, approve or hold access (None: it may).

    The words are the person's: they are shown in the modal, on a refused click, and
    as the reason a grant failed.
    """
    if account.deleted:
        return DEACTIVATED
    if account.is_bot or account.id == SLACKBOT:
        return "Bots cannot request or approve access."
    if account.email_confirmed is False:
        return "The Slack account's email is not confirmed; confirm it in Slack first."
    if (account.restricted or account.ultra_restricted) and not allow_guests:
        kind = "single-channel" if account.ultra_restricted else "multi-channel"
        return f"Guest accounts ({kind}) cannot take part in this flow."
    if not allow_other_teams and _foreign(account, workspace):
        return "The Slack account belongs to another organisation (Slack Connect or another team)."
    return None


def _foreign(account: Account, workspace: Workspace) -> bool:
    if account.stranger:
        return True
    if workspace.enterprise_id and account.enterprise_id == workspace.enterprise_id:
        return False  # another workspace of our own Enterprise Grid organisation
    if account.enterprise_id and account.enterprise_id != workspace.enterprise_id:
        return True
    return account.team_id is not None and account.team_id != workspace.team_id
