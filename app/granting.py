"""Granting at the provider: claim the request, check the audit chain backs it, apply the
access with the one end, activate; a caller that lost its claim takes its access back.

Provider calls happen outside DB transactions (they are slow); the claim before them and the
compare-and-set after them decide that exactly one caller's grant stands.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app import checkouts, lifecycle, proof, queries
from app import held_before as held
from app.accounts import withdrawal_reason
from app.audit import AuditLog
from app.clients import mention
from app.db import lock_holding, utcnow
from app.eligibility import requester_account_problem, requester_principal, requester_verdict
from app.flows.policy import clamp_duration
from app.flows.schema import Flow, provider_of
from app.metrics import process as metrics
from app.models import AccessRequest, RequestStatus
from app.providers.base import GrantSpec, ProviderError
from app.runtime import Runtime
from app.slack.blocks.text import escape

log = logging.getLogger(__name__)
S = RequestStatus


def grant_access(rt: Runtime, request_id: uuid.UUID, owner: str | None = None) -> bool:
    """Apply an approved request at its provider. True when this call activated it.

    The request is claimed first (approved -> granting, with a lease), so only one caller
    talks to the provider; `owner` names the claim (a task's id, so its own retries renew
    it). Raises ProviderError(transient=True) for the task to retry; a permanent error
    fails the request with the provider's words.
    """
    owner = owner or uuid.uuid4().hex
    with rt.db.session() as session:
        request = session.get(AccessRequest, request_id)
        if request is None or request.status not in (S.APPROVED, S.GRANTING):
            return False  # already granted, failed or gone: nothing to do
    if request.extends_id is not None:
        from app.access import extend_access  # the extension path lives with revokes

        return extend_access(rt, request_id)
    loaded = rt.flows.get(request.flow)
    target = loaded.flow.target(request.target) if loaded else None
    # Whole seconds, as providers keep them: start + duration is then the exact end.
    now = utcnow().replace(microsecond=0)
    exclusive = target is not None and checkouts.exclusive(target)
    if exclusive:
        # A shared account: only its holder's request goes to the provider.
        turn = checkouts.wait_turn(rt, request_id, target)
        if turn is not None:
            return _waits(rt, request_id, turn)
    try:
        with rt.db.session() as session:
            claimed = _claim(rt, session, request_id, owner, now)
            if claimed is None:
                return False  # another caller holds a live claim, or it moved on
            if exclusive:
                assert target is not None
                checkouts.take(session, request_id, target.resource)
            refusal = (
                proof.decision_problem(
                    session=session, audit=rt.audit, flow=loaded.flow, request=claimed
                )
                if loaded is not None
                else None
            )
            # Clamped to the flow as it is now, after the claim and before the provider call.
            too_long = (
                clamp_to_flow(session, rt.audit, loaded.flow, claimed)
                if loaded is not None and refusal is None
                else None
            )
            duration, requester_id = claimed.duration, claimed.requester_id
    except (checkouts.Busy, IntegrityError):
        # Checked out by another request meanwhile (the claim was rolled back with it).
        return _waits(rt, request_id, checkouts.wait_turn(rt, request_id, target))
    if loaded is None or target is None:
        return _fail(
            rt,
            request_id,
            f"flow {request.flow!r} or target {request.target!r} no longer exists",
            owner,
        )
    if refusal is not None:
        return _refuse_unproven(rt, request_id, owner, refusal)
    if too_long is not None:
        return _fail(rt, request_id, too_long, owner)

    # The account as Slack says it is now (deactivated, a guest, another organisation…).
    account = requester_account_problem(rt, loaded.flow, requester_id)
    if account is not None:
        return _fail(rt, request_id, f"the requester's Slack account: {account}", owner)
    eligible = requester_verdict(rt, loaded, requester_id)
    if not eligible.allowed:
        return _fail(
            rt,
            request_id,
            f"the requester may no longer request {loaded.flow.name}: {eligible.reason}",
            owner,
        )
    # Checked when the request was made too; checked again because maps and hooks change:
    # a person's through the flow's identity rules (a verified link's email, if asked), a
    # service client's its own, as its keyed record says now.
    mapped = requester_principal(rt, loaded, target.name, requester_id)
    if mapped.value is None:
        return _fail(
            rt, request_id, mapped.problem or "no principal for you at this provider", owner
        )
    principal, provider = mapped.value, provider_of(target)

    resource = target.resource
    # The end, computed once: the provider's own expiry, the DB and the trail all get it.
    expires_at = lifecycle.grant_end(now, duration)
    ends = native_end(rt, provider, resource, principal, expires_at)
    spec = GrantSpec(principal=principal, target=target, expires_at=ends)
    try:
        details = rt.providers.get(provider).grant(spec)
    except ProviderError as exc:
        metrics.provider_error(provider, "grant")
        if exc.transient:
            raise
        return _fail(rt, request_id, str(exc), owner)

    with rt.db.session() as session:
        lock_holding(session, f"{provider}|{resource}|{principal}")
        details = held.settle(
            session,
            rt.audit,
            provider=provider,
            resource=resource,
            principal=principal,
            details=details,
            now=now,
        )
        grant = lifecycle.activate(
            session=session,
            audit=rt.audit,
            request_id=request_id,
            provider=provider,
            principal=principal,
            details=details,
            expires_at=expires_at,
            lease_owner=owner,
            now=now,
            resource=resource,
        )
    if grant is None:
        # Someone else moved the request while we were at the provider (the lease ran
        # out and a second caller failed it, say): what we applied must not outlive that.
        # A membership that was there before is not ours to take.
        if details.get(held.KEY) is not True:
            take_back(rt, request_id, provider=provider, resource=resource, spec=spec)
        return False
    rt.tasks.revoke_at(request_id, grant.expires_at)
    rt.tasks.notify(request_id, "granted")
    log.info("granted request=%s principal=%s until=%s", request_id, principal, grant.expires_at)
    withdraw_if_account_changed(rt, request_id, loaded.flow, requester_id)
    return True


def _waits(rt: Runtime, request_id: uuid.UUID, turn: str | None) -> bool:
    """Not granted now: queued (the sweep tries again), or refused by a flow that does not
    queue. None (free after all, a race): the sweep's next try takes it."""
    if turn not in (None, "queued"):
        _fail(rt, request_id, str(turn))
    return False


