"""The audit log: one hash-chained JSON line per exchange decision, allow or deny; never a token.

`record` builds the lines (pure), `chain` links and verifies them (pure), `log` writes them to
a file (the only I/O).
"""

from exchanger.audit.chain import ChainHead, ChainReport, verify_chain
from exchanger.audit.log import AuditLog, AuditLogCorruptError, AuditSink, AuditWriteError
from exchanger.audit.record import AuditRecord, Caller, GrantRecord, allow_record, deny_record

__all__ = [
    "AuditLog",
    "AuditLogCorruptError",
    "AuditRecord",
    "AuditSink",
    "AuditWriteError",
    "Caller",
    "ChainHead",
    "ChainReport",
    "GrantRecord",
    "allow_record",
    "deny_record",
    "verify_chain",
]
