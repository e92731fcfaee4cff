"""Released ingress files into the project's /ingress folder, each file atomically.

The folder is `sde.workspaces.hardening.ingress_dir` (SDE_HOME/projects/<p>/ingress),
bound read-only at /ingress in every workspace of the project, cold and warm.
It is never replaced, only added to, so running workspaces see a release at
once. Each file is copied from the airlock's store (its bytes verified against
the reviewed hash first: `snapshots.open_verified`) into a staging folder beside
it on the same filesystem, flushed, and renamed into place: a workspace sees the
whole file or none of it. A later release of the same name replaces the file
(the release records say which bytes were there when). Publishing is
idempotent: `publish` again writes the same bytes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from sde.airlock import snapshots
from sde.core.config import Settings
from sde.core.errors import InvalidInput
from sde.workspaces.hardening import ensure_ingress_dir


def staging_dir(settings: Settings, project: str) -> Path:
    """Beside the ingress folder (same filesystem, so a rename moves a whole file in)."""
    return ensure_ingress_dir(settings, project).parent / ".ingress-staging"


def _target(folder: Path, name: str) -> Path:
    parts = PurePosixPath(name).parts
    if not parts or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise InvalidInput(f"{name!r} is not a name an ingress file can have")
    return folder.joinpath(*parts)


def publish(settings: Settings, project: str, files: list[tuple[str, str]]) -> list[Path]:
    """Copy each (name, sha256) from the store into the project's ingress folder."""
    folder = ensure_ingress_dir(settings, project)
    staging = staging_dir(settings, project)
    staging.mkdir(mode=0o700, exist_ok=True)
    targets = [(_target(folder, name), sha) for name, sha in files]  # all names checked first
    done = []
    for target, sha in targets:
        source = snapshots.open_verified(settings.airlock_store_dir, sha)
        fd, tmp = tempfile.mkstemp(dir=staging, prefix="publish-")
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o444)  # read-only and readable by the workspace's user
            parent = target.parent
            missing = []
            while parent != folder and not parent.exists():
                missing.append(parent)
                parent = parent.parent
            for sub in reversed(missing):
                sub.mkdir(mode=0o755, exist_ok=True)
                sub.chmod(0o755)
            os.rename(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        done.append(target)
    dirfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
    return done
