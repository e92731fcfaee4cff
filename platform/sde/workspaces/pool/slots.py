"""Slots: the host directories of one pool container, and who holds them.

A slot is `<pool_dir>/<installation>/slots/<name>/` with `data`, `work` and `ingress`
(bound into the container with `rslave`, empty until a claim mounts onto them), `ctl`
(the container's read-only /run/sde, where the claim file appears), and beside
them, outside everything the container sees, the `taken` mark and the owner
record of a claimed container.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sde.core.config import Settings
from sde.core.errors import SdeError
from sde.core.files import write_atomic
from sde.workspaces.pool.mounts import is_mount, run, slots_root

CLAIM_DIR = "/run/sde"
CLAIM_NAME = "claim.json"
# Whose a claimed container is (user, project, work id): Docker labels are fixed when a
# container is created, before anyone claims it. Beside the slot's directories, so
# outside everything the container sees.
OWNER_NAME = "owner.json"


@dataclass(frozen=True)
class Slot:
    name: str
    path: Path

    @property
    def data(self) -> Path:
        return self.path / "data"

    @property
    def work(self) -> Path:
        return self.path / "work"

    @property
    def ingress(self) -> Path:
        return self.path / "ingress"

    @property
    def ctl(self) -> Path:
        return self.path / "ctl"

    @property
    def claim_file(self) -> Path:
        return self.ctl / CLAIM_NAME

    @property
    def taken(self) -> Path:
        return self.path / "taken"

    @property
    def owner_file(self) -> Path:
        return self.path / OWNER_NAME


def slot_of(settings: Settings, name: str) -> Slot:
    if not name.isalnum():
        raise SdeError(f"not a slot name: {name!r}")
    return Slot(name, slots_root(settings) / name)


def new_slot(settings: Settings) -> Slot:
    slot = slot_of(settings, secrets.token_hex(6))
    for path in (slot.path, slot.data, slot.work, slot.ingress, slot.ctl):
        path.mkdir(mode=0o755)
    return slot


def take(slot: Slot) -> bool:
    """Mark the slot taken; True for exactly one caller, across threads and processes.

    Docker's rename cannot serve: it addresses the container by id, so a second
    rename of a renamed container succeeds too. The mark is outside every
    directory the container sees.
    """
    try:
        os.close(os.open(slot.taken, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    except FileNotFoundError:
        return False  # released meanwhile
    return True


def write_claim(slot: Slot, claim: dict[str, Any], uid: int, gid: int) -> None:
    """The server's environment and command line, readable by the workspace user only."""
    # The waiting process polls for the name: it appears whole or not at all.
    write_atomic(slot.claim_file, json.dumps(claim), mode=0o400, owner=(uid, gid))


def write_owner(slot: Slot, owner: dict[str, str]) -> None:
    write_atomic(slot.owner_file, json.dumps(owner))


def owners(settings: Settings) -> dict[str, dict[str, str]]:
    """Slot name -> whose its claimed container is ({"user", "project", "work"})."""
    found = {}
    root = slots_root(settings)
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            found[path.name] = json.loads((path / OWNER_NAME).read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            continue
    return found


def release(settings: Settings, name: str) -> None:
    """Unmount a slot's data and work directories and delete the slot.

    Nothing is ever deleted recursively: a directory that is still a mount point
    (or not empty) stops the release with an error, so a failure cannot reach
    into a person's work volume or the project data.
    """
    slot = slot_of(settings, name)
    if not slot.path.exists():
        return
    for target in (slot.data, slot.work, slot.ingress):
        if is_mount(target):
            try:
                run("umount", str(target))
            except SdeError:
                # Released at the same moment by the spawner and the filler's sweep:
                # only a mount that is still there is a failure.
                if is_mount(target):
                    raise
    # With the temporary files of a write that was killed half-way.
    leftovers = [*slot.ctl.glob(f".{CLAIM_NAME}.*"), *slot.path.glob(f".{OWNER_NAME}.*")]
    for leftover in (slot.claim_file, slot.owner_file, slot.taken, *leftovers):
        leftover.unlink(missing_ok=True)
    for path in (slot.data, slot.work, slot.ingress, slot.ctl, slot.path):
        with contextlib.suppress(FileNotFoundError):
            path.rmdir()
