"""The domain's tables: AccessRequest, Approval, CardCopy, Grant, AuditEvent, and their neighbours."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, String, Text, UniqueConstraint, text
from sqlalchemy import Enum as SAEnum
from sqlmodel import Field, SQLModel

from app.db import UTCDateTime, utcnow


class RequestStatus(StrEnum):
    """One request's lifecycle; see the state diagram in DESIGN.md."""

    PENDING = "pending"
    APPROVED = "approved"
    # Claimed by one worker, with a lease, for the provider call; see lifecycle.claim_grant.
    GRANTING = "granting"
    ACTIVE = "active"
    REVOKING = "revoking"
    EXPIRED = "expired"
    REVOKED = "revoked"
    REVOKE_FAILED = "revoke_failed"
    DENIED = "denied"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    FAILED = "failed"
    # An extension request whose time was added to the grant it extends.
    EXTENDED = "extended"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {
        RequestStatus.EXPIRED,
        RequestStatus.REVOKED,
        RequestStatus.DENIED,
        RequestStatus.CANCELLED,
        RequestStatus.TIMED_OUT,
        RequestStatus.FAILED,
        RequestStatus.EXTENDED,
    }
)
# States in which the requester holds (or may still hold) access at the provider.
HOLDING_STATUSES = frozenset(
    {RequestStatus.ACTIVE, RequestStatus.REVOKING, RequestStatus.REVOKE_FAILED}
)


class Decision(StrEnum):
    APPROVE = "approve"
    DENY = "deny"


def _enum_column(enum: type[StrEnum]) -> SAEnum:
    # Stored as plain VARCHAR of the values (no PostgreSQL enum type, no CHECK), so adding
    # a state later needs no schema change; read back as the Python enum.
    return SAEnum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=20,
        values_callable=lambda members: [m.value for m in members],
    )


