"""The PagerDuty and Opsgenie clients against their local stand-ins (app.testing.oncall_standin):
who is on call, open incidents, paging, and every way a call can fail."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.oncall.errors import OnCallError
from app.oncall.opsgenie import OpsgenieClient
from app.oncall.pagerduty import PagerDutyClient
from app.testing.opsgenie_standin import OpsgenieStandIn
from app.testing.pagerduty_standin import PagerDutyStandIn

TOKEN, API_KEY = "pd-read-only-token", "og-api-integration-key"


@pytest.fixture
def pagerduty() -> Iterator[PagerDutyStandIn]:
    with PagerDutyStandIn(TOKEN) as standin:
        yield standin


@pytest.fixture
def opsgenie() -> Iterator[OpsgenieStandIn]:
    with OpsgenieStandIn(API_KEY) as standin:
        yield standin


def _entry(user: str, level: int, schedule: str | None, policy: str = "PEP1") -> dict[str, Any]:
    """An on-call entry for PagerDutyStandIn.set_oncalls (schedule None: named in the policy)."""
    return {
        "level": level,
        "email": f"{user}@example.com",
        "name": user.title(),
        "user_id": f"PU{user.upper()}",
        "schedule_id": schedule,
        "escalation_policy_id": policy,
    }


def _calls(standin: PagerDutyStandIn | OpsgenieStandIn, path: str) -> list[dict[str, list[str]]]:
    return [query for _, p, query in standin.requests if p == path]


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# PagerDuty


def test_pagerduty_oncall_by_schedule_keeps_levels_up_to_max_level(
    pagerduty: PagerDutyStandIn,
) -> None:
    pagerduty.set_oncalls(
        [
            _entry("alice", 1, "PSCHED1"),
            _entry("bob", 2, "PSCHED1"),
            _entry("carol", 3, "PSCHED1"),
            _entry("dave", 1, "PSCHED2", policy="PEP2"),
        ]
    )
    client = PagerDutyClient(pagerduty.url, TOKEN)

    assert client.oncall_emails(schedule_ids=["PSCHED1"]) == ["alice@example.com"]
    assert client.oncall_emails(schedule_ids=["PSCHED1"], max_level=2) == [
        "alice@example.com",
        "bob@example.com",
    ]
    (query, *_) = _calls(pagerduty, "/oncalls")
    assert query["schedule_ids[]"] == ["PSCHED1"] and query["include[]"] == ["users"]
    assert query["earliest"] == ["true"] and query["time_zone"] == ["UTC"]


def test_pagerduty_oncall_by_escalation_policy_includes_users_named_directly(
    pagerduty: PagerDutyStandIn,
) -> None:
    # Erin is a target of the policy itself (no schedule); Frank is in two of its
    # schedules at level 1 and counts once; Hal is at level 2; Gina is on another policy.
    pagerduty.set_oncalls(
        [
            _entry("erin", 1, None),
            _entry("frank", 1, "PSCHED1"),
            _entry("frank", 1, "PSCHED2"),
            _entry("hal", 2, "PSCHED3"),
            _entry("gina", 1, "PSCHED9", policy="PEP9"),
        ]
    )
    client = PagerDutyClient(pagerduty.url, TOKEN)

    assert client.oncall_emails(escalation_policy_ids=["PEP1"]) == [
        "erin@example.com",
        "frank@example.com",
    ]
    assert client.oncall_emails(escalation_policy_ids=["PEP1", "PEP9"], max_level=2) == [
        "erin@example.com",
        "frank@example.com",
        "hal@example.com",
        "gina@example.com",
    ]


def test_pagerduty_oncall_follows_pages(pagerduty: PagerDutyStandIn) -> None:
    pagerduty.set_oncalls([_entry(f"u{n:03d}", 1, "PSCHED1") for n in range(130)])

    emails = PagerDutyClient(pagerduty.url, TOKEN).oncall_emails(schedule_ids=["PSCHED1"])

    assert emails == [f"u{n:03d}@example.com" for n in range(130)]
    pages = _calls(pagerduty, "/oncalls")
    assert [(q["offset"], q["limit"]) for q in pages] == [(["0"], ["100"]), (["100"], ["100"])]


def test_pagerduty_standin_answers_references_without_include_and_refuses_unknown_parameters(
    pagerduty: PagerDutyStandIn,
) -> None:
    """What keeps the client honest: without include[]=users there is no email, and a
    misspelt parameter is refused rather than ignored."""
    pagerduty.set_oncalls([_entry("alice", 1, "PSCHED1")])

    def get(query: str) -> tuple[int, dict[str, Any]]:
        url, auth = f"{pagerduty.url}/oncalls?{query}", {"Authorization": f"Token token={TOKEN}"}
        request = urllib.request.Request(url, headers=auth)  # noqa: S310 - loopback http URL
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    status, body = get("schedule_ids%5B%5D=PSCHED1")
    assert status == 200 and body["more"] is False and body["limit"] == 25
    assert body["oncalls"][0]["user"] == {
        "id": "PUALICE",
        "type": "user_reference",
        "summary": "Alice",
        "self": f"{pagerduty.url}/users/PUALICE",
        "html_url": "https://latchkey.pagerduty.com/users/PUALICE",
    }
    status, body = get("schedule_ids=PSCHED1")
    assert status == 400 and body["error"]["message"] == "Invalid Input Provided"


def test_pagerduty_counts_open_incidents_not_resolved_ones(pagerduty: PagerDutyStandIn) -> None:
    triggered = pagerduty.open_incident("PSVC1")
    acknowledged = pagerduty.open_incident("PSVC1")
    pagerduty.acknowledge_incident(acknowledged)
    pagerduty.resolve_incident(pagerduty.open_incident("PSVC1"))
    pagerduty.open_incident("PSVC2")
    # Still open after two months: PagerDuty would not list it without date_range=all.
    pagerduty.open_incident("PSVC1", created_at=datetime.now(UTC) - timedelta(days=60))
    client = PagerDutyClient(pagerduty.url, TOKEN)

    assert client.open_incidents("PSVC1") == 3
    pagerduty.resolve_incident(triggered)
    pagerduty.resolve_incident(acknowledged)
    assert client.open_incidents("PSVC1") == 1
    assert client.open_incidents("PSVC3") == 0


def test_pagerduty_open_incidents_follows_pages(pagerduty: PagerDutyStandIn) -> None:
    for _ in range(105):
        pagerduty.open_incident("PSVC1")

    assert PagerDutyClient(pagerduty.url, TOKEN).open_incidents("PSVC1") == 105
    assert len(_calls(pagerduty, "/incidents")) == 2


def test_pagerduty_wrong_token_names_the_401(pagerduty: PagerDutyStandIn) -> None:
    with pytest.raises(OnCallError) as failure:
        PagerDutyClient(pagerduty.url, "not-the-token").oncall_emails(schedule_ids=["PSCHED1"])

    assert str(failure.value) == "PagerDuty GET /oncalls: 401 Unauthorized: Invalid Token"
    assert "not-the-token" not in str(failure.value)


def test_pagerduty_waits_out_a_429_and_retries(pagerduty: PagerDutyStandIn) -> None:
    pagerduty.set_oncalls([_entry("alice", 1, "PSCHED1")])
    pagerduty.rate_limit_next(1)

    started = time.monotonic()
    emails = PagerDutyClient(pagerduty.url, TOKEN).oncall_emails(schedule_ids=["PSCHED1"])

    assert emails == ["alice@example.com"]
    assert len(_calls(pagerduty, "/oncalls")) == 2  # the 429, then the retry
    assert time.monotonic() - started >= 0.9  # ratelimit-reset: 1


def test_pagerduty_gives_up_after_three_retries(pagerduty: PagerDutyStandIn) -> None:
    pagerduty.rate_limit_next(10)

    with pytest.raises(OnCallError) as failure:
        PagerDutyClient(pagerduty.url, TOKEN).open_incidents("PSVC1")

    assert str(failure.value) == (
        "PagerDuty GET /incidents: 429 Too Many Requests: Rate Limit Exceeded "
        "(still limited after 3 retries)"
    )
    assert len(_calls(pagerduty, "/incidents")) == 4


def test_pagerduty_no_answer_is_a_timeout() -> None:
    # A listening socket that never accepts: the connection opens, no answer comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        client = PagerDutyClient(f"http://127.0.0.1:{silent.getsockname()[1]}", TOKEN, 0.5)
        started = time.monotonic()
        with pytest.raises(
            OnCallError, match=r"^PagerDuty GET /incidents: no answer within 0.5 s$"
        ):
            client.open_incidents("PSVC1")
        assert time.monotonic() - started < 2


def test_clients_refuse_a_base_url_that_is_not_http() -> None:
    with pytest.raises(OnCallError, match="PagerDuty: base URL 'file:///etc' is not http"):
        PagerDutyClient("file:///etc", TOKEN)
    with pytest.raises(OnCallError, match="Opsgenie: base URL 'ftp://x' is not http"):
        OpsgenieClient("ftp://x", API_KEY)


@pytest.mark.parametrize("service", ["pagerduty", "opsgenie"])
def test_unreachable_service_fails_within_the_timeout(service: str, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    client = (
        PagerDutyClient(url, TOKEN, 2.0)
        if service == "pagerduty"
        else OpsgenieClient(url, API_KEY, 2.0)
    )

    started = time.monotonic()
    with pytest.raises(OnCallError) as failure:
        client.open_incidents("payments")

    assert time.monotonic() - started < 2.0
    name = "PagerDuty GET /incidents" if service == "pagerduty" else "Opsgenie GET /v1/incidents"
    assert str(failure.value).startswith(f"{name}: cannot connect to {url}: ")
    assert "refused" in str(failure.value)


# Opsgenie


def test_opsgenie_oncall_emails_of_a_schedule_by_name(opsgenie: OpsgenieStandIn) -> None:
    opsgenie.set_oncall("Platform / Primary", ["ann@example.com", "ben@example.com"])
    opsgenie.set_oncall("Data", ["cat@example.com"])
    client = OpsgenieClient(opsgenie.url, API_KEY)

    assert client.oncall_emails("Platform / Primary") == ["ann@example.com", "ben@example.com"]
    assert client.oncall_emails("Data") == ["cat@example.com"]
    method, path, query = opsgenie.requests[0]
    assert (method, path) == ("GET", "/v2/schedules/Platform%20%2F%20Primary/on-calls")
    assert query == {"scheduleIdentifierType": ["name"], "flat": ["true"]}


def test_opsgenie_unknown_schedule_names_the_404(opsgenie: OpsgenieStandIn) -> None:
    with pytest.raises(OnCallError) as failure:
        OpsgenieClient(opsgenie.url, API_KEY).oncall_emails("Nobody")

    assert str(failure.value) == (
        "Opsgenie GET /v2/schedules/Nobody/on-calls: 404 Not Found: "
        "No schedule exists with name [Nobody]"
    )


def test_opsgenie_counts_open_incidents_not_closed_ones(opsgenie: OpsgenieStandIn) -> None:
    first = opsgenie.open_incident("Payments API")
    opsgenie.open_incident("Payments API")
    opsgenie.close_incident(opsgenie.open_incident("Payments API"))
    opsgenie.open_incident("Search")
    client = OpsgenieClient(opsgenie.url, API_KEY)

    assert client.open_incidents("Payments API") == 2
    opsgenie.close_incident(first)
    assert client.open_incidents("Payments API") == 1
    assert client.open_incidents("Search") == 1
    assert client.open_incidents("Billing") == 0
    query = _calls(opsgenie, "/v1/incidents")[0]["query"]
    assert query == ['status: open AND services: "Payments API"']


def test_opsgenie_open_incidents_follows_pages(opsgenie: OpsgenieStandIn) -> None:
    for _ in range(105):
        opsgenie.open_incident("payments")
    opsgenie.open_incident("search")

    assert OpsgenieClient(opsgenie.url, API_KEY).open_incidents("payments") == 105
    pages = _calls(opsgenie, "/v1/incidents")
    assert [(q["offset"], q["limit"]) for q in pages] == [(["0"], ["100"]), (["100"], ["100"])]


def test_opsgenie_wrong_key_names_the_401(opsgenie: OpsgenieStandIn) -> None:
    with pytest.raises(OnCallError) as failure:
        OpsgenieClient(opsgenie.url, "not-the-key").open_incidents("payments")

    assert (
        str(failure.value) == "Opsgenie GET /v1/incidents: 401 Unauthorized: Could not authenticate"
    )
    assert "not-the-key" not in str(failure.value)


def test_opsgenie_waits_out_a_429_and_retries(opsgenie: OpsgenieStandIn) -> None:
    opsgenie.set_oncall("Primary", ["ann@example.com"])
    opsgenie.rate_limit_next(1)

    started = time.monotonic()
    emails = OpsgenieClient(opsgenie.url, API_KEY).oncall_emails("Primary")

    assert emails == ["ann@example.com"]
    assert len(opsgenie.requests) == 2  # the 429, then the retry
    assert time.monotonic() - started >= 0.9  # 1 s before retrying
