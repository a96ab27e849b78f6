"""Identity-provider groups through the whole stack (issue 17): /access → Approve → a member
of the Google, Entra ID or Okta group until the grant's end → gone, with the providers'
stand-ins throttling, and someone who was a member before left a member at the end."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from app.models import AuditEvent
from app.queries import events_of, grant_of
from app.slack import ids
from app.testing.scenes import (
    Person,
    approval_card_for,
    click,
    click_in_dm,
    dm_to,
    extend,
    new_person,
    request_id_on,
    submit_request,
)
from app.testing.stack import LocalStack, wait_until
from tests.e2e.conftest import GOOGLE_GROUP, IdpGroups
from tests.factories import APPROVER


def _idp(stack: LocalStack) -> IdpGroups:
    return stack.idp  # type: ignore[attr-defined,no-any-return]


def _approved(
    stack: LocalStack, person: Person, flow: str, target: str, seconds: int = 5
) -> uuid.UUID:
    """A short request of `flow`, approved; its id once granted."""
    response = submit_request(
        stack, person, flow=flow, target=target, seconds=seconds, reason="idp"
    )
    assert response.status == 200, response.body
    card = approval_card_for(stack, person)
    assert click(stack, APPROVER, ids.APPROVE_ACTION, card).status == 200
    dm_to(stack, person, "You now have", timeout=30)
    return uuid.UUID(request_id_on(card))


def _end(stack: LocalStack, request_id: uuid.UUID) -> datetime:
    with stack.database().session() as session:
        grant = grant_of(session, request_id)
        assert grant is not None
        return grant.expires_at


def _granted_event(stack: LocalStack, request_id: uuid.UUID) -> AuditEvent:
    with stack.database().session() as session:
        (event,) = events_of(session, request_id, ("granted",))
        return event


def test_google_group_membership_ends_at_googles_own_expiry(stack: LocalStack) -> None:
    google = _idp(stack).google
    person = new_person(stack, iam_user=False)
    request_id = _approved(stack, person, "google-group", "eng-admins")
    # Created with the grant's exact end, which Google keeps and enforces itself.
    assert google.members(GOOGLE_GROUP).get(person.email) == _end(stack, request_id)
    dm_to(stack, person, "expired", timeout=30)
    assert person.email not in google.members(GOOGLE_GROUP)


def test_a_google_member_before_the_grant_is_left_as_they_were(stack: LocalStack) -> None:
    google = _idp(stack).google
    person = new_person(stack, iam_user=False)
    google.add_member(GOOGLE_GROUP, person.email)  # a standing member
    request_id = _approved(stack, person, "google-group", "eng-admins")
    assert _granted_event(stack, request_id).details["already_member"] is True
    dm_to(stack, person, "You were already a member there")
    dm_to(stack, person, "expired", timeout=30)
    assert google.members(GOOGLE_GROUP)[person.email] is None  # still a member, no end


def test_an_extension_moves_googles_own_expiry(stack: LocalStack) -> None:
    google = _idp(stack).google
    person = new_person(stack, iam_user=False)
    request_id = _approved(stack, person, "google-group", "eng-admins", seconds=8)
    first = _end(stack, request_id)
    assert extend(stack, person, request_id, 8, "still debugging").status == 200
    dm_to(stack, person, "Extended")
    later = _end(stack, request_id)
    assert later == first + timedelta(seconds=8)
    wait_until(
        lambda: google.members(GOOGLE_GROUP).get(person.email) == later, 10, "the new expiry"
    )
    dm_to(stack, person, "expired", timeout=40)
    assert person.email not in google.members(GOOGLE_GROUP)


def test_entra_pim_assignment_ends_with_the_grant(stack: LocalStack) -> None:
    idp = _idp(stack)
    person = new_person(stack, iam_user=False)
    user_id = idp.graph.add_user(person.email)
    request_id = _approved(stack, person, "entra-pim", "prod-admins")
    assigned = idp.graph.pim_assignments(idp.entra_pim_group)
    assert assigned == {user_id: _end(stack, request_id)}
    dm_to(stack, person, "expired", timeout=30)
    assert user_id not in idp.graph.members(idp.entra_pim_group)


def test_entra_membership_survives_graph_throttling_and_is_removed_at_the_end(
    stack: LocalStack,
) -> None:
    idp = _idp(stack)
    person = new_person(stack, iam_user=False)
    user_id = idp.graph.add_user(person.email)
    idp.graph.throttle(2, retry_after=1)  # 429 + Retry-After: waited out, not a failure
    _approved(stack, person, "entra-member", "support")
    assert user_id in idp.graph.members(idp.entra_group)
    dm_to(stack, person, "expired", timeout=30)
    wait_until(lambda: user_id not in idp.graph.members(idp.entra_group), 15, "the removal")


def test_okta_membership_rides_out_the_rate_limit_and_ends_on_time(stack: LocalStack) -> None:
    idp = _idp(stack)
    person = new_person(stack, iam_user=False)
    user_id = idp.okta.add_user(person.email)
    standing = new_person(stack, iam_user=False)
    standing_id = idp.okta.add_user(standing.email)
    idp.okta.add_member(idp.okta_group, standing_id)
    idp.okta.throttle(1, reset_in=1)  # 429 until X-Rate-Limit-Reset
    # Each checked as soon as it is granted: a 5 s grant can be over by the time the second
    # one, throttled, is approved on a busy machine.
    _approved(stack, person, "okta-group", "prod-admins", seconds=8)
    assert user_id in idp.okta.members(idp.okta_group)
    _approved(stack, standing, "okta-group", "prod-admins")
    assert standing_id in idp.okta.members(idp.okta_group)
    dm_to(stack, person, "expired", timeout=30)
    dm_to(stack, standing, "expired", timeout=30)
    # Reconciliation looks at grants ended in the last day: a membership held before the
    # grant is not access lingering past its end, and stays.
    stack.reconcile_now()
    members = idp.okta.members(idp.okta_group)
    assert user_id not in members and standing_id in members


def test_reconciliation_restores_latchkeys_membership_but_not_one_held_before(
    stack: LocalStack,
) -> None:
    """Both removed by hand during their grants: the member Latchkey added is put back, the
    one who was a member before is not (their membership was never Latchkey's: put back, the
    end would leave it for ever)."""
    idp = _idp(stack)
    added, standing = new_person(stack, iam_user=False), new_person(stack, iam_user=False)
    added_id, standing_id = idp.okta.add_user(added.email), idp.okta.add_user(standing.email)
    idp.okta.add_member(idp.okta_group, standing_id)
    added_request = _approved(stack, added, "okta-group", "prod-admins", seconds=3600)
    standing_request = _approved(stack, standing, "okta-group", "prod-admins", seconds=3600)
    for user_id in (added_id, standing_id):
        idp.okta.remove_member(idp.okta_group, user_id)  # an admin, by hand
    stack.reconcile_until(lambda: added_id in idp.okta.members(idp.okta_group), 30, "the re-apply")
    with stack.database().session() as session:
        drift = events_of(session, standing_request, ("drift_found", "drift_repaired"))
        assert drift == []
    assert standing_id not in idp.okta.members(idp.okta_group)
    for person, request_id in ((added, added_request), (standing, standing_request)):
        click_in_dm(stack, person, ids.RELEASE_ACTION, request_id)
        dm_to(stack, person, "was released by you", timeout=30)
    assert not {added_id, standing_id} & idp.okta.members(idp.okta_group)
