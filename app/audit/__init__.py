"""The audit family: the hash chain (chain), its export (export), the SIEM webhook (sink),
the access reports (report) and their commands (cli).

`from app.audit import AuditLog` is the chain's writer, used by every state change.
"""

from app.audit.chain import (
    GENESIS,
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
    "AuditLog",
    "VerifyResult",
    "as_record",
    "canonical",
    "chain_hash",
    "count_events",
    "hashed_fields",
]
