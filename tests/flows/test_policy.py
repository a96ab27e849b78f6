"""Table-driven tests of the pure policy decisions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.flows.loader import FlowRegistry
from app.flows.policy import RequestInput, check_request, may_decide, principal_for
from app.flows.schema import Flow, Identity
from tests.factories import APPROVER, APPROVER_GROUP, GROUP_APPROVER, OUTSIDER, REQUESTER


@pytest.fixture
def flow(flows: FlowRegistry) -> Flow:
    return flows.get("test-admin").flow


@pytest.mark.parametrize(
    ("target", "seconds", "reason", "errors"),
    [
        ("admins", 4, "deploy fix", set()),
        ("nope", 4, "deploy fix", {"target"}),
        ("admins", 5, "deploy fix", {"duration"}),
        ("admins", 4, "   ", {"reason"}),
        ("admins", 4, "x" * 2001, {"reason"}),
        ("nope", 7200, "", {"target", "duration", "reason"}),
    ],
)
def test_check_request(
    flow: Flow, target: str, seconds: int, reason: str, errors: set[str]
) -> None:
    ask = RequestInput(
        flow=flow.name, target=target, duration=timedelta(seconds=seconds), reason=reason
    )
    assert set(check_request(flow, ask)) == errors


def test_unknown_flow_is_a_target_error() -> None:
    ask = RequestInput(flow="ghost", target="x", duration=timedelta(seconds=1), reason="r")
    assert "no flow named 'ghost'" in check_request(None, ask)["target"]


@pytest.mark.parametrize(
    ("approver", "requester", "groups", "allowed", "why"),
    [
        (APPROVER, REQUESTER, {}, True, "is an approver"),
        (
            GROUP_APPROVER,
            REQUESTER,
            {APPROVER_GROUP: frozenset({GROUP_APPROVER})},
            True,
            "approver group",
        ),
        (GROUP_APPROVER, REQUESTER, {APPROVER_GROUP: frozenset()}, False, "not an approver"),
        (OUTSIDER, REQUESTER, {}, False, "not an approver"),
        (APPROVER, APPROVER, {}, False, "your own request"),
        (
            GROUP_APPROVER,
            GROUP_APPROVER,
            {APPROVER_GROUP: frozenset({GROUP_APPROVER})},
            False,
            "your own request",
        ),
    ],
)
def test_may_decide(
    flow: Flow, approver: str, requester: str, groups: dict, allowed: bool, why: str
) -> None:
    verdict = may_decide(
        flow, requester_id=requester, approver_id=approver, usergroup_members=groups
    )
    assert verdict.allowed is allowed
    assert why in verdict.reason


def test_principal_mapping(flow: Flow) -> None:
    assert principal_for(flow, user_id=REQUESTER, email="a@example.com") == "a@example.com"
    assert principal_for(flow, user_id=REQUESTER, email=None) is None
    mapped = flow.model_copy(
        update={"identity": Identity(principals={REQUESTER: "alice", "b@x.io": "bob"})}
    )
    assert principal_for(mapped, user_id=REQUESTER, email="a@example.com") == "alice"
    assert principal_for(mapped, user_id="U0OTHER", email="b@x.io") == "bob"
