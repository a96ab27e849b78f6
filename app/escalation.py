"""Escalation: when a request waits too long for a decision, the flow's next step is told
and, where the step says so, may decide it.

Steps are taken by the beat's sweep (app.sweeps), each once (compare-and-set on the
request), and recorded as a keyed `escalated` event naming its people. Who the step made
an approver is read back from those keyed events at each click, like every other check
of who may decide: an edited database row adds nobody.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from app import lifecycle
from app.eligibility import current_members, requester_email
from app.flows.loader import LoadedFlow
from app.flows.schema import Escalation, format_duration
from app.models import AccessRequest, AuditEvent
from app.queries import events_of
from app.runtime import Runtime


def step_details(
    rt: Runtime, loaded: LoadedFlow, request_id: uuid.UUID, step: Escalation
) -> dict[str, Any]:
    """What the `escalated` event records: the step's people, with whoever its on-call
    sources and its hook name at this moment (a failure of either is audited; the rest
    are still told)."""
    from app.oncall.people import audited, on_call_people

    details: dict[str, Any] = {
        "after_seconds": int(step.after.total_seconds()),
        "users": list(step.to.users),
        "usergroups": list(step.to.usergroups),
        "may_approve": step.may_approve,
    }
    if step.to.oncall:
        found = audited(
            rt, request_id, "escalation.oncall", lambda: on_call_people(rt, step.to.oncall)
        )
        details["oncall"] = [source.describe() for source in step.to.oncall]
        details["oncall_users"] = sorted(found or ())
    if step.hook is not None:
        details["hook"] = step.hook
        details["hook_users"] = _named_by_hook(rt, loaded, request_id, step.hook)
    return details


def _named_by_hook(rt: Runtime, loaded: LoadedFlow, request_id: uuid.UUID, hook: str) -> list[str]:
    """The Slack users a step's hook names: ids as they are, emails looked up in Slack."""
    from app.access import run_request_hook

    with rt.db.session() as session:
        request = session.get(AccessRequest, request_id)
    if request is None:
        return []
    email = requester_email(rt, request.requester_id)
    named = run_request_hook(rt, loaded, hook, request, email).names()
    found = {n if "@" not in n else rt.directory.user_id_for_email(n) for n in named}
    return sorted(u for u in found if u and u[0] in "UW")


def take_due_steps(
    rt: Runtime,
    loaded: LoadedFlow,
    request_id: uuid.UUID,
    created_at: datetime,
    taken: int,
    now: datetime,
) -> int:
    """Take every step of the flow now due for this pending request; how many this call took."""
    flow = loaded.flow
    done = 0
    for index in range(taken, len(flow.escalation)):
        step = flow.escalation[index]
        if created_at + step.after > now:
            break
        with rt.db.session() as session:
            claimed = lifecycle.escalate(
                session=session,
                audit=rt.audit,
                request_id=request_id,
                step=index,
                details=step_details(rt, loaded, request_id, step),
            )
        if not claimed:
            break  # another sweep took it (and tells)
        done += 1
        rt.tasks.notify(request_id, "escalated")
    return done


def steps_taken(rt: Runtime, session: Session, request: AccessRequest) -> list[AuditEvent]:
    """The keyed `escalated` events of this request, in order."""
    return [
        e
        for e in events_of(session, request.id, (lifecycle.ESCALATED,))
        if rt.audit.authentic(e) and e.flow == request.flow and e.target == request.target
    ]


def people_of(rt: Runtime, event: AuditEvent) -> list[str]:
    """The people an escalation step reached: its users and its groups' members now."""
    details = event.details
    people = [*details.get("users", []), *details.get("oncall_users", [])]
    people += details.get("hook_users", [])
    groups = tuple(event.details.get("usergroups", []))
    for members in current_members(rt, groups).values():
        people.extend(sorted(members))
    return list(dict.fromkeys(people))


def escalated_approvers(rt: Runtime, request: AccessRequest) -> frozenset[str]:
    """Who an escalation step with `may_approve` made an approver of this request."""

    with rt.db.session() as session:
        events = steps_taken(rt, session, request)
    return frozenset(
        person for e in events if e.details.get("may_approve") for person in people_of(rt, e)
    )


def escalation_line(event: AuditEvent) -> str:
    """How a step taken reads on the card."""
    after = format_duration(timedelta(seconds=int(event.details.get("after_seconds", 0))))
    details = event.details
    named = (*details.get("users", []), *details.get("oncall_users", []))
    who = [f"<@{u}>" for u in (*named, *details.get("hook_users", []))]
    who += [f"<!subteam^{g}>" for g in details.get("usergroups", [])]
    if details.get("oncall") and not details.get("oncall_users"):
        who.append(f"nobody found {' or '.join(details['oncall'])}")
    role = "may now approve" if event.details.get("may_approve") else "told"
    return f":mega: No decision after {after}: escalated to {', '.join(who)} ({role})"
