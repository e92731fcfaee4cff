"""The tamper-evident audit log every sde component writes to.

Every audited write path is a write operation (`@write_operation("noun.verb")`,
the one place its action is written); inside it, `record` appends the event in
the caller's transaction. Events are hash-chained with SHA-256, protected by
append-only triggers, and anchored by signed checkpoints kept outside the
database (`checkpoint`; `audited_transaction` commits, then signs the new
head). `verify` walks the chain and the checkpoints and names the first bad
sequence number.
"""

from sde.audit.checkpoint import CheckpointSigner, checkpoint, sign_head
from sde.audit.guard import UnauditedWrite
from sde.audit.log import EventIn, append_many, record
from sde.audit.operations import (
    WRITE_OPERATIONS,
    MissingEvent,
    UndeclaredAction,
    write_operation,
)
from sde.audit.query import list_events
from sde.audit.transaction import audited_transaction
from sde.audit.verify import VerifyReport, verify

__all__ = [
    "WRITE_OPERATIONS",
    "CheckpointSigner",
    "EventIn",
    "MissingEvent",
    "UnauditedWrite",
    "UndeclaredAction",
    "VerifyReport",
    "append_many",
    "audited_transaction",
    "checkpoint",
    "list_events",
    "record",
    "sign_head",
    "verify",
    "write_operation",
]
