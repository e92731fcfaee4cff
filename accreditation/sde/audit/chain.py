"""The hash chain: what exactly is hashed.

Each event is stored as `body`, canonical JSON with a fixed key order:

    {"prev":"<64 hex>","ts":"...","actor":"...","action":"...","target":"...",
     "project":"...","details":{...sorted keys...}}

and `hash` = SHA-256 of the body's UTF-8 bytes. The previous event's hash
sits at a fixed offset (`PREV_SLICE`), so the verifier checks links without
parsing JSON. One stored string per event keeps verification close to the
cost of hashing alone.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64
_PREFIX = '{"prev":"'
PREV_SLICE = slice(len(_PREFIX), len(_PREFIX) + 64)


def canonical_details(details: dict[str, Any] | None) -> str:
    return json.dumps(
        details or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


def _s(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def event_body(
    prev_hash: str,
    ts: str,
    actor: str,
    action: str,
    target: str,
    project: str,
    details: dict[str, Any] | None,
) -> str:
    if len(prev_hash) != 64:
        raise ValueError("previous hash must be 64 hex characters")
    return (
        f'{_PREFIX}{prev_hash}","ts":{_s(ts)},"actor":{_s(actor)},"action":{_s(action)},'
        f'"target":{_s(target)},"project":{_s(project)},"details":{canonical_details(details)}}}'
    )


def event_hash(body: str | bytes) -> str:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return hashlib.sha256(data).hexdigest()


def parse_body(body: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(body)
    return result
