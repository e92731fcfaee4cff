"""Release records: what left, under which checks, approved by whom, signed.

A release record is one JSON document per release naming every released file
(name, size, SHA-256), the check results and thresholds applied, the tool
versions, and each reviewer's decision and time. It is signed with the
installation's Ed25519 audit checkpoint key (sde.audit.checkpoint: one key,
not a second one), over its canonical JSON (sorted keys, no whitespace, UTF-8)
so the signature covers exactly one byte string. Anyone with the public key
can verify it (`sde airlock verify-release RECORD --public-key FILE`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sde.core.config import Settings

FORMAT = "sde-release-record/1"


def canonical(record: dict[str, Any]) -> bytes:
    """The one byte string a record's signature covers."""
    raise NotImplementedError


def build(
    request_summary: dict[str, Any],
    files: list[dict[str, Any]],
    reviews: list[dict[str, Any]],
    reports: dict[str, Any],
) -> dict[str, Any]:
    """The unsigned record (JSON-able).

    `files`: each {"name", "size", "sha256", ...}; `reviews`: each reviewer's
    {"reviewer", "decision", "at", ...}; `reports`: check Report.as_dict() by sha256.
    """
    raise NotImplementedError


def sign(record: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """{"record": record, "signature": {...}} signed with the audit checkpoint key."""
    raise NotImplementedError


def verify(signed: dict[str, Any], settings: Settings, public_key: Path | None = None) -> None:
    """Raise InvalidInput on a bad signature or a changed record; None when it verifies.

    `public_key`: a PEM file (an outside party's copy); default the installation's.
    """
    raise NotImplementedError
