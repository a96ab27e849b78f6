"""The identity-provider stand-ins (Cloud Identity Groups, Entra ID + Graph, Okta) answer the
real clients as the real APIs do, and refuse what the real APIs refuse."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from app.testing.google_groups_standin import GoogleGroupsStandIn
from app.testing.graph_standin import GraphStandIn
from app.testing.okta_standin import OktaStandIn

SCOPE = ["https://graph.microsoft.com/.default"]
PIM = "v1.0/identityGovernance/privilegedAccess/group"
OKTA_TOKEN = "00abc-token"


def call(method: str, url: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, url, timeout=10, **kwargs)


def zulu(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def membership(email: str, role: str = "MEMBER", expire_time: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": role}
    if expire_time:
        entry["expiryDetail"] = {"expireTime": expire_time}
    return {"preferredMemberKey": {"id": email}, "roles": [entry]}


def expiry_update(expire_time: str, mask: str = "expiry_detail.expire_time") -> dict[str, Any]:
    role = {"name": "MEMBER", "expiryDetail": {"expireTime": expire_time}}
    return {"fieldMask": mask, "membershipRole": role}


# -- Google Cloud Identity ----------------------------------------------------------------


@pytest.fixture
def google() -> Iterator[GoogleGroupsStandIn]:
    standin = GoogleGroupsStandIn().start()
    yield standin
    standin.stop()


@pytest.fixture
def cloudidentity(google: GoogleGroupsStandIn) -> Any:
    discovery = pytest.importorskip("googleapiclient.discovery")
    from google.auth.credentials import AnonymousCredentials

    return discovery.build(
        "cloudidentity",
        "v1",
        credentials=AnonymousCredentials(),
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": google.url},
    )


def google_error(error: Any) -> tuple[int, str, str]:
    body = json.loads(error.content)["error"]
    return body["code"], body["status"], body["message"]


def test_google_duplicate_is_409_and_expiry_ends_the_membership(
    google: GoogleGroupsStandIn, cloudidentity: Any
) -> None:
    from googleapiclient.errors import HttpError

    group = google.add_group("eng@example.com")
    assert cloudidentity.groups().lookup(groupKey_id="eng@example.com").execute()["name"] == group
    memberships = cloudidentity.groups().memberships()
    soon = zulu(datetime.now(UTC) + timedelta(seconds=0.8))
    body = membership("a@example.com", expire_time=soon)
    operation = memberships.create(parent=group, body=body).execute()
    assert operation["done"]
    assert operation["response"]["@type"].endswith("cloudidentity.groups.v1.Membership")
    assert set(google.members("eng@example.com")) == {"a@example.com"}

    with pytest.raises(HttpError) as duplicate:
        memberships.create(parent=group, body=body).execute()
    assert google_error(duplicate.value) == (
        409,
        "ALREADY_EXISTS",
        f"Error(4003): Cannot create membership 'a@example.com' in '{group}' "
        "because it already exists.",
    )

    time.sleep(0.9)  # Google, not Latchkey, ends the membership
    assert google.members("eng@example.com") == {}
    with pytest.raises(HttpError) as gone:
        memberships.lookup(parent=group, memberKey_id="a@example.com").execute()
    assert gone.value.status_code == 404
    with pytest.raises(HttpError) as unseen:
        cloudidentity.groups().lookup(groupKey_id="other@example.com").execute()
    assert google_error(unseen.value)[:2] == (403, "PERMISSION_DENIED")


def test_google_refuses_what_cloud_identity_refuses(google: GoogleGroupsStandIn) -> None:
    group = google.add_group("eng@example.com")
    google.add_member("eng@example.com", "a@example.com")
    base = f"{google.url}/v1/{group}/memberships"
    past, later = zulu(datetime.now(UTC) - timedelta(hours=1)), "2099-01-01T00:00:00Z"
    for refused in (
        membership("b@example.com", expire_time=past),
        membership("b@example.com", expire_time="2099-01-01T00:00:00+01:00"),  # not UTC
        membership("b@example.com", role="OWNER", expire_time=later),
        {"roles": [{"name": "MEMBER"}]},
    ):
        answer = call("POST", base, json=refused)
        assert (answer.status_code, answer.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")

    lookup = call("GET", f"{base}:lookup", params={"memberKey.id": "A@example.com"})
    modify = f"{google.url}/v1/{lookup.json()['name']}:modifyMembershipRoles"
    for refused in (
        {"updateRolesParams": [expiry_update(later, mask="roles")]},
        {"updateRolesParams": [expiry_update(later, mask="expiry_detail")]},
        {"updateRolesParams": [expiry_update(later)], "addRoles": [{"name": "OWNER"}]},
        {"updateRolesParams": [expiry_update(past)]},
    ):
        assert call("POST", modify, json=refused).status_code == 400
    answer = call("POST", modify, json={"updateRolesParams": [expiry_update(later)]})
    expiry = answer.json()["membership"]["roles"][0]["expiryDetail"]
    assert expiry == {"expireTime": later}
    assert google.members("eng@example.com") == {"a@example.com": datetime(2099, 1, 1, tzinfo=UTC)}

    google.throttle(1)
    throttled = call("GET", f"{base}:lookup", params={"memberKey.id": "a@example.com"})
    assert (throttled.status_code, throttled.json()["error"]["status"]) == (
        429,
        "RESOURCE_EXHAUSTED",
    )
    name = lookup.json()["name"]
    deleted = call("DELETE", f"{google.url}/v1/{name}").json()
    assert deleted == {
        "done": True,
        "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
    }
    assert call("DELETE", f"{google.url}/v1/{name}").status_code == 404
    assert call("GET", f"{google.url}/v1/nothing").status_code == 404
    assert ("DELETE", f"/v1/{name}") in google.calls


def test_google_pages_memberships(google: GoogleGroupsStandIn) -> None:
    group = google.add_group("eng@example.com")
    for n in range(5):
        google.add_member("eng@example.com", f"u{n}@example.com")
    seen, params = [], {"view": "FULL", "pageSize": "2", "alt": "json"}
    while True:
        page = call("GET", f"{google.url}/v1/{group}/memberships", params=params).json()
        seen += [m["preferredMemberKey"]["id"] for m in page["memberships"]]
        if "nextPageToken" not in page:
            break
        params["pageToken"] = page["nextPageToken"]
    assert sorted(seen) == [f"u{n}@example.com" for n in range(5)]
    misspelt = call("GET", f"{google.url}/v1/{group}/memberships", params={"page_size": "2"})
    assert misspelt.status_code == 400


# -- Entra ID and Microsoft Graph ---------------------------------------------------------


@pytest.fixture
def graph() -> Iterator[GraphStandIn]:
    standin = GraphStandIn("tenant-1", "client-1", "secret-1").start()
    yield standin
    standin.stop()


@pytest.fixture
def session(graph: GraphStandIn) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # or REQUESTS_CA_BUNDLE would win over verify
    s.verify = graph.ca_file
    return s


def msal_app(graph: GraphStandIn, session: requests.Session, secret: str) -> Any:
    msal = pytest.importorskip("msal")
    return msal.ConfidentialClientApplication(
        "client-1",
        client_credential=secret,
        authority=graph.authority,
        http_client=session,
        instance_discovery=False,
    )


@pytest.fixture
def authorised(graph: GraphStandIn, session: requests.Session) -> requests.Session:
    token = msal_app(graph, session, "secret-1").acquire_token_for_client(scopes=SCOPE)
    session.headers["Authorization"] = f"Bearer {token['access_token']}"
    return session


def test_graph_tokens_go_only_to_the_right_client(
    graph: GraphStandIn, session: requests.Session
) -> None:
    wrong = msal_app(graph, session, "nope").acquire_token_for_client(scopes=SCOPE)
    assert wrong["error"] == "invalid_client"
    assert "AADSTS7000215" in wrong["error_description"]
    app = msal_app(graph, session, "secret-1")
    assert app.acquire_token_for_client(scopes=["api://other/.default"])["error"] == "invalid_scope"
    assert app.acquire_token_for_client(scopes=SCOPE)["token_type"] == "Bearer"
    assert graph.tokens_issued == 1

    anonymous = session.get(f"{graph.graph_url}/v1.0/users/x", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "InvalidAuthenticationToken"
    forged = {"Authorization": "Bearer forged"}
    assert (
        session.get(f"{graph.graph_url}/v1.0/users/x", headers=forged, timeout=10).status_code
        == 401
    )


def test_graph_pim_assign_extend_remove(graph: GraphStandIn, authorised: requests.Session) -> None:
    user, group = graph.add_user("Alice@example.com"), graph.add_group("prod-admins")
    found = authorised.get(f"{graph.graph_url}/v1.0/users/alice%40EXAMPLE.com", timeout=10)
    assert found.json()["id"] == user

    def ask(action: str, end: datetime | None = None) -> requests.Response:
        body: dict[str, Any] = {
            "accessId": "member",
            "principalId": user,
            "groupId": group,
            "action": action,
            "justification": "INC-1",
        }
        if end:
            expiration = {"type": "afterDateTime", "endDateTime": end.isoformat()}
            body["scheduleInfo"] = {"expiration": expiration}
        url = f"{graph.graph_url}/{PIM}/assignmentScheduleRequests"
        return authorised.post(url, json=body, timeout=10)

    soon = datetime.now(UTC) + timedelta(hours=1)
    assert ask("adminExtend", soon).json()["error"]["code"] == "RoleAssignmentDoesNotExist"
    assigned = ask("adminAssign", soon)
    assert (assigned.status_code, assigned.json()["status"]) == (201, "Provisioned")
    assert graph.members(group) == {user}
    assert graph.pim_assignments(group) == {user: soon}
    again = ask("adminAssign", soon)
    assert (again.status_code, again.json()["error"]["code"]) == (400, "RoleAssignmentExists")
    assert ask("adminUpdate", datetime.now(UTC) - timedelta(minutes=1)).status_code == 400

    later = soon + timedelta(hours=1)
    assert ask("adminExtend", later).status_code == 201
    instances = f"{graph.graph_url}/{PIM}/assignmentScheduleInstances"
    assert authorised.get(instances, timeout=10).status_code == 400  # a $filter is required
    wanted = {"$filter": f"groupId eq '{group}' and principalId eq '{user}'"}
    listed = authorised.get(instances, params=wanted, timeout=10).json()["value"]
    assert [(i["principalId"], i["accessId"], i["endDateTime"]) for i in listed] == [
        (user, "member", zulu(later))
    ]

    assert ask("adminRemove").status_code == 201
    assert graph.members(group) == set()
    assert graph.pim_assignments(group) == {}
    assert ask("adminRemove").json()["error"]["code"] == "RoleAssignmentDoesNotExist"

    graph.add_pim_assignment(group, user, datetime.now(UTC) + timedelta(seconds=0.3))
    assert graph.members(group) == {user}
    time.sleep(0.4)  # Entra ends the assignment by itself
    assert graph.members(group) == set()


def test_graph_plain_members_paging_and_throttling(
    graph: GraphStandIn, authorised: requests.Session
) -> None:
    group, first = graph.add_group("eng"), graph.add_user("a@example.com")
    ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{first}"}
    members = f"{graph.graph_url}/v1.0/groups/{group}/members"
    assert authorised.post(f"{members}/$ref", json=ref, timeout=10).status_code == 204
    duplicate = authorised.post(f"{members}/$ref", json=ref, timeout=10)
    assert duplicate.status_code == 400
    assert "already exist" in duplicate.json()["error"]["message"]
    for n in range(4):
        graph.add_member(group, graph.add_user(f"u{n}@example.com"))

    seen, url = [], f"{members}?$top=2"
    while url:
        page = authorised.get(url, timeout=10).json()
        seen += [item["id"] for item in page["value"]]
        url = page.get("@odata.nextLink")
    assert len(seen) == 5
    assert set(seen) == graph.members(group)

    assert authorised.delete(f"{members}/{first}/$ref", timeout=10).status_code == 204
    again = authorised.delete(f"{members}/{first}/$ref", timeout=10)
    assert again.json()["error"]["code"] == "Request_ResourceNotFound"
    assert ("DELETE", f"/v1.0/groups/{group}/members/{first}/$ref") in graph.calls

    graph.throttle(1, retry_after=7)
    limited = authorised.get(f"{graph.graph_url}/v1.0/groups/{group}", timeout=10)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    assert limited.json()["error"]["code"] == "TooManyRequests"
    after = authorised.get(f"{graph.graph_url}/v1.0/groups/{group}", timeout=10)
    assert after.json()["displayName"] == "eng"


# -- Okta ---------------------------------------------------------------------------------


@pytest.fixture
def okta() -> Iterator[OktaStandIn]:
    standin = OktaStandIn(OKTA_TOKEN).start()
    yield standin
    standin.stop()


def okta_call(okta: OktaStandIn, method: str, path: str) -> requests.Response:
    return call(method, f"{okta.url}{path}", headers={"Authorization": f"SSWS {OKTA_TOKEN}"})


def test_okta_wants_ssws_and_reports_rate_limits(okta: OktaStandIn) -> None:
    user = okta.add_user("alice@example.com")
    path = "/api/v1/users/alice%40example.com"
    bearer = {"Authorization": f"Bearer {OKTA_TOKEN}"}
    refused = call("GET", f"{okta.url}{path}", headers=bearer)
    assert (refused.status_code, refused.json()["errorCode"]) == (401, "E0000011")
    answer = okta_call(okta, "GET", path)
    assert answer.json()["id"] == user
    for header in ("Date", "X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset"):
        assert header in answer.headers

    okta.throttle(1, reset_in=5)
    limited = okta_call(okta, "GET", path)
    assert (limited.status_code, limited.json()["errorCode"]) == (429, "E0000047")
    assert limited.headers["X-Rate-Limit-Remaining"] == "0"
    date = datetime.strptime(limited.headers["Date"], "%a, %d %b %Y %H:%M:%S GMT")
    reset = int(limited.headers["X-Rate-Limit-Reset"])
    assert reset - int(date.replace(tzinfo=UTC).timestamp()) == 5
    assert okta_call(okta, "GET", path).status_code == 200


def test_okta_membership_and_link_paging(okta: OktaStandIn) -> None:
    group, app_group = okta.add_group("eng"), okta.add_group("from-app", type="APP_GROUP")
    users = [okta.add_user(f"u{n}@example.com") for n in range(5)]
    for user in [*users, users[0]]:  # adding twice is still 204
        assert okta_call(okta, "PUT", f"/api/v1/groups/{group}/users/{user}").status_code == 204
    not_ours = okta_call(okta, "PUT", f"/api/v1/groups/{app_group}/users/{users[0]}")
    assert (not_ours.status_code, not_ours.json()["errorCode"]) == (403, "E0000006")
    missing = okta_call(okta, "PUT", f"/api/v1/groups/{group}/users/00unobody")
    assert missing.status_code == 404
    assert missing.json()["errorSummary"].endswith("(User)")

    seen, url = [], f"{okta.url}/api/v1/groups/{group}/users?limit=2"
    while url:
        page = call("GET", url, headers={"Authorization": f"SSWS {OKTA_TOKEN}"})
        assert "self" in page.links
        seen += [u["id"] for u in page.json()]
        url = page.links.get("next", {}).get("url")
    assert sorted(seen) == sorted(users)

    for _ in range(2):  # removing a non-member is still 204
        removed = okta_call(okta, "DELETE", f"/api/v1/groups/{group}/users/{users[0]}")
        assert removed.status_code == 204
    assert okta.members(group) == set(users[1:])
    assert ("DELETE", f"/api/v1/groups/{group}/users/{users[0]}") in okta.calls
