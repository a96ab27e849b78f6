"""Service clients, trusted only as far as the keyed audit trail vouches for them.

Creating a client writes `service_client_created` (its flows, principal and the SHA-256 of
its token) in the transaction that stores the row, and the row names that event; revoking
writes `service_client_revoked`. A row an insider writes or edits (another token hash, a
wider scope, another principal), or one whose revocation was undone, is not vouched for:
it authenticates nobody and is eligible for nothing (DESIGN.md, invariant 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from app.audit import AuditLog
from app.audit.chain import settle
from app.audit.vouch import undone_after, vouching_event
from app.clients import name_problem, requester_id_of
from app.clients.tokens import new_token, same_hash, token_hash
from app.db import utcnow
from app.flows.schema import Flow
from app.models import ServiceClient

CREATED = "service_client_created"
REVOKED = "service_client_revoked"


@dataclass(frozen=True)
class Client:
    """A service client as the keyed trail vouches for it."""

    name: str
    flows: tuple[str, ...]
    principal: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def requester_id(self) -> str:
        return requester_id_of(self.name)


class ClientError(ValueError):
    """A client cannot be made or changed as asked; the message says why."""


def create(
    session: Session, audit: AuditLog, *, name: str, flows: list[str], principal: str, actor: str
) -> tuple[Client, str]:
    """Make a client and its token; the token is returned once and kept nowhere."""
    problem = name_problem(name)
    if problem:
        raise ClientError(problem)
    if not flows:
        raise ClientError("a client needs at least one flow (--flows f1,f2)")
    if not principal.strip() or not principal.isprintable():
        raise ClientError("the principal must be printable text (an IAM user, an email…)")
    if session.get(ServiceClient, name) is not None:
        # Names are never reused: the trail's `svc:<name>` must mean one client for ever.
        raise ClientError(f"a client named {name!r} exists (or existed); pick another name")
    token = new_token()
    hashed = token_hash(token)
    event = audit.append(
        session,
        event=CREATED,
        actor=actor,
        subject=requester_id_of(name),
        details={"name": name, "flows": flows, "principal": principal, "token_sha256": hashed},
    )
    settle(session)  # the event's seq, for the row to name
    row = ServiceClient(
        name=name,
        token_hash=hashed,
        flows=flows,
        principal=principal,
        created_by=actor,
        audit_seq=event.seq,
    )
    session.add(row)
    session.flush()
    client = find(session, audit, name)
    assert client is not None
    return client, token


def revoke(session: Session, audit: AuditLog, name: str, *, actor: str) -> Client:
    """Revoke a client: its token authenticates nothing from now on, and it is eligible for
    no flow (its live grants end at the next reconciliation pass)."""
    row = session.get(ServiceClient, name)
    if row is None:
        raise ClientError(f"there is no client named {name!r}")
    if row.revoked_at is not None:
        raise ClientError(f"{name} was already revoked ({row.revoked_at:%Y-%m-%d %H:%M} UTC)")
    now = utcnow()
    audit.append(
        session, event=REVOKED, actor=actor, subject=requester_id_of(name), details={"name": name}
    )
    row.revoked_at, row.revoked_by = now, actor
    session.add(row)
    settle(session)
    client = find(session, audit, name)
    assert client is not None
    return client


def find(session: Session, audit: AuditLog, name: str) -> Client | None:
    """The client of this name if the keyed trail vouches for its row (revoked or not)."""
    row = session.get(ServiceClient, name)
    return _vouched(session, audit, row) if row is not None else None


def listing(session: Session, audit: AuditLog) -> list[tuple[str, Client | None]]:
    """Every client row by name, with what the trail vouches for (None: not vouched)."""
    rows = session.execute(select(ServiceClient).order_by(ServiceClient.name)).scalars()  # type: ignore[arg-type]
    return [(row.name, _vouched(session, audit, row)) for row in rows]


def authenticate(session: Session, audit: AuditLog, token: str) -> Client | None:
    """The client this token belongs to (revoked or not), or None for no vouched client."""
    hashed = token_hash(token)
    row = session.execute(
        select(ServiceClient).where(ServiceClient.token_hash == hashed)  # type: ignore[arg-type]
    ).scalar_one_or_none()
    if row is None or not same_hash(row.token_hash, hashed):
        return None
    return _vouched(session, audit, row)


def scope_problem(client: Client | None, name: str, flow: Flow) -> str | None:
    """Why this client may not request this flow (None: it may): it must exist, be
    vouched for and not revoked, have the flow in its token's scope, and the flow must
    admit it by name (`service_clients`), so neither the admin's CLI nor the flow's
    author alone lets a machine in."""
    if client is None:
        return f"service client {name} does not exist (or its record is not vouched for)"
    if client.revoked_at is not None:
        return f"service client {name} was revoked"
    if flow.name not in client.flows:
        return f"service client {name} is not scoped to the {flow.name} flow"
    if name not in flow.service_clients:
        return f"the {flow.name} flow does not admit service client {name}"
    return None


def _vouched(session: Session, audit: AuditLog, row: ServiceClient) -> Client | None:
    subject = requester_id_of(row.name)
    event = vouching_event(
        session,
        audit,
        row.audit_seq,
        event=CREATED,
        subject=subject,
        details={"token_sha256": row.token_hash, "principal": row.principal, "flows": row.flows},
    )
    if event is None:
        return None
    # A revocation counts when the trail holds it, whatever the row says now.
    revocation = undone_after(session, audit, row.audit_seq, event=REVOKED, subject=subject)
    revoked = revocation.at if revocation is not None else None
    return Client(
        name=row.name,
        flows=tuple(row.flows),
        principal=row.principal,
        created_by=row.created_by,
        created_at=event.at,
        revoked_at=revoked or row.revoked_at,
    )
