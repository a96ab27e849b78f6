"""Granting and revoking at the provider, around the state machine's transitions.

Provider calls happen outside DB transactions (they are slow); the transition before
or after them is what decides, by compare-and-set, that exactly one caller acts.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from app import lifecycle, queries
from app.db import utcnow
from app.eligibility import requester_verdict
from app.flows.hooks import HookRequest, HookResult, call_hook
from app.flows.loader import LoadedFlow
from app.flows.policy import auto_decide, principal_for
from app.lifecycle import EndCause
from app.models import AccessRequest, RequestStatus
from app.providers.base import GrantSpec, ProviderError
from app.runtime import Runtime

log = logging.getLogger(__name__)
S = RequestStatus

# A request approved this long ago but not yet active lost its grant task: run it again.
STUCK_APPROVED = timedelta(seconds=60)
# A revoke started this long ago and not finished lost its worker mid-call.
STUCK_REVOKING = timedelta(seconds=120)
REVOKE_RETRY_AFTER = timedelta(seconds=60)


def grant_access(rt: Runtime, request_id: uuid.UUID) -> bool:
    """Apply an approved request at its provider. True when this call activated it.

    Raises ProviderError(transient=True) for the task to retry; a permanent error
    fails the request with the provider's words.
    """
    with rt.db.session() as session:
        request = session.get(AccessRequest, request_id)
        if request is None or request.status != S.APPROVED:
            return False  # already granted, failed or gone: nothing to do
        duration, requester_id = request.duration, request.requester_id
        loaded = rt.flows.get(request.flow)
        target = loaded.flow.target(request.target) if loaded else None
    if loaded is None or target is None:
        return _fail(
            rt, request_id, f"flow {request.flow!r} or target {request.target!r} no longer exists"
        )

    eligible = requester_verdict(rt, loaded, requester_id)
    if not eligible.allowed:
        return _fail(
            rt,
            request_id,
            f"the requester may no longer request {loaded.flow.name}: {eligible.reason}",
        )
    user = rt.directory.user(requester_id)
    principal = principal_for(loaded.flow, user_id=requester_id, email=user.email)
    if not principal:
        return _fail(
            rt, request_id, "your Slack profile has no email and the flow maps no principal for you"
        )

    spec = GrantSpec(principal=principal, target=target, expires_at=utcnow() + duration)
    try:
        details = rt.providers.get(target.provider).grant(spec)
    except ProviderError as exc:
        if exc.transient:
            raise
        return _fail(rt, request_id, str(exc))

    with rt.db.session() as session:
        grant = lifecycle.activate(
            session=session,
            audit=rt.audit,
            request_id=request_id,
            provider=target.provider,
            principal=principal,
            details=details,
        )
    if grant is None:
        return False
    rt.tasks.revoke_at(request_id, grant.expires_at)
    rt.tasks.notify(request_id, "granted")
    log.info("granted request=%s principal=%s until=%s", request_id, principal, grant.expires_at)
    return True


def fail_grant(rt: Runtime, request_id: uuid.UUID, error: str) -> bool:
    return _fail(rt, request_id, error)


def _fail(rt: Runtime, request_id: uuid.UUID, error: str) -> bool:
    with rt.db.session() as session:
        failed = lifecycle.fail(session=session, audit=rt.audit, request_id=request_id, error=error)
    if failed is not None:
        rt.tasks.notify(request_id, "failed")
    log.warning("grant failed request=%s error=%s", request_id, error)
    return False


def revoke_access(
    rt: Runtime, request_id: uuid.UUID, cause: EndCause, actor: str = "latchkey", reason: str = ""
) -> bool:
    """End a grant: take it at the provider unless another live grant still covers it.

    A timed revoke that fires after an extension is a no-op (begin_revoke checks the
    end time), and a revoke already under way is carried on (a retry after a crash).
    """
    with rt.db.session() as session:
        grant = lifecycle.begin_revoke(
            session=session,
            audit=rt.audit,
            request_id=request_id,
            cause=cause,
            actor=actor,
            reason=reason,
        )
        if grant is None:
            request = session.get(AccessRequest, request_id)
            if request is None or request.status != S.REVOKING:
                return False
            grant = queries.grant_of(session, request_id)
            if grant is None:
                return False
        covering = queries.covering_grants(session, grant, utcnow())
        request = session.get(AccessRequest, request_id)
        assert request is not None
        loaded = rt.flows.get(request.flow)
        target = loaded.flow.target(request.target) if loaded else None

    if covering:
        details = {
            "provider_untouched": True,
            "still_covered_by": [str(g.request_id) for g in covering],
        }
    else:
        if target is None:
            error = f"flow {request.flow!r} or target {request.target!r} no longer exists"
            _revoke_failed(rt, request_id, error)
            return False
        spec = GrantSpec(principal=grant.principal, target=target, expires_at=grant.expires_at)
        try:
            details = rt.providers.get(grant.provider).revoke(spec)
        except ProviderError as exc:
            # Never mark revoked without the provider confirming; the sweep retries.
            _revoke_failed(rt, request_id, str(exc))
            return False

    with rt.db.session() as session:
        ended = lifecycle.finish_revoke(
            session=session, audit=rt.audit, request_id=request_id, details=details
        )
    if ended is None:
        return False
    rt.tasks.notify(request_id, "ended")
    log.info(
        "revoked request=%s cause=%s principal=%s", request_id, ended.end_cause, ended.principal
    )
    return True


def _revoke_failed(rt: Runtime, request_id: uuid.UUID, error: str) -> None:
    with rt.db.session() as session:
        moved = lifecycle.revoke_failed(
            session=session, audit=rt.audit, request_id=request_id, error=error
        )
    if moved:
        rt.tasks.notify(request_id, "revoke_failed")
    log.error("revoke failed request=%s error=%s", request_id, error)


def sweep(rt: Runtime) -> dict[str, int]:
    """What the beat runs: act on whatever the DB says is due, whatever the broker lost."""
    now = utcnow()
    with rt.db.session() as session:
        due = queries.due_for_expiry(session, now)
        stuck_approved = queries.stuck(session, S.APPROVED, STUCK_APPROVED, now)
        stuck_revoking = queries.stuck(session, S.REVOKING, STUCK_REVOKING, now)
        failed_revokes = queries.stuck(session, S.REVOKE_FAILED, REVOKE_RETRY_AFTER, now)
    counts = {"expired": 0, "regranted": len(stuck_approved), "revoke_retried": 0}
    for request_id in due + stuck_revoking:
        counts["expired"] += _guarded(revoke_access, rt, request_id, EndCause.EXPIRED)
    for request_id in failed_revokes:
        with rt.db.session() as session:
            retried = lifecycle.retry_revoke(session=session, audit=rt.audit, request_id=request_id)
        if retried:
            counts["revoke_retried"] += _guarded(revoke_access, rt, request_id, EndCause.EXPIRED)
    for request_id in stuck_approved:
        rt.tasks.grant(request_id)
    counts.update(expire_pending(rt, now))
    return counts


def expire_pending(rt: Runtime, now: datetime) -> dict[str, int]:
    """Time out requests nobody decided in the flow's time; remind approvers once halfway."""
    counts = {"timed_out": 0, "reminded": 0}
    with rt.db.session() as session:
        waiting = [(r.id, r.flow, r.created_at, r.reminded_at) for r in queries.pending(session)]
    for request_id, flow_name, created_at, reminded_at in waiting:
        loaded = rt.flows.get(flow_name)
        timeout = loaded.flow.pending_timeout if loaded else None
        if timeout is None:
            continue
        if created_at + timeout <= now:
            with rt.db.session() as session:
                moved = lifecycle.time_out(
                    session=session, audit=rt.audit, request_id=request_id, after=timeout
                )
            if moved:
                counts["timed_out"] += 1
                rt.tasks.notify(request_id, "timed_out")
        elif reminded_at is None and created_at + timeout / 2 <= now:
            with rt.db.session() as session:
                claimed = lifecycle.mark_reminded(
                    session=session, audit=rt.audit, request_id=request_id, now=now
                )
            if claimed:
                counts["reminded"] += 1
                rt.tasks.notify(request_id, "remind")
    return counts