class AccessRequest(SQLModel, table=True):
    """One person's ask for one target of one flow, for a bounded time."""

    __tablename__ = "access_request"
    __table_args__ = (Index("ix_access_request_status", "status"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    flow: str = Field(sa_type=String(100))
    target: str = Field(sa_type=String(200))
    requester_id: str = Field(sa_type=String(32), index=True)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    requested_seconds: int
    # An approver may approve for less than was asked; never more.
    approved_seconds: int | None = None
    status: RequestStatus = Field(
        default=RequestStatus.PENDING, sa_type=_enum_column(RequestStatus)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    approval_channel: str | None = Field(default=None, sa_type=String(32))
    approval_message_ts: str | None = Field(default=None, sa_type=String(32))
    failure: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # When approvers were reminded of this pending request (at most once).
    reminded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Who filed the request when it is for someone else (on_behalf); requester_id is the
    # person the access is for, who is told and may cancel it.
    requested_by: str | None = Field(default=None, sa_type=String(32))
    # How many of the flow's escalation steps were taken (claimed by compare-and-set).
    escalated_steps: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Set on an extension: the request whose grant it would lengthen. An extension goes
    # through the same approval path as a request and never has a Grant of its own.
    extends_id: uuid.UUID | None = Field(default=None, foreign_key="access_request.id", index=True)
    # The requester's latest DM about this request, kept true at every transition (its
    # buttons follow the state: Cancel while pending, Extend / I'm done while active, …).
    dm_channel: str | None = Field(default=None, sa_type=String(32))
    dm_ts: str | None = Field(default=None, sa_type=String(32))
    # While granting: who holds the claim on the provider call, and until when. Only the
    # holder may call the provider or activate; an expired lease may be claimed again.
    lease_owner: str | None = Field(default=None, sa_type=String(64))
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)

    @property
    def duration(self) -> timedelta:
        return timedelta(seconds=self.approved_seconds or self.requested_seconds)


class Approval(SQLModel, table=True):
    """One approver's decision on one request; at most one per approver."""

    __tablename__ = "approval"
    __table_args__ = (UniqueConstraint("request_id", "approver_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    request_id: uuid.UUID = Field(foreign_key="access_request.id", index=True)
    approver_id: str = Field(sa_type=String(32))
    decision: Decision = Field(sa_type=_enum_column(Decision))
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CardCopy(SQLModel, table=True):
    """A copy of a request's card beyond the approval channel's: in an approver's DM (with
    buttons) or shown to a watcher (without). Every copy is re-rendered from the DB at each
    transition, like the channel's card."""

    __tablename__ = "card_copy"
    __table_args__ = (UniqueConstraint("request_id", "channel"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    request_id: uuid.UUID = Field(foreign_key="access_request.id", index=True)
    # The conversation it was posted to (a DM's D… id, or a channel) and its message ts.
    channel: str = Field(sa_type=String(32))
    ts: str = Field(sa_type=String(32))
    # "approver" (buttons that work) or "watcher" (no buttons).
    role: str = Field(sa_type=String(16))
    # Whose DM it is, for an approver's or a watching person's copy.
    user_id: str | None = Field(default=None, sa_type=String(32))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# The end of a grant still held, NULL once it ended: the key of ix_grant_open_expires_at.
# An expression index rather than a partial one, because PostgreSQL keeps statistics of an
# indexed expression: it knows open grants end in the future, where a partial index on
# expires_at would leave it guessing from every ended grant's past end, and joining every
# active request. Queries must say exactly this expression (app.queries.open_end).
# Written with PostgreSQL's line breaks, as it prints the index back, so that alembic's
# autogenerate finds the models and the database alike.
OPEN_END_SQL = "\nCASE\n    WHEN ended_at IS NULL THEN expires_at\n    ELSE NULL\nEND"


class Grant(SQLModel, table=True):
    """What was applied at a provider for a request, and until when."""

    __tablename__ = "grant"
    # Keep the sweeps O(due) whatever the history (migration 0009): open grants by their
    # end, and ended grants by when they ended.
    __table_args__ = (
        Index("ix_grant_open_expires_at", text(f"({OPEN_END_SQL})")),
        Index(
            "ix_grant_ended_at",
            "ended_at",
            postgresql_where=text("ended_at IS NOT NULL"),
            sqlite_where=text("ended_at IS NOT NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    request_id: uuid.UUID = Field(foreign_key="access_request.id", unique=True)
    provider: str = Field(sa_type=String(50))
    target: str = Field(sa_type=String(200))
    # What the target grants at its provider (a group, role ARN, project and role…): two
    # grants of the same resource to the same principal overlap whatever their flows call them.
    resource: str | None = Field(default=None, sa_type=String(700))
    # The cloud identity that holds the access (an IAM user name, a GCP member, …).
    principal: str = Field(sa_type=String(320), index=True)
    granted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Why access ended: expired, released (by the requester) or revoked (by someone).
    end_cause: str | None = Field(default=None, sa_type=String(20))
    ended_by: str | None = Field(default=None, sa_type=String(64))
    end_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The end time the expiry notice was sent for; an extension moves expires_at, so the
    # notice goes out again before the new end.
    notice_sent_for: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AuditEvent(SQLModel, table=True):
    """An append-only, hash-chained record of one thing that happened.

    `seq` is assigned by the appender under a lock (not by the DB), so the chain is a
    gapless sequence: a deleted event shows as a gap, an inserted one as a broken link.
    """

    __tablename__ = "audit_event"

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    at: datetime = Field(sa_type=UTCDateTime)
    event: str = Field(sa_type=String(50), index=True)
    actor: str = Field(sa_type=String(64))
    request_id: uuid.UUID | None = Field(default=None, index=True)
    flow: str | None = Field(default=None, sa_type=String(100))
    target: str | None = Field(default=None, sa_type=String(200))
    subject: str | None = Field(default=None, sa_type=String(64))
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(sa_type=String(64))
    hash: str = Field(sa_type=String(64))


class AuditDelivery(SQLModel, table=True):
    """How far a sink (the SIEM webhook) has received the audit chain, and its retry state."""

    __tablename__ = "audit_delivery"

    sink: str = Field(sa_type=String(50), primary_key=True)
    last_seq: int = Field(default=0, sa_type=BigInteger)
    failures: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class Heartbeat(SQLModel, table=True):
    """The last sign of life of one process (a worker, the beat), for /healthz."""

    __tablename__ = "heartbeat"

    process: str = Field(sa_type=String(200), primary_key=True)
    # worker | beat | web
    kind: str = Field(sa_type=String(20), index=True)
    at: datetime = Field(sa_type=UTCDateTime)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class RequestDraft(SQLModel, table=True):
    """A request waiting for its break-glass confirmation: kept here, so the confirm view
    carries only this id in private_metadata (Slack allows 3,000 characters there, and a
    view's metadata is not ours to trust). Single use; stale after a few minutes."""

    __tablename__ = "request_draft"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: str = Field(sa_type=String(32))
    flow: str = Field(sa_type=String(100))
    target: str = Field(sa_type=String(200))
    seconds: int
    reason: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Passkey(SQLModel, table=True):
    """A person's registered passkey (WebAuthn credential). The row alone proves nothing:
    `audit_seq` names the keyed `passkey_registered` event that must vouch for this exact
    credential and public key (app.passkeys.credentials), so a key written into the DB by
    someone without the audit key is never accepted."""

    __tablename__ = "passkey"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: str = Field(sa_type=String(32), index=True)
    # base64url, as browsers and the audit trail show it.
    credential_id: str = Field(sa_type=String(1400), unique=True)
    public_key: str = Field(sa_column=Column(Text, nullable=False))
    sign_count: int = 0
    audit_seq: int = Field(sa_type=BigInteger)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebLink(SQLModel, table=True):
    """A single-use, short-lived link to one of the web's pages, made for one Slack user:
    to set up a passkey, or to confirm one approval with it. Only a hash of its token is
    kept, so the DB alone cannot open one."""

    __tablename__ = "web_link"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    token_hash: str = Field(sa_type=String(64), unique=True)
    # passkey_setup | passkey_approval
    purpose: str = Field(sa_type=String(32))
    user_id: str = Field(sa_type=String(32))
    request_id: uuid.UUID | None = Field(default=None, foreign_key="access_request.id")
    # What the approval confirms when the approver chose a shorter time (seconds).
    duration_seconds: int | None = None
    # The WebAuthn challenge last handed to the page (base64url), checked once.
    challenge: str | None = Field(default=None, sa_type=String(200))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class IdentityLink(SQLModel, table=True):
    """A Slack user's verified identity at the company's OpenID Connect provider: grants of
    flows with `Identity(verified=True)` go to its email, never to the Slack profile's.
    Trusted only as the keyed `identity_linked` event named by `audit_seq` vouches for it
    (app.identity_links.store)."""

    __tablename__ = "identity_link"

    user_id: str = Field(sa_type=String(32), primary_key=True)
    issuer: str = Field(sa_type=String(500))
    subject: str = Field(sa_type=String(255))
    email: str = Field(sa_type=String(320))
    audit_seq: int = Field(sa_type=BigInteger)
    linked_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AccountCheckout(SQLModel, table=True):
    """A shared account out to one holder (an exclusive target: PostgresAccountTarget).
    The primary key is the account, so two requests can never hold it at once, whatever
    races: the second insert fails and that request waits its turn (app.checkouts). The
    row goes when the account is back (rotated at check-in) or the grant failed."""

    __tablename__ = "account_checkout"

    resource: str = Field(sa_type=String(700), primary_key=True)
    request_id: uuid.UUID = Field(foreign_key="access_request.id", unique=True)
    taken_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ServiceClient(SQLModel, table=True):
    """A non-human requester (a CI pipeline, a job) that asks for access over the web's API
    with a bearer token, scoped to named flows. Only the token's SHA-256 is kept. Like an
    identity link, the row is trusted only as the keyed `service_client_created` event
    named by `audit_seq` vouches for it, and not after a keyed `service_client_revoked`
    (app.clients.store): an insider who edits the row (another token, principal or flow)
    gets a client that no longer exists."""

    __tablename__ = "service_client"

    name: str = Field(sa_type=String(28), primary_key=True)
    token_hash: str = Field(sa_type=String(64), unique=True)
    flows: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Who the client is at the providers (an IAM user, a GCP service account, an email…).
    principal: str = Field(sa_type=String(320))
    created_by: str = Field(sa_type=String(64))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_by: str | None = Field(default=None, sa_type=String(64))
    audit_seq: int = Field(sa_type=BigInteger)


class ApiRequestKey(SQLModel, table=True):
    """A service client's Idempotency-Key for one POST /api/requests: a pipeline that did
    not hear the answer and sends the same request again gets the first one back, not a
    second card for the approvers. The key is the client's own (client, key)."""

    __tablename__ = "api_request_key"

    client: str = Field(sa_type=String(28), primary_key=True)
    key: str = Field(sa_type=String(100), primary_key=True)
    request_id: uuid.UUID = Field(foreign_key="access_request.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
