"""One audited unit of work: commit the write and its events, then sign the new head.

Every process that writes (the CLI, the hub, the API gate, the demo seed) opens
its transactions here, so that none forgets the checkpoint that makes a later
truncation of the chain visible.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sde.audit.checkpoint import sign_head
from sde.core.config import Settings
from sde.core.db import transaction


@contextmanager
def audited_transaction(engine: Engine, settings: Settings) -> Iterator[Session]:
    """A transaction whose commit is followed by a signed checkpoint of the chain head.

    The commit guard (sde.audit.guard) still refuses a commit without an event;
    nothing is signed when the transaction rolls back.
    """
    with transaction(engine) as session:
        yield session
    sign_head(engine, settings)
