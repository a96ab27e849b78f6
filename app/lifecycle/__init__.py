"""The state machine: every transition of an AccessRequest, each compare-and-set and audited.

Functions take an explicit session and write the audit event in that same transaction;
the caller's `db.session()` block commits both or neither. `core` is the one transition
function; `requests` the life before access; `grants` the life of the access.
"""

from app.lifecycle.core import DecisionOutcome, EndCause, lock_request, record, transition
from app.lifecycle.grants import (
    activate,
    begin_revoke,
    claim_grant,
    fail,
    finish_revoke,
    grant_end,
    mark_noticed,
    retry_revoke,
    revoke_failed,
)
from app.lifecycle.requests import (
    BREAK_GLASS_REVIEWS,
    ESCALATED,
    audit_failed_lookup,
    auto_decide,
    break_glass,
    cancel,
    decide,
    escalate,
    mark_reminded,
    review_break_glass,
    submit,
    time_out,
)

__all__ = [
    "BREAK_GLASS_REVIEWS",
    "ESCALATED",
    "DecisionOutcome",
    "EndCause",
    "activate",
    "audit_failed_lookup",
    "auto_decide",
    "begin_revoke",
    "break_glass",
    "cancel",
    "claim_grant",
    "decide",
    "escalate",
    "fail",
    "finish_revoke",
    "grant_end",
    "lock_request",
    "mark_noticed",
    "mark_reminded",
    "record",
    "retry_revoke",
    "review_break_glass",
    "revoke_failed",
    "submit",
    "time_out",
    "transition",
]
