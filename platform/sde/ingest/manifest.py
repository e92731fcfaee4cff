"""Manifests: what a published directory holds and how it was made, hashed.

A manifest is canonical JSON (sorted keys, no spaces) in `manifest.json`; its
SHA-256 is what the registry and the audit log record, so a reader can check that
the files in front of them are the ones that were published.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sde.core.errors import SdeError
from sde.core.files import sha256_file

MANIFEST = "manifest.json"


def canonical(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), default=str).encode()


def write(folder: Path, manifest: dict[str, Any]) -> str:
    """Write `manifest.json` into `folder`; returns its SHA-256."""
    data = canonical(manifest)
    (folder / MANIFEST).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def read(folder: Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """Load a manifest, checking its hash when the expected one is known."""
    path = folder / MANIFEST
    if not path.is_file():
        raise SdeError(f"{folder} has no {MANIFEST}")
    data = path.read_bytes()
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise SdeError(f"{path} does not match the hash recorded at publication")
    loaded: dict[str, Any] = json.loads(data)
    return loaded


def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists is present with its recorded hash."""
    for rel, entry in manifest.get("files", {}).items():
        path = folder / rel
        if not path.is_file():
            raise SdeError(f"{path} is missing (listed in the manifest)")
        if sha256_file(path) != entry["sha256"]:
            raise SdeError(f"{path} does not match the hash in its manifest")
