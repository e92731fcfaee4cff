"""The pool's directories on the host and the mounts made in them.

Everything here runs as root on the Docker host: the slots directory is a shared
mount so that what is mounted into a slot later reaches the container bound from
it (`rslave` inside), and a bind is made read-only in a private staging directory
before it is moved into the slot, so that the container never sees it writable.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from sde.core.config import Settings
from sde.core.errors import ConfigError, SdeError

if TYPE_CHECKING:
    from sde.workspaces.pool.slots import Slot


def pool_root(settings: Settings) -> Path:
    return Path(settings.workspaces.pool_dir) / settings.hub.name


def slots_root(settings: Settings) -> Path:
    return pool_root(settings) / "slots"


def staging_root(settings: Settings) -> Path:
    return pool_root(settings) / "slot-staging"


def state_file(settings: Settings) -> Path:
    """What the filler found when it started (`check_propagation`), for `pool status`."""
    return pool_root(settings) / "state.json"


def run(*cmd: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SdeError(f"{' '.join(cmd)}: {done.stderr.strip() or f'exit {done.returncode}'}")


def mount_points() -> dict[str, str]:
    """Mount point -> its optional fields (propagation) from /proc/self/mountinfo."""
    found: dict[str, str] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left = line.split(" - ", 1)[0].split()
        # The kernel escapes space, tab, newline and backslash as \ooo octal.
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), left[4])
        found[point] = " ".join(left[6:])
    return found


def is_mount(path: Path) -> bool:
    """True when `path` is a mount point (os.path.ismount misses same-device binds)."""
    return str(path) in mount_points()


def prepare_host(settings: Settings) -> None:
    """Make the slots directory a shared mount and the staging directory a private one.

    Mounts made later under the shared slots directory propagate into the pool
    containers bound from it; the staging directory, private, is where a bind
    gets its read-only flag before it is moved into a slot, so that the copy
    propagated into the container is read-only from the first moment.
    """
    if os.geteuid() != 0:
        raise ConfigError(
            "workspaces.warm_pool: the warm pool mounts data into running containers and "
            "needs the hub to run as root on the Docker host; set it to 0 otherwise"
        )
    found = mount_points()
    wanted = ((slots_root(settings), "--make-rshared"), (staging_root(settings), "--make-private"))
    for path, mode in wanted:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if str(path) not in found:
            run("mount", "--bind", str(path), str(path))
        shared = "shared:" in mount_points().get(str(path), "")
        if shared != (mode == "--make-rshared"):
            run("mount", mode, str(path))


def teardown_host(settings: Settings) -> bool:
    """Undo `prepare_host` once no slot is left; False (nothing undone) while any is."""
    root, staging = slots_root(settings), staging_root(settings)
    if root.is_dir() and any(root.iterdir()):
        return False
    for path in (root, staging):
        while is_mount(path):
            run("umount", str(path))
        with contextlib.suppress(FileNotFoundError):
            path.rmdir()
    state_file(settings).unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError, OSError):
        pool_root(settings).rmdir()
    return True


def attach(settings: Settings, slot: Slot, source: Path, target: Path, read_only: bool) -> None:
    """Bind `source` onto the slot directory `target`, flags set before it propagates."""
    stage = staging_root(settings) / f"{slot.name}-{target.name}"
    stage.mkdir()  # exists only while one attach (of the slot's one claimer) runs
    try:
        flags = "ro,nosuid,nodev" if read_only else "nosuid,nodev"
        run("mount", "--bind", "-o", flags, str(source), str(stage))
        try:
            run("mount", "--move", str(stage), str(target))
        except SdeError:
            run("umount", str(stage))
            raise
    finally:
        stage.rmdir()