def _claim(
    rt: Runtime, session: Session, request_id: uuid.UUID, owner: str, now: datetime
) -> AccessRequest | None:
    return lifecycle.claim_grant(
        session=session,
        audit=rt.audit,
        request_id=request_id,
        owner=owner,
        lease=timedelta(seconds=rt.settings.grant_lease_seconds),
        now=now,
    )


def withdraw_if_account_changed(
    rt: Runtime, request_id: uuid.UUID, flow: Flow, requester_id: str
) -> None:
    """Ask Slack about the requester again now the grant is active. A deactivation (or a
    turn to guest) that Slack announced while we were at the provider found this request
    granting, not active, so the event's handler had nothing to end; the event bumped the
    person's directory generation first, so this asks Slack afresh and ends it here."""
    from app.access import end_grant  # access imports this module

    try:
        problem = requester_account_problem(rt, flow, requester_id)
    except Exception:
        # Slack unreachable: the grant stands as approved; the next event or click decides.
        log.warning("could not re-check the account of request=%s", request_id, exc_info=True)
        return
    if problem is None:
        return
    reason = withdrawal_reason(problem)
    if end_grant(rt, request_id, cause=lifecycle.EndCause.REVOKED, actor="latchkey", reason=reason):
        return  # it already ended some other way
    log.warning("ended request=%s at once: %s", request_id, reason)


def clamp_to_flow(
    session: Session, audit: AuditLog, flow: Flow, request: AccessRequest
) -> str | None:
    """Shorten a claimed request to what its flow allows now (a lowered max_duration),
    recorded by a keyed `duration_clamped` that proof.py takes as the approved duration.
    Returns why it cannot be granted at all when the flow offers nothing that short."""
    allowed, note = clamp_duration(flow, request.duration)
    if allowed is None:
        return note
    if allowed < request.duration:
        decided = int(request.duration.total_seconds())
        request.approved_seconds = int(allowed.total_seconds())
        session.add(request)
        lifecycle.record(
            session,
            audit,
            request,
            "duration_clamped",
            "latchkey",
            {"approved_seconds": request.approved_seconds, "from_seconds": decided, "why": note},
        )
    return None


