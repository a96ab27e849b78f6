"""The audit family: the hash chain (chain), its export (export), the SIEM webhook (sink),
the access reports (report), the key's checks and rotation (keys), signed checkpoints of
the chain's head (checkpoint) and their commands (cli).

`from app.audit import AuditLog` is the chain's writer, used by every state change.
"""

from app.audit.chain import (
    GENESIS,
    AuditKeyMismatch,
    AuditLog,
    VerifyResult,
    as_record,
    canonical,
    chain_hash,
    count_events,
    hashed_fields,
)

__all__ = [
    "GENESIS",
    "AuditKeyMismatch",
    "AuditLog",
    "VerifyResult",
    "as_record",
    "canonical",
    "chain_hash",
    "count_events",
    "hashed_fields",
]
