"""Revoking, extending and re-applying at the provider, and what follows a submission.

Provider calls happen outside DB transactions (they are slow); the transition before
or after them is what decides, by compare-and-set, that exactly one caller acts.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from app import checkouts, extensions, lifecycle, proof, queries
from app.clients import is_client
from app.db import lock_holding, utcnow
from app.eligibility import current_members, requester_verdict
from app.flows.hooks import HookRequest, HookResult, call_hook
from app.flows.loader import LoadedFlow
from app.flows.policy import AutoDecision, auto_decide
from app.flows.schema import Flow, Target
from app.granting import alert_unproven, native_end
from app.held_before import held_before
from app.lifecycle import EndCause
from app.metrics import process as metrics
from app.models import AccessRequest, Grant, RequestStatus
from app.providers.base import GrantSpec, ProviderError
from app.queries import grant_of as grant_of_request
from app.runtime import Runtime

log = logging.getLogger(__name__)
S = RequestStatus


def revoke_access(
    rt: Runtime, request_id: uuid.UUID, cause: EndCause, actor: str = "latchkey", reason: str = ""
) -> bool:
    """End a grant: take it at the provider unless another live grant still covers it.

    A timed revoke that fires after an extension is a no-op (begin_revoke checks the
    end time), and a revoke already under way is carried on (a retry after a crash).
    """
    with rt.db.session() as session:
        grant = queries.grant_of(session, request_id)
        if grant is None:
            return False
        # Taken before deciding whether another grant covers this one, so two grants of
        # the same access ending together cannot each leave it to the other.
        lock_holding(session, holding_key(grant))
        began = lifecycle.begin_revoke(
            session=session,
            audit=rt.audit,
            request_id=request_id,
            cause=cause,
            actor=actor,
            reason=reason,
        )
        request = session.get(AccessRequest, request_id, populate_existing=True)
        if request is None or (began is None and request.status != S.REVOKING):
            return False
        session.refresh(grant)
        covering = queries.covering_grants(session, grant, utcnow())
        kept = held_before(session, rt.audit, grant)
        loaded = rt.flows.get(request.flow)
        target = loaded.flow.target(request.target) if loaded else None

    if covering:
        details: dict[str, Any] = {
            "provider_untouched": True,
            "still_covered_by": [str(g.request_id) for g in covering],
        }
    elif kept:
        # A member before the grant (the keyed `granted` event says): left a member.
        details = {"provider_untouched": True, "member_before_grant": True}
    else:
        if target is None:
            error = f"flow {request.flow!r} or target {request.target!r} no longer exists"
            _revoke_failed(rt, request_id, error)
            return False
        spec = GrantSpec(principal=grant.principal, target=target, expires_at=grant.expires_at)
        try:
            details = rt.providers.get(grant.provider).revoke(spec)
        except ProviderError as exc:
            metrics.provider_error(grant.provider, "revoke")
            # Never mark revoked without the provider confirming; the sweep retries.
            _revoke_failed(rt, request_id, str(exc))
            return False

    with rt.db.session() as session:
        lock_holding(session, holding_key(grant))
        ended = lifecycle.finish_revoke(
            session=session, audit=rt.audit, request_id=request_id, details=details
        )
        voided = extensions.void_pending_extensions(
            session=session, audit=rt.audit, request_id=request_id
        )
        # A shared account is back (rotated above): the next in its queue may have it.
        returned = ended is not None and checkouts.release(session, request_id)
        next_up = checkouts.next_in_line(session, request) if returned else None
        # A grant of the same access that became active while our provider call ran
        # would have lost its access to that call: put it back.
        covering_now = [] if covering else queries.covering_grants(session, grant, utcnow())
    if ended is None:
        return False
    if covering_now:
        reapply(rt, covering_now[0], why=f"an overlapping grant ({request_id}) ended")
    for extension_id in voided:
        rt.tasks.notify(extension_id, "void")
    if next_up is not None:
        rt.tasks.grant(next_up)
    rt.tasks.notify(request_id, "ended")
    log.info(
        "revoked request=%s cause=%s principal=%s", request_id, ended.end_cause, ended.principal
    )
    return True


def resource_of(grant: Grant) -> str:
    return grant.resource or grant.target


def holding_key(grant: Grant) -> str:
    return f"{grant.provider}|{resource_of(grant)}|{grant.principal}"


def target_of(rt: Runtime, flow_name: str, target_name: str) -> Target | None:
    loaded = rt.flows.get(flow_name)
    return loaded.flow.target(target_name) if loaded else None


def reapply(rt: Runtime, grant: Grant, *, why: str) -> bool:
    """Apply a live grant at its provider again (drift, or an overlap's revoke); audited."""
    with rt.db.session() as session:
        request = session.get(AccessRequest, grant.request_id)
        if request is None or request.status != S.ACTIVE:
            return False
        target = target_of(rt, request.flow, request.target)
        fresh = session.get(Grant, grant.id, populate_existing=True)
        unbound = (
            proof.binding_problem(session=session, audit=rt.audit, request=request, grant=fresh)
            if fresh is not None
            else "the grant is gone"
        )
        if unbound is not None:
            lifecycle.record(
                session, rt.audit, request, "reapply_refused", "latchkey", {"reason": unbound}
            )
        # A membership someone held before the grant was never Latchkey's to put back: were
        # it added now, the end would leave it (held_before) for ever.
        kept = unbound is None and fresh is not None and held_before(session, rt.audit, fresh)
    if kept:
        log.info("not re-applying request=%s: a membership held before its grant", grant.request_id)
        return False
    if unbound is not None:
        log.error("refused to re-apply request=%s: %s", grant.request_id, unbound)
        alert_unproven(rt, grant.request_id, f"was not re-applied: {unbound}")
        return False
    if target is None:
        return False
    ends = native_end(rt, grant.provider, resource_of(grant), grant.principal, grant.expires_at)
    spec = GrantSpec(principal=grant.principal, target=target, expires_at=ends)
    try:
        details = rt.providers.get(grant.provider).grant(spec)
    except ProviderError as exc:
        metrics.provider_error(grant.provider, "reapply")
        log.error("re-applying request=%s failed: %s", grant.request_id, exc)
        return False
    with rt.db.session() as session:
        request = session.get(AccessRequest, grant.request_id)
        assert request is not None
        lifecycle.record(
            session, rt.audit, request, "access_reapplied", "latchkey", {"why": why, **details}
        )
    return True


def extend_access(rt: Runtime, extension_id: uuid.UUID) -> bool:
    """Add an approved extension's time to its grant; update native expiry where there is one."""
    with rt.db.session() as session:
        extension = session.get(AccessRequest, extension_id)
        loaded = rt.flows.get(extension.flow) if extension else None
        if extension is None or loaded is None:
            return False
        parent = session.get(AccessRequest, extension.extends_id)
        parent_grant = grant_of_request(session, extension.extends_id)
        unproven = proof.decision_problem(
            session=session, audit=rt.audit, flow=loaded.flow, request=extension
        ) or (
            proof.binding_problem(
                session=session, audit=rt.audit, request=parent, grant=parent_grant
            )
            if parent is not None and parent_grant is not None
            else None
        )
        if unproven is not None:
            lifecycle.record(
                session, rt.audit, extension, "extension_refused", "latchkey", {"reason": unproven}
            )
    if unproven is not None:
        # Failed first, then told: whoever reads the alert finds the request already failed.
        with rt.db.session() as session:
            lifecycle.fail(session=session, audit=rt.audit, request_id=extension_id, error=unproven)
        alert_unproven(rt, extension_id, f"was not applied: {unproven}")
        rt.tasks.notify(extension_id, "failed")
        return False
    with rt.db.session() as session:
        applied = extensions.apply_extension(
            session=session,
            audit=rt.audit,
            flow=loaded.flow,
            extension_id=extension_id,
            now=utcnow(),
        )
    if applied.problem:
        rt.tasks.notify(extension_id, "failed")
        return False
    grant = applied.grant
    if grant is None:
        return False
    provider = rt.providers.get(grant.provider)
    target = loaded.flow.target(grant.target)
    if getattr(provider, "native_expiry", False) and target is not None:
        # Granting again with the later end rewrites the provider's own expiry. Should it
        # fail, reconciliation re-applies the grant with its DB end time.
        ends = native_end(rt, grant.provider, resource_of(grant), grant.principal, grant.expires_at)
        try:
            provider.grant(GrantSpec(grant.principal, target, ends))
        except ProviderError as exc:
            metrics.provider_error(grant.provider, "extend")
            log.error("native expiry not moved for request=%s: %s", grant.request_id, exc)
    rt.tasks.revoke_at(grant.request_id, grant.expires_at)
    rt.tasks.notify(extension_id, "applied")
    rt.tasks.notify(grant.request_id, "extended")
    log.info("extended request=%s until=%s", grant.request_id, grant.expires_at)
    return True


def end_grant(
    rt: Runtime, request_id: uuid.UUID, *, cause: EndCause, actor: str, reason: str = ""
) -> str | None:
    """Release or revoke a live grant now, from Slack: claim it here (so a second click
    is told it already ended), then let the worker take it at the provider."""
    with rt.db.session() as session:
        started = lifecycle.begin_revoke(
            session=session,
            audit=rt.audit,
            request_id=request_id,
            cause=cause,
            actor=actor,
            reason=reason,
        )
        request = session.get(AccessRequest, request_id)
    if started is None:
        state = request.status.value if request else "gone"
        return f"This access is not active (it is {state})."
    # Only the id rides in the message: cause, actor and reason were stored just now.
    rt.tasks.revoke_now(request_id)
    rt.tasks.notify(request_id, "ending")
    return None


def _revoke_failed(rt: Runtime, request_id: uuid.UUID, error: str) -> None:
    with rt.db.session() as session:
        moved = lifecycle.revoke_failed(
            session=session, audit=rt.audit, request_id=request_id, error=error
        )
        failures = len(queries.events_of(session, request_id, ("revoke_failed",)))
    if moved:
        # The first failure is told to the channel and the holder; retries update the card.
        rt.tasks.notify(request_id, "revoke_failed" if failures <= 1 else "revoke_failed_again")
    log.error("revoke failed request=%s error=%s", request_id, error)


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
    eligible = requester_verdict(rt, loaded, requester_id)
    if is_client(requester_id):
        # A machine's request is decided by a person in Slack, always: no hook, on-call or
        # group rule approves it (a leaked token must not be enough for access).
        decision = (
            AutoDecision("human", "service clients are approved by a person")
            if eligible.allowed
            else AutoDecision("deny", f"not eligible: {eligible.reason}")
        )
    elif request.extends_id is not None and not flow.extension_needs_approval:
        # The flow lets its limits (checked when the extension was asked for, and again
        # when it is applied) decide; eligibility is checked as for any request.
        decision = (
            AutoDecision("approve", "extension within the flow's limits")
            if eligible.allowed
            else AutoDecision("deny", eligible.reason)
        )
    else:
        email = rt.directory.user(requester_id).email
        hook = run_request_hook(rt, loaded, "on_request", request, email)
        # Membership as of Slack's last change event: auto-approval is a decision too.
        groups = current_members(rt, flow.auto_approve.usergroups) if flow.auto_approve else {}
        on_call, no_incident = _on_call_for_auto_approval(rt, flow, request_id)
        decision = auto_decide(
            flow,
            requester_id=requester_id,
            email=email,
            group_members=groups,
            hook_defined=hook.defined,
            hook_value=hook.value,
            hook_error=hook.error,
            eligible=eligible,
            on_call=on_call,
            no_incident=no_incident,
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


def _on_call_for_auto_approval(
    rt: Runtime, flow: Flow, request_id: uuid.UUID
) -> tuple[dict[str, str], str | None]:
    """Who auto_approve's on-call sources name now, and why auto-approval may not apply
    (no open incident, when the flow asks for one). A failure to ask is audited and
    leaves the request to a human."""
    from app.oncall.people import audited, incident_open, on_call_people

    if flow.auto_approve is None:
        return {}, None
    during = flow.auto_approve_during
    if during is not None:
        is_open = audited(rt, request_id, "auto_approve_during", lambda: incident_open(rt, during))
        if not is_open:
            return {}, during.describe()
    sources = flow.auto_approve.oncall
    if not sources:
        return {}, None
    found = audited(rt, request_id, "auto_approve.oncall", lambda: on_call_people(rt, sources))
    return found or {}, None


def run_request_hook(
    rt: Runtime, loaded: LoadedFlow, name: str, request: AccessRequest, email: str | None
) -> HookResult:
    """Call one of the flow's hooks about a request; a failure is audited on that request."""
    hook = call_hook(loaded, name, HookRequest.of(request, email))
    if hook.error is not None:
        with rt.db.session() as session:
            lifecycle.audit_failed_lookup(
                session=session,
                audit=rt.audit,
                request_id=request.id,
                event="hook_failed",
                details={"hook": hook.name, "error": hook.error},
            )
    return hook
