"""The audit log: one hash-chained JSON line per exchange decision, allow or deny; never a token.

`record` builds the lines (pure), `chain` links and verifies them (pure), `log` writes them to
a file and `resume` reads its tail back (a torn last line is moved aside and noted), `guard`
tracks whether the log takes lines (readiness, denials refused unrecorded, and the note that
records them). Signed checkpoints of the chain head: `note` (C2SP
signed notes) and `checkpoint` (their body, and the check of a file against them) are pure;
`signing` keeps the key, `stores` and `publish` publish them off the host, `published`
gathers them for `kubegate audit verify`, `settings` reads their configuration.
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
