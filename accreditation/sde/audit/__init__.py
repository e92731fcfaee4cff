"""The tamper-evident audit log every sde component writes to.

Events are appended in the caller's transaction (`record`), hash-chained with
SHA-256, protected by append-only triggers, and anchored by signed checkpoints
kept outside the database (`checkpoint`). `verify` walks the chain and the
checkpoints and names the first bad sequence number.
"""

from sde.audit.checkpoint import CheckpointSigner, checkpoint
from sde.audit.guard import UnauditedWrite
from sde.audit.log import EventIn, append_many, record
from sde.audit.query import list_events
from sde.audit.verify import VerifyReport, verify

__all__ = [
    "CheckpointSigner",
    "EventIn",
    "UnauditedWrite",
    "VerifyReport",
    "append_many",
    "checkpoint",
    "list_events",
    "record",
    "verify",
]