def _guarded(fn, rt: Runtime, request_id: uuid.UUID, cause: EndCause) -> int:  # type: ignore[no-untyped-def]
    # One grant's trouble must not stop the sweep from ending the others.
    try:
        return int(fn(rt, request_id, cause))
    except Exception:
        log.exception("sweep could not revoke request=%s", request_id)
        return 0


def process_submission(rt: Runtime, request_id: uuid.UUID) -> None:
    """After a request is stored: let the flow's hook or auto_approve list decide, then
    post the card and DM the requester."""
    with rt.db.session() as session:
        request = session.get(AccessRequest, request_id)
    if request is None:
        return
    requester_id = request.requester_id
    loaded = rt.flows.get(request.flow)
    if request.status != S.PENDING or loaded is None:
        rt.tasks.notify(request_id, "submitted")
        return
    flow = loaded.flow
    user = rt.directory.user(requester_id)
    hook = run_request_hook(rt, loaded, "on_request", request, user.email)
    groups = rt.directory.members_of(flow.auto_approve.usergroups) if flow.auto_approve else {}
    decision = auto_decide(
        flow,
        requester_id=requester_id,
        email=user.email,
        group_members=groups,
        hook_defined=hook.defined,
        hook_value=hook.value,
        hook_error=hook.error,
        eligible=requester_verdict(rt, loaded, requester_id),
    )
    if decision.outcome == "human":
        rt.tasks.notify(request_id, "submitted")
        return
    with rt.db.session() as session:
        moved = lifecycle.auto_decide(
            session=session,
            audit=rt.audit,
            request_id=request_id,
            approve=decision.outcome == "approve",
            reason=decision.reason,
        )
    if moved is not None and moved.status == S.APPROVED:
        rt.tasks.grant(request_id)
        rt.tasks.notify(request_id, "auto_approved")
    else:
        rt.tasks.notify(request_id, "denied")


def run_request_hook(
    rt: Runtime, loaded: LoadedFlow, name: str, request: AccessRequest, email: str | None
) -> HookResult:
    """Call one of the flow's hooks about a request; a failure is audited on that request."""
    hook = call_hook(loaded, name, HookRequest.of(request, email))
    if hook.error is not None:
        with rt.db.session() as session:
            lifecycle.audit_hook_failure(
                session=session,
                audit=rt.audit,
                request_id=request.id,
                hook=hook.name,
                error=hook.error,
            )
    return hook
