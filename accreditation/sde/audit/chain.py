"""The hash chain: what exactly is hashed.

An event's hash is SHA-256 over its fields joined by newlines, starting with
the previous event's hash. Fields are validated to hold no newline and
`details` is canonical JSON (which escapes newlines), so the joined form is
unambiguous. Verification builds the same string inside the database
(`message_sql`) so that only hashing is left to Python.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64
SEP = "\n"

# Column order of the hashed message; the verifier's SQL uses the same order.
MESSAGE_FIELDS = ("prev_hash", "seq", "ts", "actor", "action", "target", "project", "details")


def canonical_details(details: dict[str, Any] | None) -> str:
    return json.dumps(
        details or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


def message(
    prev_hash: str,
    seq: int,
    ts: str,
    actor: str,
    action: str,
    target: str,
    project: str,
    details: str,
) -> str:
    return SEP.join((prev_hash, str(seq), ts, actor, action, target, project, details))


def event_hash(msg: str) -> str:
    return hashlib.sha256(msg.encode("utf-8")).hexdigest()


def message_sql() -> str:
    """SQL expression building `message(...)` from an audit_events row (SQLite and PostgreSQL)."""
    parts = [f"CAST({f} AS TEXT)" if f == "seq" else f for f in MESSAGE_FIELDS]
    return " || :sep || ".join(parts)
