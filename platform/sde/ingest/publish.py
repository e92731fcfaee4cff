"""Atomic publication: build in a hidden sibling directory, then one rename.

A version directory either exists complete, with its registry row and audit
event, or not at all: the rename happens inside the registry transaction and is
undone if the transaction fails. Published files are made read-only.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from sde.audit import sign_head
from sde.core.config import Settings
from sde.core.db import transaction
from sde.registry import service
from sde.registry.models import Dataset


def build_dir(parent: Path, prefix: str) -> Path:
    """A fresh hidden directory next to where the result will live (same filesystem)."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=parent))


def freeze(folder: Path) -> None:
    """Make a published tree read-only (files 0444, directories 0555)."""
    for root, dirs, files in os.walk(folder):
        for name in files:
            os.chmod(Path(root) / name, 0o444)
        for name in dirs:
            os.chmod(Path(root) / name, 0o555)
    os.chmod(folder, 0o555)


def discard(folder: Path) -> None:
    """Remove a build or published tree, read-only or not."""
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
        return
    if not folder.exists():
        return
    os.chmod(folder, stat.S_IRWXU)

    for root, dirs, _files in os.walk(folder):
        os.chmod(root, stat.S_IRWXU)
        for name in dirs:
            os.chmod(Path(root) / name, stat.S_IRWXU)
    shutil.rmtree(folder)


def version_dir(settings: Settings, dataset: str, version: int) -> Path:
    return settings.datasets_dir / dataset / f"v{version}"


def next_version(engine: Engine, dataset: str) -> int:
    from sqlalchemy import func, select

    from sde.registry.models import DatasetVersion

    with transaction(engine) as session:
        latest = session.scalar(
            select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_name == dataset)
        )
    return (latest or 0) + 1


def publish_version(
    settings: Settings,
    engine: Engine,
    actor: str,
    *,
    build: Path,
    dataset: str,
    version: int,
    manifest_hash: str,
    tables: dict[str, list[str]],
    details: dict[str, Any],
    description: str,
    classification: str,
) -> Path:
    """Move `build` to its version directory and record it, all or nothing."""
    target = version_dir(settings, dataset, version)
    if target.exists():
        # No registry row can name it (the version number is free): an interrupted
        # publication left it behind.
        discard(target)
    freeze(build)
    moved = False
    try:
        with transaction(engine) as session:
            if session.get(Dataset, dataset) is None:
                service.add_dataset(
                    session,
                    actor,
                    name=dataset,
                    description=description,
                    classification=classification,
                )
            service.add_dataset_version(
                session,
                actor,
                name=dataset,
                manifest_hash=manifest_hash,
                path=str(target),
                tables=tables,
                version=version,
                details=details,
            )
            os.rename(build, target)
            moved = True
    except BaseException:
        if moved:
            os.rename(target, build)
        raise
    # Signed only now: a failing checkpoint must not undo a rename that committed.
    sign_head(engine, settings)
    return target
