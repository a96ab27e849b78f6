"""Table-driven tests of the pure policy decisions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.flows.hooks import approve, deny
from app.flows.loader import FlowRegistry
from app.flows.policy import (
    RequestInput,
    approve_for_less_problem,
    auto_decide,
    check_reason,
    check_request,
    clamp_duration,
    may_decide,
    may_request,
    quorum,
)
from app.flows.schema import Flow, People
from tests.factories import (
    APPROVER,
    APPROVER_GROUP,
    GROUP_APPROVER,
    OUTSIDER,
    REQUESTER,
    SECOND_APPROVER,
    make_flow,
)


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


@pytest.mark.parametrize(
    ("requesters", "user", "email", "groups", "allowed"),
    [
        (None, OUTSIDER, None, {}, True),
        (People(users=(REQUESTER,)), REQUESTER, None, {}, True),
        (People(users=(REQUESTER,)), OUTSIDER, None, {}, False),
        (People(usergroups=("S0ENG",)), OUTSIDER, None, {"S0ENG": frozenset({OUTSIDER})}, True),
        (People(usergroups=("S0ENG",)), OUTSIDER, None, {"S0ENG": frozenset()}, False),
        (People(email_domains=("example.com",)), OUTSIDER, "dee@Example.com", {}, True),
        (People(email_domains=("example.com",)), OUTSIDER, "dee@evil.example.org", {}, False),
        (People(email_domains=("example.com",)), OUTSIDER, None, {}, False),
    ],
)
def test_may_request(requesters, user, email, groups, allowed) -> None:
    flow = make_flow(requesters=requesters)
    assert may_request(flow, user_id=user, email=email, group_members=groups).allowed is allowed


@pytest.mark.parametrize(
    ("required", "self_ok", "clicks", "counted", "reached"),
    [
        (1, False, [APPROVER], (APPROVER,), True),
        (2, False, [APPROVER], (APPROVER,), False),
        (2, False, [APPROVER, APPROVER], (APPROVER,), False),
        (2, False, [REQUESTER, APPROVER], (APPROVER,), False),  # quorum with a self-approver
        (2, True, [REQUESTER, APPROVER], (REQUESTER, APPROVER), True),
        (2, False, [APPROVER, SECOND_APPROVER], (APPROVER, SECOND_APPROVER), True),
    ],
)
def test_quorum(required, self_ok, clicks, counted, reached) -> None:
    flow = make_flow(approvals_required=required, allow_self_approval=self_ok)
    result = quorum(flow, requester_id=REQUESTER, approver_ids=clicks)
    assert result.approvers == counted and result.reached is reached


def test_self_approval_only_when_allowed() -> None:
    verdict = may_decide(
        make_flow(allow_self_approval=True, approvers=People(users=(REQUESTER,))),
        requester_id=REQUESTER,
        approver_id=REQUESTER,
        usergroup_members={},
    )
    assert verdict.allowed


@pytest.mark.parametrize(
    ("rules", "reason", "problem"),
    [
        ({}, "fix", None),
        ({"reason_min_length": 10}, "fix", "at least 10 characters"),
        (
            {"reason_pattern": r"\b[A-Z]+-\d+\b", "reason_hint": "a ticket id like OPS-123"},
            "fix it",
            "a ticket id like OPS-123",
        ),
        (
            {"reason_pattern": r"\b[A-Z]+-\d+\b", "reason_hint": "a ticket id like OPS-123"},
            "see OPS-42",
            None,
        ),
        ({"reason_required": False}, "", None),
        ({"reason_required": True}, " ", "Say why"),
    ],
)
def test_justification_rules(rules, reason, problem) -> None:
    result = check_reason(make_flow(**rules), reason)
    assert (result is None) if problem is None else (problem in result)


def test_pattern_without_hint_is_a_flow_error() -> None:
    with pytest.raises(ValueError, match="reason_hint"):
        make_flow(reason_pattern=r"OPS-\d+")


@pytest.mark.parametrize(
    ("auto", "defined", "value", "error", "outcome", "why"),
    [
        (None, False, None, None, "human", "needs human approval"),
        (People(users=(REQUESTER,)), False, None, None, "approve", "auto_approve"),
        (People(users=(OUTSIDER,)), False, None, None, "human", "needs human approval"),
        (None, True, approve("on call in PagerDuty"), None, "approve", "on call in PagerDuty"),
        (None, True, deny("outside business hours"), None, "deny", "outside business hours"),
        (None, True, None, None, "human", "needs human approval"),  # the hook abstains
        (
            People(users=(REQUESTER,)),
            True,
            None,
            "RuntimeError: boom",
            "human",
            "hook failed",
        ),  # broken hook never grants
        (None, True, "yes please", None, "human", "neither approve"),
        (None, True, approve("   "), None, "human", "neither approve"),  # a decision needs a reason
    ],
)
def test_auto_decide(auto, defined, value, error, outcome, why) -> None:
    flow = make_flow(auto_approve=auto)
    decision = auto_decide(
        flow,
        requester_id=REQUESTER,
        email=None,
        group_members={},
        hook_defined=defined,
        hook_value=value,
        hook_error=error,
    )
    assert decision.outcome == outcome and why in decision.reason


def test_a_raising_hook_is_caught_and_named(tmp_path) -> None:
    from app.flows.hooks import HookRequest, call_hook
    from app.flows.loader import load_flows
    from tests.factories import write_flow

    path = write_flow(tmp_path)
    path.write_text(
        path.read_text() + "\n\ndef on_request(request):\n    raise KeyError('pagerduty token')\n"
    )
    loaded = load_flows(tmp_path).get("test-admin")
    result = call_hook(
        loaded, "on_request", HookRequest("id", "f", "t", REQUESTER, None, "r", timedelta(1))
    )
    assert result.defined and result.value is None and result.error == "KeyError: 'pagerduty token'"
    assert call_hook(loaded, "on_missing").defined is False


def test_get_requesters_names_extra_people_by_id_or_email() -> None:
    flow = make_flow(requesters=People(users=(REQUESTER,)))
    extra = frozenset({"U0HOOKED", "Vendor@Example.com"})
    assert may_request(
        flow, user_id="U0HOOKED", email=None, group_members={}, extra_requesters=extra
    ).allowed
    assert may_request(
        flow, user_id="U0V", email="vendor@example.com", group_members={}, extra_requesters=extra
    ).allowed
    assert not may_request(
        flow, user_id=OUTSIDER, email="o@example.com", group_members={}, extra_requesters=extra
    ).allowed


def test_get_approvers_adds_approvers_but_never_the_requester() -> None:
    flow = make_flow()
    assert may_decide(
        flow,
        requester_id=REQUESTER,
        approver_id=OUTSIDER,
        usergroup_members={},
        extra_approvers=frozenset({OUTSIDER}),
    ).allowed
    assert not may_decide(
        flow,
        requester_id=REQUESTER,
        approver_id=REQUESTER,
        usergroup_members={},
        extra_approvers=frozenset({REQUESTER}),
    ).allowed


def test_auto_approval_never_applies_to_an_ineligible_requester() -> None:
    flow = make_flow(auto_approve=People(users=(REQUESTER,)), requesters=People(users=(APPROVER,)))
    eligible = may_request(flow, user_id=REQUESTER, email=None, group_members={})
    for value in (None, approve("on call")):
        decision = auto_decide(
            flow,
            requester_id=REQUESTER,
            email=None,
            group_members={},
            hook_defined=value is not None,
            hook_value=value,
            hook_error=None,
            eligible=eligible,
        )
        assert decision.outcome == "deny" and "not eligible" in decision.reason


_M = timedelta(minutes=1)
# A flow whose max_duration was lowered to 20 minutes after requests for an hour were made.
_LOWERED = dict(durations=(10 * _M, 20 * _M), max_duration=20 * _M)


@pytest.mark.parametrize(
    ("flow_fields", "asked", "allowed", "says"),
    [
        ({}, timedelta(hours=1), timedelta(hours=1), None),
        ({}, timedelta(seconds=6), timedelta(seconds=6), None),
        # Above the current max_duration: the longest duration allowed now.
        (
            _LOWERED,
            60 * _M,
            20 * _M,
            "Shortened from 1h to 20m: the test-admin flow now allows at most 20m.",
        ),
        # Not among the flow's durations any more: the longest one below it.
        (
            dict(durations=(10 * _M, 20 * _M), max_duration=60 * _M),
            30 * _M,
            20 * _M,
            "Shortened from 30m to 20m: the test-admin flow now allows 10m, 20m, not 30m.",
        ),
        # Nothing the flow offers is that short: never lengthened, refused.
        (
            dict(durations=(10 * _M, 20 * _M), max_duration=20 * _M),
            5 * _M,
            None,
            "The test-admin flow no longer allows 5m or less (it allows 10m, 20m); ask for it again.",
        ),
        (_LOWERED, timedelta(0), None, "The test-admin flow no longer allows 0s or less"),
    ],
)
def test_clamp_duration_keeps_what_the_flow_allows_now_and_never_lengthens(
    flow_fields: dict, asked: timedelta, allowed: timedelta | None, says: str | None
) -> None:
    flow = make_flow(**flow_fields)
    got, note = clamp_duration(flow, asked)
    assert got == allowed
    assert (note is None) if says is None else note is not None and note.startswith(says)
    if got is not None:
        assert got <= asked and got <= flow.max_duration and got in flow.durations


@pytest.mark.parametrize(
    ("chosen", "problem"),
    [
        (timedelta(seconds=4), None),
        (
            timedelta(seconds=0),
            "You can approve for less only with one of the test-admin flow's durations shorter than asked (4s); 0s is not one.",
        ),
        (
            timedelta(seconds=5),
            "You can approve for less only with one of the test-admin flow's durations shorter than asked (4s); 5s is not one.",
        ),
        (
            timedelta(seconds=6),
            "You can approve for less only with one of the test-admin flow's durations shorter than asked (4s); 6s is not one.",
        ),
        (timedelta(hours=1), "You can approve for less time than asked, never more."),
        (
            timedelta(seconds=-4),
            "You can approve for less only with one of the test-admin flow's durations shorter than asked (4s); 0s is not one.",
        ),
    ],
)
def test_approve_for_less_accepts_only_shorter_durations_of_the_flow(
    chosen: timedelta, problem: str | None
) -> None:
    assert approve_for_less_problem(make_flow(), timedelta(seconds=6), chosen) == problem
