"""Flow fields and policy for the Slack edge: account opt-ins, principal domains, and
approver checks that ask Slack for group members only when they must."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.flows.loader import load_flow_file
from app.flows.policy import may_decide
from app.flows.schema import People
from app.identity import domain_problem, principal_for
from app.providers.registry import default_providers
from tests.factories import (
    APPROVER,
    APPROVER_GROUP,
    GROUP_APPROVER,
    OUTSIDER,
    REQUESTER,
    make_flow,
    write_flow,
)


class Loader:
    """A group-members loader that counts its calls (each would be a call to Slack)."""

    def __init__(self, members: dict[str, frozenset[str]]) -> None:
        self.members, self.calls = members, 0

    def __call__(self) -> dict[str, frozenset[str]]:
        self.calls += 1
        return self.members


@pytest.mark.parametrize(
    ("approver", "extra", "allowed", "fetched"),
    [
        (APPROVER, frozenset(), True, 0),  # listed by id: no call to Slack
        (REQUESTER, frozenset(), False, 0),  # their own request: refused before any call
        (OUTSIDER, frozenset({OUTSIDER}), True, 0),  # named by get_approvers
        (GROUP_APPROVER, frozenset(), True, 1),  # only a group says so: asked
        (OUTSIDER, frozenset(), False, 1),
    ],
)
def test_group_members_are_fetched_only_for_people_not_listed(
    approver: str, extra: frozenset[str], allowed: bool, fetched: int
) -> None:
    load = Loader({APPROVER_GROUP: frozenset({GROUP_APPROVER})})
    verdict = may_decide(
        make_flow(),
        requester_id=REQUESTER,
        approver_id=approver,
        usergroup_members=load,
        extra_approvers=extra,
    )
    assert (verdict.allowed, load.calls) == (allowed, fetched)


def test_a_flow_without_groups_never_asks() -> None:
    load = Loader({})
    flow = make_flow(approvers=People(users=(APPROVER,)))
    assert not may_decide(
        flow, requester_id=REQUESTER, approver_id=OUTSIDER, usergroup_members=load
    ).allowed
    assert load.calls == 0


def test_account_opt_ins_default_off() -> None:
    flow = make_flow()
    assert (flow.allow_guests, flow.allow_other_teams, flow.principal_domains) == (
        False,
        False,
        (),
    )
    opted = make_flow(allow_guests=True, allow_other_teams=True, principal_domains=("Corp.COM",))
    assert opted.allow_guests and opted.allow_other_teams
    assert opted.principal_domains == ("corp.com",)


@pytest.mark.parametrize("bad", ["corp", "@corp.com", "corp .com", "*.corp.com"])
def test_principal_domains_must_be_domains(bad: str) -> None:
    with pytest.raises(ValidationError, match="principal_domains"):
        make_flow(principal_domains=(bad,))


def test_an_unknown_opt_in_is_an_error(tmp_path: Path) -> None:
    path = write_flow(tmp_path, extra="allow_guest=True,")
    with pytest.raises(Exception, match="allow_guest"):
        load_flow_file(path)


@pytest.mark.parametrize(
    ("principal", "problem"),
    [
        ("ann@corp.com", None),
        ("ANN@Corp.com", None),
        ("user:ann@corp.com", None),
        ("ann@example.com", "example.com is not among the domains this flow grants to"),
        ("ann@sub.corp.com", "sub.corp.com is not among"),
        ("ann", "this flow grants only to emails in corp.com"),
    ],
)
def test_domain_problem(principal: str, problem: str | None) -> None:
    found = domain_problem(("corp.com",), principal)
    assert found == problem if problem is None else problem in (found or "")


def test_principal_outside_the_flows_domains_is_refused_with_the_reason(tmp_path: Path) -> None:
    loaded = load_flow_file(write_flow(tmp_path, extra='principal_domains=("corp.com",),'))
    providers = default_providers()
    inside = principal_for(providers, loaded, "admins", user_id=REQUESTER, email="ann@corp.com")
    assert (inside.value, inside.problem) == ("ann@corp.com", None)
    outside = principal_for(providers, loaded, "admins", user_id=REQUESTER, email="ann@gmail.com")
    assert outside.value is None
    assert outside.problem == (
        "Your identity for admins ('ann@gmail.com') cannot be used: gmail.com is not among "
        "the domains this flow grants to (corp.com)."
    )
