"""The identity-provider group providers against local stand-ins of the documented APIs
(Cloud Identity Groups, Microsoft Graph with PIM for Groups, Okta's Groups API): exact
expiries, extensions, members left as they were, throttling ridden out, idempotent revokes,
and `verify` naming what is missing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from app.flows.targets import EntraGroupTarget, GoogleGroupTarget, OktaGroupTarget
from app.providers.base import GrantSpec, ProviderError
from app.providers.idp.entra import EntraGroupProvider
from app.providers.idp.google_groups import GoogleGroupProvider, build_groups_service
from app.providers.idp.okta import OktaGroupProvider
from app.testing.google_groups_standin import GoogleGroupsStandIn
from app.testing.graph_standin import GraphStandIn
from app.testing.okta_standin import OktaStandIn

ANN, BO = "ann@example.com", "bo@example.com"
TENANT, CLIENT, SECRET = "11111111-2222-3333-4444-555555555555", "latchkey-app", "s3cret-value"
OKTA_TOKEN = "okta-api-token-0123"


def _end(seconds: float = 3600) -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)


# -- Google ------------------------------------------------------------------------------


@pytest.fixture
def google() -> Iterator[tuple[GoogleGroupsStandIn, GoogleGroupProvider]]:
    standin = GoogleGroupsStandIn().start()
    standin.add_group("eng-admins@example.com")
    try:
        yield standin, GoogleGroupProvider(build_groups_service(standin.url))
    finally:
        standin.stop()


GROUP = GoogleGroupTarget(name="admins", group_email="eng-admins@example.com")


def test_google_membership_has_the_grants_exact_end_and_an_extension_moves_it(google) -> None:  # type: ignore[no-untyped-def]
    standin, provider = google
    end = _end()
    details = provider.grant(GrantSpec(ANN, GROUP, end))
    assert standin.members(GROUP.group_email) == {ANN: end}
    assert "already_member" not in details
    later = end + timedelta(hours=1)
    provider.grant(GrantSpec(ANN, GROUP, later))  # what an extension does
    assert standin.members(GROUP.group_email) == {ANN: later}
    assert provider.check(GrantSpec(ANN, GROUP, later))


def test_google_ends_the_membership_itself_at_its_end(google) -> None:  # type: ignore[no-untyped-def]
    standin, provider = google
    provider.grant(GrantSpec(ANN, GROUP, _end(2)))
    assert ANN in standin.members(GROUP.group_email)
    time.sleep(2.5)  # no revoke from Latchkey: Google's expiry alone
    assert ANN not in standin.members(GROUP.group_email)


def test_google_existing_member_is_reported_and_never_shortened(google) -> None:  # type: ignore[no-untyped-def]
    standin, provider = google
    standin.add_member(GROUP.group_email, BO)  # standing
    later = _end(7200)
    standin.add_member(GROUP.group_email, ANN, later)  # until after this grant
    assert provider.grant(GrantSpec(BO, GROUP, _end()))["already_member"] is True
    assert provider.grant(GrantSpec(ANN, GROUP, _end()))["already_member"] is True
    assert standin.members(GROUP.group_email) == {BO: None, ANN: later}


def test_google_throttling_is_retried_and_revoke_is_idempotent(google) -> None:  # type: ignore[no-untyped-def]
    standin, provider = google
    end = _end()
    standin.throttle(1)
    provider.grant(GrantSpec(ANN, GROUP, end))
    assert standin.members(GROUP.group_email) == {ANN: end}
    assert "already_absent" not in provider.revoke(GrantSpec(ANN, GROUP, end))
    assert provider.revoke(GrantSpec(ANN, GROUP, end))["already_absent"] is True
    assert standin.members(GROUP.group_email) == {}


def test_google_verify_names_a_missing_group(google) -> None:  # type: ignore[no-untyped-def]
    _, provider = google
    assert provider.verify(GROUP) == []
    missing = GoogleGroupTarget(name="x", group_email="nobody-here@example.com")
    (problem,) = provider.verify(missing)
    assert "nobody-here@example.com" in problem and "does not exist" in problem


# -- Microsoft Entra ID ------------------------------------------------------------------


@pytest.fixture
def graph(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[GraphStandIn, EntraGroupProvider]]:
    standin = GraphStandIn(TENANT, CLIENT, SECRET).start()
    # The stand-in's throwaway CA: msal and requests trust it as they would a real one.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", standin.ca_file)
    try:
        yield standin, _entra(standin, SECRET)
    finally:
        standin.stop()


def _entra(standin: GraphStandIn, secret: str) -> EntraGroupProvider:
    return EntraGroupProvider(
        tenant_id=TENANT,
        client_id=CLIENT,
        client_secret=secret,
        authority_url=standin.graph_url,
        graph_url=standin.graph_url,
    )


def test_entra_pim_assignment_ends_at_the_grant_and_moves_with_an_extension(graph) -> None:  # type: ignore[no-untyped-def]
    standin, provider = graph
    ann, group = standin.add_user(ANN), standin.add_group("prod-admins")
    target = EntraGroupTarget(name="admins", group_id=group, mode="pim")
    end = _end()
    provider.grant(GrantSpec(ANN, target, end))
    assert standin.pim_assignments(group) == {ann: end}
    assert ann in standin.members(group)
    provider.grant(GrantSpec(ANN, target, end + timedelta(minutes=30)))
    assert standin.pim_assignments(group) == {ann: end + timedelta(minutes=30)}
    provider.revoke(GrantSpec(ANN, target, end))
    assert standin.pim_assignments(group) == {} and ann not in standin.members(group)
    assert provider.revoke(GrantSpec(ANN, target, end))["already_absent"] is True
    assert standin.tokens_issued == 1  # one token, reused


def test_entra_pim_permanent_assignment_is_left_as_it_was(graph) -> None:  # type: ignore[no-untyped-def]
    standin, provider = graph
    ann, group = standin.add_user(ANN), standin.add_group("prod-admins")
    standin.add_pim_assignment(group, ann, None)
    target = EntraGroupTarget(name="admins", group_id=group, mode="pim")
    assert provider.grant(GrantSpec(ANN, target, _end()))["already_member"] is True
    assert standin.pim_assignments(group) == {ann: None}


def test_entra_plain_membership_throttled_then_added_and_removed_once(graph) -> None:  # type: ignore[no-untyped-def]
    standin, provider = graph
    ann, bo = standin.add_user(ANN), standin.add_user(BO)
    group = standin.add_group("support")
    standin.add_member(group, bo)
    target = EntraGroupTarget(name="support", group_id=group, mode="membership")
    standin.throttle(2, retry_after=1)
    provider.grant(GrantSpec(ANN, target, _end()))
    assert standin.members(group) == {ann, bo}
    assert provider.grant(GrantSpec(BO, target, _end()))["already_member"] is True
    assert provider.check(GrantSpec(ANN, target, _end()))
    provider.revoke(GrantSpec(ANN, target, _end()))
    assert provider.revoke(GrantSpec(ANN, target, _end()))["already_absent"] is True
    assert standin.members(group) == {bo}


def test_entra_refusals_name_the_problem(graph) -> None:  # type: ignore[no-untyped-def]
    standin, provider = graph
    group = standin.add_group("support")
    target = EntraGroupTarget(name="support", group_id=group, mode="membership")
    with pytest.raises(ProviderError, match=r"no user 'ghost@example\.com'") as unknown:
        provider.grant(GrantSpec("ghost@example.com", target, _end()))
    assert not unknown.value.transient
    with pytest.raises(ProviderError, match="invalid_client") as refused:
        _entra(standin, "wrong-secret").grant(GrantSpec(ANN, target, _end()))
    assert not refused.value.transient
    missing = EntraGroupTarget(name="x", group_id=str(_guid()), mode="pim")
    assert provider.verify(target) == []
    (problem,) = provider.verify(missing)
    assert missing.group_id in problem and "does not exist" in problem


def _guid() -> str:
    import uuid

    return str(uuid.uuid4())


# -- Okta --------------------------------------------------------------------------------


@pytest.fixture
def okta() -> Iterator[tuple[OktaStandIn, OktaGroupProvider]]:
    standin = OktaStandIn(OKTA_TOKEN).start()
    try:
        yield standin, OktaGroupProvider(standin.url, OKTA_TOKEN)
    finally:
        standin.stop()


def test_okta_membership_added_removed_idempotently_and_existing_left(okta) -> None:  # type: ignore[no-untyped-def]
    standin, provider = okta
    ann, bo = standin.add_user(ANN), standin.add_user(BO)
    group = standin.add_group("prod-admins")
    standin.add_member(group, bo)
    target = OktaGroupTarget(name="admins", group_id=group)
    provider.grant(GrantSpec(ANN, target, _end()))
    assert standin.members(group) == {ann, bo}
    assert provider.grant(GrantSpec(BO, target, _end()))["already_member"] is True
    assert provider.members(target) == {target.resource: {ANN, BO}}
    provider.revoke(GrantSpec(ANN, target, _end()))
    provider.revoke(GrantSpec(ANN, target, _end()))
    assert standin.members(group) == {bo}


def test_okta_rate_limit_waits_for_its_reset(okta) -> None:  # type: ignore[no-untyped-def]
    standin, provider = okta
    ann = standin.add_user(ANN)
    group = standin.add_group("prod-admins")
    standin.throttle(1, reset_in=1)
    started = time.monotonic()
    provider.grant(GrantSpec(ANN, OktaGroupTarget(name="a", group_id=group), _end()))
    assert standin.members(group) == {ann}
    assert time.monotonic() - started >= 1.0  # waited for X-Rate-Limit-Reset, not hammered


def test_okta_refusals_name_the_problem(okta) -> None:  # type: ignore[no-untyped-def]
    standin, provider = okta
    group = standin.add_group("prod-admins")
    target = OktaGroupTarget(name="a", group_id=group)
    with pytest.raises(ProviderError, match=r"no user with login 'ghost@example\.com'"):
        provider.grant(GrantSpec("ghost@example.com", target, _end()))
    with pytest.raises(ProviderError, match="E0000011"):
        OktaGroupProvider(standin.url, "wrong").grant(GrantSpec(ANN, target, _end()))
    assert provider.verify(target) == []
    (missing,) = provider.verify(OktaGroupTarget(name="b", group_id="00g" + "x" * 17))
    assert "does not exist" in missing
    app_group = standin.add_group("imported", type="APP_GROUP")
    (imported,) = provider.verify(OktaGroupTarget(name="c", group_id=app_group))
    assert "APP_GROUP" in imported
