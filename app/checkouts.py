"""Shared accounts lent to one holder at a time: who has one, who waits, and in what order.

An exclusive target (PostgresAccountTarget) is granted only to the request that holds its
AccountCheckout row. The row is taken in the same transaction as the grant's claim, and
the account is its primary key, so two requests can never both be at the provider for it;
it is given back in the transaction that records the end (after the provider rotated the
password) or the failure. A request that finds the account out stays approved: it waits,
told once who has it and until when (or, when its target says "refuse", fails with those
words), and the sweep, which drives every approved request, grants it when its turn comes.

The queue is first asked, first served: an approved request waits while an earlier one of
the same flow and target waits too, even if the account is free at that moment.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlmodel import Session

from app.clients import client_name, is_client
from app.models import AccessRequest, AccountCheckout, RequestStatus
from app.queries import events_of, grant_of

if TYPE_CHECKING:
    from app.runtime import Runtime

S = RequestStatus
QUEUED_EVENT = "checkout_queued"


class Busy(Exception):
    """The account is out to another request (raised inside the claim's transaction, so
    the claim is rolled back with it)."""


@dataclass(frozen=True)
class Place:
    """Where a waiting request stands: who has the account, until when, how many before it."""

    holder: str | None  # the holder's Slack id (None: free, but others were first)
    holder_request: uuid.UUID | None
    until: datetime | None  # None while the holder's grant is still being applied
    ahead: int

    def words(self, account: str, who: str, when: Callable[[datetime], str]) -> str:
        """`who` names the holder (a mention in Slack, a name in plain text) and `when`
        writes a time, so the DM, the card and a stored refusal each say it their way."""
        if self.holder is None:
            text = f"{account} is free, but {self._others()} asked first"
            return text + "; it is yours when they are done"
        text = f"{account} is checked out to {who}"
        if self.until is not None:
            text += f" until {when(self.until)}"
        if self.ahead:
            text += f", and {self._others()} before yours"
        return text

    def _others(self) -> str:
        return "1 request" if self.ahead == 1 else f"{self.ahead} requests"


def exclusive(target: Any) -> bool:
    return bool(getattr(target, "exclusive", False))


def account_of(target: Any) -> str:
    """How people are told which account: its login, or a custom target's name."""
    return str(getattr(target, "account", None) or target.name)


def take(session: Session, request_id: uuid.UUID, resource: str) -> None:
    """Check the account out to `request_id` (already ours: nothing to do); Busy when
    another request has it. Two takers racing: one insert wins, the other's flush fails
    (an IntegrityError, which the caller treats as Busy)."""
    held = session.get(AccountCheckout, resource)
    if held is not None:
        if held.request_id == request_id:
            return
        raise Busy(resource)
    session.add(AccountCheckout(resource=resource, request_id=request_id))
    session.flush()


def release(session: Session, request_id: uuid.UUID) -> bool:
    """Give back what `request_id` had out (its end was recorded, or it failed)."""
    result = session.execute(
        delete(AccountCheckout).where(AccountCheckout.request_id == request_id)  # type: ignore[arg-type]
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def place(session: Session, request: AccessRequest, resource: str) -> Place | None:
    """Where an approved request stands in the account's queue; None when it may go now."""
    held = session.get(AccountCheckout, resource)
    if held is not None and held.request_id == request.id:
        return None
    earlier = [
        AccessRequest.flow == request.flow,
        AccessRequest.target == request.target,
        AccessRequest.extends_id.is_(None),  # type: ignore[union-attr]
        AccessRequest.status == S.APPROVED,
        AccessRequest.created_at < request.created_at,
    ]
    if held is not None:  # the holder's own request is not waiting
        earlier.append(AccessRequest.id != held.request_id)
    ahead = session.execute(
        select(func.count()).select_from(AccessRequest).where(*earlier)  # type: ignore[arg-type]
    ).scalar_one()
    if held is None and not ahead:
        return None
    if held is None:
        return Place(None, None, None, int(ahead))
    holder = session.get(AccessRequest, held.request_id)
    grant = grant_of(session, held.request_id)
    return Place(
        holder.requester_id if holder else None,
        held.request_id,
        grant.expires_at if grant is not None and grant.ended_at is None else None,
        int(ahead),
    )


def told_queued(session: Session, request_id: uuid.UUID) -> bool:
    return bool(events_of(session, request_id, (QUEUED_EVENT,)))


def wait_turn(rt: Runtime, request_id: uuid.UUID, target: Any) -> str | None:
    """Before an exclusive target's claim: None when this request may check the account
    out now; "queued" when it waits (audited and told once); else the refusal, for a
    target that does not queue."""
    from app.lifecycle import record

    with rt.db.session() as session:
        request = session.get(AccessRequest, request_id)
        if request is None or request.status not in (S.APPROVED, S.GRANTING):
            return "queued"  # moved on meanwhile: nothing to do now
        spot = place(session, request, target.resource)
        if spot is None:
            return None
        refuse = target.when_checked_out == "refuse"
        first = not refuse and not told_queued(session, request_id)
        if first:
            record(
                session,
                rt.audit,
                request,
                QUEUED_EVENT,
                "latchkey",
                {
                    "holder": spot.holder,
                    "holder_request": str(spot.holder_request) if spot.holder_request else None,
                    "until": spot.until.isoformat() if spot.until else None,
                    "ahead": spot.ahead,
                },
            )
    if refuse:
        if spot.holder is None:
            who = "someone"
        elif is_client(spot.holder):
            who = f"service client {client_name(spot.holder)}"
        else:
            who = rt.directory.user(spot.holder).name
        said = spot.words(account_of(target), who, lambda at: f"{at:%Y-%m-%d %H:%M} UTC")
        return f"{said}. This flow does not queue: ask again when it is back"
    if first:
        rt.tasks.notify(request_id, "queued")
    return "queued"


def next_in_line(session: Session, ended: AccessRequest) -> uuid.UUID | None:
    """The request waiting longest for the same account, to be granted as soon as it is
    back (the sweep would find it too, a sweep later)."""
    return session.execute(
        select(AccessRequest.id)
        .where(
            AccessRequest.flow == ended.flow,  # type: ignore[arg-type]
            AccessRequest.target == ended.target,  # type: ignore[arg-type]
            AccessRequest.extends_id.is_(None),  # type: ignore[union-attr]
            AccessRequest.status == S.APPROVED,  # type: ignore[arg-type]
        )
        .order_by(AccessRequest.created_at)  # type: ignore[arg-type]
        .limit(1)
    ).scalar_one_or_none()
