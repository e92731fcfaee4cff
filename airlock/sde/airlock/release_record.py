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

import base64
import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sde.audit.checkpoint import CheckpointSigner, key_id_of
from sde.core.config import Settings
from sde.core.errors import InvalidInput
from sde.core.files import sha256_file

FORMAT = "sde-release-record/1"
ALGORITHM = "ed25519"
# Prefixed to the canonical bytes before signing, so that a release signature can
# never pass as an audit checkpoint's (the same key signs both) or the reverse.
DOMAIN = b"sde-release-record\n"
FILE_KEYS = ("name", "size", "sha256")
REVIEW_KEYS = ("reviewer", "decision", "at")


class RecordNotVerified(InvalidInput):
    """A release record whose signature does not hold: changed, forged or malformed."""

    exit_code = 1


def canonical(record: dict[str, Any]) -> bytes:
    """The one byte string a record's signature covers: sorted keys, no whitespace, UTF-8."""
    try:
        text = json.dumps(
            record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"a release record must be plain JSON: {exc}") from None
    return text.encode("utf-8")


def _versions() -> dict[str, str]:
    try:
        sde = version("sde")
    except PackageNotFoundError:
        sde = "unknown"
    return {"sde": sde, "python": platform.python_version()}


def build(
    request_summary: dict[str, Any],
    files: list[dict[str, Any]],
    reviews: list[dict[str, Any]],
    reports: dict[str, Any],
) -> dict[str, Any]:
    """The unsigned record (JSON-able); InvalidInput when a part is missing.

    `files`: each {"name", "size", "sha256", ...} (the released outputs only; further
    keys such as the group and media type are kept);
    `reviews`: each reviewer's {"reviewer", "decision", "at", ...}; `reports`:
    `checks.Report.as_dict()` of each file by its sha256. A file without a
    report cannot be released: the record must say what was applied to each.
    """
    if not files:
        raise InvalidInput("a release record needs at least one released file")
    names = set()
    for f in files:
        missing = [k for k in FILE_KEYS if k not in f]
        if missing:
            raise InvalidInput(f"released file {f.get('name')!r} lacks {', '.join(missing)}")
        if f["name"] in names:
            raise InvalidInput(f"released file {f['name']!r} is named twice")
        names.add(f["name"])
        if f["sha256"] not in reports:
            raise InvalidInput(f"released file {f['name']!r} has no check report")
    for r in reviews:
        missing = [k for k in REVIEW_KEYS if k not in r]
        if missing:
            raise InvalidInput(f"review by {r.get('reviewer')!r} lacks {', '.join(missing)}")
    released = {f["sha256"] for f in files}
    tools = _versions()
    thresholds: dict[str, Any] = {}
    for sha in sorted(released):
        report = reports[sha]
        tools.update(report.get("versions", {}))
        thresholds.update(report.get("thresholds", {}))
    record = {
        "format": FORMAT,
        "request": dict(request_summary),
        "files": sorted((dict(f) for f in files), key=lambda f: str(f["name"])),
        "checks": {sha: reports[sha] for sha in sorted(released)},
        "thresholds": thresholds,
        "tools": tools,
        "reviews": sorted(reviews, key=lambda r: (str(r["at"]), str(r["reviewer"]))),
    }
    canonical(record)  # refuse now, not at signing, anything that is not plain JSON
    return record


def sign(record: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """{"record": record, "signature": {...}} signed with the audit checkpoint key."""
    signer = CheckpointSigner(settings.checkpoint_key_path)
    signer.ensure()
    key = signer.private_key()
    signature = key.sign(DOMAIN + canonical(record))
    return {
        "record": record,
        "signature": {
            "algorithm": ALGORITHM,
            "key_id": key_id_of(key.public_key()),
            "value": base64.b64encode(signature).decode(),
        },
    }


def installation_public_key(settings: Settings) -> Ed25519PublicKey:
    """The checkpoint key's public half: its .pub file, else derived from the private key."""
    signer = CheckpointSigner(settings.checkpoint_key_path)
    public = signer.public_key()
    if public is not None:
        return public
    if not signer.key_path.exists():
        raise InvalidInput(
            f"no audit checkpoint key at {signer.key_path}: give the signer's --public-key"
        )
    return signer.private_key().public_key()


def public_key_pem(settings: Settings) -> str:
    """The installation's public key as PEM, to hand to whoever verifies releases."""
    return (
        installation_public_key(settings)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"public key {path}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput(f"public key {path} is not an Ed25519 key")
    return key


def verify(signed: dict[str, Any], settings: Settings, public_key: Path | None = None) -> None:
    """Raise RecordNotVerified on a bad signature or a changed record; None when it verifies.

    `public_key`: a PEM file (an outside party's copy); default the installation's.
    """
    if not isinstance(signed, dict) or set(signed) != {"record", "signature"}:
        raise RecordNotVerified("not a signed release record (expected record and signature)")
    record, sig = signed["record"], signed["signature"]
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise RecordNotVerified(f"not a release record of format {FORMAT}")
    if not isinstance(sig, dict) or sig.get("algorithm") != ALGORITHM:
        raise RecordNotVerified(f"the signature is not {ALGORITHM}")
    key = load_public_key(public_key) if public_key else installation_public_key(settings)
    if sig.get("key_id") != key_id_of(key):
        raise RecordNotVerified(
            f"signed by key {sig.get('key_id')!r}, not by this key ({key_id_of(key)})"
        )
    try:
        raw = base64.b64decode(str(sig.get("value", "")), validate=True)
        key.verify(raw, DOMAIN + canonical(record))
    except (InvalidSignature, ValueError):
        raise RecordNotVerified("the signature does not match the record: it was changed") from None


def check_files(signed: dict[str, Any], folder: Path) -> list[str]:
    """Problems of downloaded files against a (verified) record; empty when all match."""
    problems = []
    for f in signed["record"]["files"]:
        path = folder / f["name"]
        if not path.is_file():
            problems.append(f"{f['name']}: missing")
        elif path.stat().st_size != f["size"] or sha256_file(path) != f["sha256"]:
            problems.append(f"{f['name']}: differs from the released bytes")
    return problems