def take_back(
    rt: Runtime, request_id: uuid.UUID, *, provider: str, resource: str, spec: GrantSpec
) -> bool:
    """Remove access our provider call applied after our claim was lost, unless a live
    grant (this request's, if another caller activated it, or another's) covers it."""
    with rt.db.session() as session:
        lock_holding(session, f"{provider}|{resource}|{spec.principal}")
        covered = queries.latest_live_end(session, provider, resource, spec.principal, utcnow())
    if covered is not None:
        return False
    try:
        details = rt.providers.get(provider).revoke(spec)
    except ProviderError as exc:
        metrics.provider_error(provider, "take_back")
        # Reconciliation's orphan pass finds Latchkey-made access with no live grant.
        log.error("could not take back request=%s after a lost claim: %s", request_id, exc)
        details = {"error": str(exc)}
    with rt.db.session() as session:
        request = session.get(AccessRequest, request_id)
        if request is not None:
            lifecycle.record(
                session,
                rt.audit,
                request,
                "grant_taken_back",
                "latchkey",
                {
                    "principal": spec.principal,
                    "provider": provider,
                    "resource": resource,
                    **details,
                },
            )
    log.warning("took back access of request=%s: its claim was lost", request_id)
    return "error" not in details


def _refuse_unproven(rt: Runtime, request_id: uuid.UUID, owner: str, problem: str) -> bool:
    """A request the audit chain does not vouch for: never granted; audited and alerted."""
    with rt.db.session() as session:
        request = session.get(AccessRequest, request_id)
        if request is not None:
            lifecycle.record(
                session, rt.audit, request, "grant_refused", "latchkey", {"reason": problem}
            )
    log.error("refused to grant request=%s: %s", request_id, problem)
    # Failed first, then told: whoever reads the alert finds the request already failed.
    failed = _fail(rt, request_id, f"refused: {problem}", owner)
    alert_unproven(rt, request_id, f"was not granted: {problem}")
    return failed


def alert_unproven(rt: Runtime, request_id: uuid.UUID, what: str) -> None:
    """Tell the flow's channel that the DB asked for something the audit chain does not back."""
    with rt.db.session() as session:
        request = session.get(AccessRequest, request_id)
    loaded = rt.flows.get(request.flow) if request else None
    if request is None or loaded is None:
        return
    try:
        rt.slack.chat_postMessage(
            channel=request.approval_channel or loaded.flow.channel_for(request.target),
            text=(
                f":rotating_light: Request `{str(request_id)[:8]}` for *{escape(request.target)}* "
                f"by {mention(request.requester_id)} {escape(what)}. Its database row does not match "
                "the keyed audit trail: someone may have edited the database."
            ),
        )
    except Exception:
        log.exception("could not alert the channel about request=%s", request_id)


def native_end(
    rt: Runtime, provider: str, resource: str, principal: str, own: datetime
) -> datetime:
    """The end to hand a native-expiry provider: the latest among this grant and the live
    grants of the same access, since they share one binding or policy at the provider and
    an earlier end written last would cut the others short."""
    if not getattr(rt.providers.get(provider), "native_expiry", False):
        return own
    with rt.db.session() as session:
        latest = queries.latest_live_end(session, provider, resource, principal, utcnow())
    return max(own, latest) if latest else own


def fail_grant(rt: Runtime, request_id: uuid.UUID, error: str, owner: str | None = None) -> bool:
    return _fail(rt, request_id, error, owner)


def _fail(rt: Runtime, request_id: uuid.UUID, error: str, owner: str | None = None) -> bool:
    with rt.db.session() as session:
        failed = lifecycle.fail(
            session=session, audit=rt.audit, request_id=request_id, error=error, lease_owner=owner
        )
        if failed is not None:
            checkouts.release(session, request_id)  # a shared account's next in line goes
    if failed is not None:
        rt.tasks.notify(request_id, "failed")
    log.warning("grant failed request=%s error=%s", request_id, error)
    return False
