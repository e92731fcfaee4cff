"""Work volumes: one fixed-size filesystem per person x project, mounted while in use.

A plain Docker volume lives on the host's filesystem, so one workspace could
fill the disk that also holds the state database, the logs and everyone
else's work. Each work volume is therefore a Docker volume (`NAME-work-ID`,
labelled with user and project, see sde.workspaces.names) that holds one
sparse ext4 image of `[workspaces] work_quota` bytes. While a workspace uses it
the hub loop-mounts the image at `POOL_DIR/NAME/work/ID` (nosuid, nodev) and
binds that directory into the workspace at /home/researcher/work: on the cold
path as a bind mount of the container, on the warm path by the pool's claim.
Writes past the quota get ENOSPC inside that filesystem and nowhere else.

The mount is released when the workspace stops (`release`), and at hub start
every mount no live workspace uses is released (`sweep`); one still in use
after a crash of the hub is reused. Nothing is deleted recursively, ever.

A work volume of the old, ambiguous name (`NAME-work-USER-PROJECT`) is carried
over into the new one once, when the new one is created, if exactly one
(person, project) of the registry could own it; otherwise the spawn is refused
and an operator says whose it is (`sde workspaces work carry-over`). The old
volume is left as it was for the operator to remove.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sde.core.config import Settings
from sde.core.errors import Conflict, SdeError
from sde.core.validators import parse_size
from sde.workspaces import hardening, names

IMAGE_NAME = "work.img"
ROLE = "work"
CARRIED_LABEL = "org.sde.carried-from"
LOOP_MAJOR = 7

Claimants = Callable[[str], list[tuple[str, str]]]


def quota_bytes(settings: Settings) -> int:
    """`[workspaces] work_quota` in bytes (its shape and minimum checked by load_settings)."""
    return parse_size(settings.workspaces.work_quota)


def work_root(settings: Settings) -> Path:
    return Path(settings.workspaces.pool_dir) / settings.hub.name / "work"


def _run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SdeError(f"{' '.join(cmd)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done.stdout.strip()


def _mount_source(path: Path) -> str | None:
    """The device mounted at `path` (None when it is no mount point)."""
    source = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), left.split()[4])
        if point == str(path):
            source = right.split()[1]  # the last mount on a point is the visible one
    return source


def _backing_file(device: str) -> str:
    sysfs = Path("/sys/block") / Path(device).name / "loop" / "backing_file"
    try:
        return sysfs.read_text().strip()
    except OSError:
        return ""


def _attached_device(image: Path) -> str:
    """The loop device already serving `image`, if any (a workspace outliving a hub crash).

    Mounting that device again shares its filesystem; attaching the image to a
    second device would give two filesystems over one image, and corrupt it.
    """
    for block in Path("/sys/block").glob("loop*"):
        if _backing_file(block.name) == str(image):
            return f"/dev/{block.name}"
    return ""


def _free_loop_device() -> str:
    """The next free loop device, its node made when /dev lacks it (the hub in a container)."""
    device = _run("losetup", "--find")
    path = Path(device)
    if not path.exists():
        number = int(device.removeprefix("/dev/loop"))
        with contextlib.suppress(FileExistsError):
            os.mknod(path, 0o660 | stat.S_IFBLK, os.makedev(LOOP_MAJOR, number))
    return device


def _mount_image(image: Path, target: Path) -> None:
    source = _mount_source(target)
    if source is not None:
        if _backing_file(source) != str(image):
            raise SdeError(f"{target} is mounted from {source}, not from {image}: unmount it")
        return  # still mounted, e.g. the hub restarted while the workspace ran
    target.mkdir(parents=True, exist_ok=True, mode=0o755)
    attached = _attached_device(image)
    if attached:
        _run("mount", "-t", "ext4", "-o", "nosuid,nodev", attached, str(target))
        return
    for attempt in range(5):
        device = _free_loop_device()
        try:
            # loop=DEVICE sets autoclear: the device is freed with the last mount.
            _run(
                "mount", "-t", "ext4", "-o", f"loop={device},nosuid,nodev", str(image), str(target)
            )
            return
        except SdeError:
            if attempt == 4:
                raise  # else taken by another mount meanwhile: the next free one


def _find_volume(client: Any, name: str) -> Any | None:
    import docker

    try:
        return client.volumes.get(name)
    except docker.errors.NotFound:
        return None


def _volume_labels(settings: Settings, username: str, project: str) -> dict[str, str]:
    from sde.workspaces.network import LABEL

    return {LABEL: ROLE, **names.labels(settings, username, project)}


def _check_owner(volume: Any, username: str, project: str) -> None:
    """Refuse a volume whose labels name anyone else (e.g. made by hand under this name)."""
    have = volume.attrs.get("Labels") or {}
    if (have.get(names.USER_LABEL), have.get(names.PROJECT_LABEL)) != (username, project):
        raise SdeError(
            f"work volume {volume.name} is labelled for {have.get(names.USER_LABEL)}/"
            f"{have.get(names.PROJECT_LABEL)}, not {username}/{project}: not mounting it"
        )


def _legacy_to_carry(
    client: Any, settings: Settings, username: str, project: str, claimants: Claimants
) -> str:
    """The old-named volume to carry into this new one ('' for none); refuses an ambiguous one."""
    legacy = names.legacy_work_volume(settings, username, project)
    if _find_volume(client, legacy) is None:
        return ""
    if client.volumes.list(filters={"label": f"{CARRIED_LABEL}={legacy}"}):
        return ""  # carried over already, to whoever it belonged to
    owners = claimants(legacy)
    if owners != [(username, project)]:
        could = " or ".join(f"{u}/{p}" for u, p in owners)
        raise Conflict(
            f"work volume {legacy} (named before sde's names were unambiguous) could be "
            f"{could}'s: an operator says whose with `sde workspaces work carry-over {legacy} "
            "USER PROJECT`"
        )
    return legacy


def _make_image(
    settings: Settings, client: Any, image: Path, work_id: str, carried_from: str
) -> None:
    """A new sparse ext4 image with the old volume's files in it; appears whole or not at all."""
    source = None
    if carried_from:
        old = _find_volume(client, carried_from)
        if old is None:
            raise SdeError(f"work volume {carried_from}, to be carried over, is gone")
        source = old.attrs["Mountpoint"]
    tmp = image.with_name(f".{IMAGE_NAME}.tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as f:
        f.truncate(quota_bytes(settings))
    uid, gid = hardening.USER.split(":")
    stage = work_root(settings) / f".new-{work_id}"
    try:
        _run("mkfs.ext4", "-q", "-F", "-m", "0", "-E", f"root_owner={uid}:{gid}", str(tmp))
        stage.mkdir(parents=True, exist_ok=True)
        _mount_image(tmp, stage)
        try:
            # The researcher's directory holds their files only; fsck makes it again if needed.
            (stage / "lost+found").rmdir()
            if source is not None:
                _run("cp", "-a", f"{source}/.", f"{stage}/")
            # The workspace user's, whatever the old volume's top directory said.
            os.chown(stage, int(uid), int(gid))
            stage.chmod(0o755)
        finally:
            _run("umount", str(stage))
    except (OSError, SdeError) as exc:
        tmp.unlink(missing_ok=True)
        what = f"carrying {carried_from} over" if carried_from else f"making {image}"
        raise SdeError(f"{what} failed (more than workspaces.work_quota?): {exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            stage.rmdir()
    os.replace(tmp, image)


@dataclass(frozen=True)
class Mounted:
    path: Path
    work_id: str
    volume: str
    carried_from: str  # the old volume copied in by this mount, else ''


def mount(
    client: Any, settings: Settings, username: str, project: str, claimants: Claimants
) -> Mounted:
    """Mount the work volume of (person, project), creating it at first use.

    `claimants(old_name)` answers which (person, project) pairs of the registry
    the old-named volume could belong to.
    """
    name = names.work_volume(settings, username, project)
    volume = _find_volume(client, name)
    if volume is None:
        legacy = _legacy_to_carry(client, settings, username, project, claimants)
        labels = _volume_labels(settings, username, project)
        if legacy:
            labels[CARRIED_LABEL] = legacy
        volume = client.volumes.create(name, labels=labels)
    _check_owner(volume, username, project)
    image = Path(volume.attrs["Mountpoint"]) / IMAGE_NAME
    work_id = names.workspace_id(settings, username, project)
    carried = ""
    if not image.exists():
        # Also after a crash between creating the volume and its image: the label
        # still says what to carry over, and the copy starts again from scratch.
        carried = (volume.attrs.get("Labels") or {}).get(CARRIED_LABEL, "")
        _make_image(settings, client, image, work_id, carried)
    target = work_root(settings) / work_id
    _mount_image(image, target)
    return Mounted(target, work_id, name, carried)


def carry_over(
    client: Any, settings: Settings, legacy: str, username: str, project: str
) -> Mounted:
    """An operator's decision: the old-named volume `legacy` is (person, project)'s."""
    if legacy != names.legacy_work_volume(settings, username, project):
        raise SdeError(f"{legacy} is not the old name of {username}/{project}'s work volume")
    if _find_volume(client, legacy) is None:
        raise SdeError(f"there is no work volume {legacy}")
    if _find_volume(client, names.work_volume(settings, username, project)) is not None:
        raise Conflict(f"{username}/{project} has a work volume already: nothing carried over")
    if client.volumes.list(filters={"label": f"{CARRIED_LABEL}={legacy}"}):
        raise Conflict(f"{legacy} was carried over already")
    done = mount(client, settings, username, project, lambda _: [(username, project)])
    release(settings, done.work_id)
    return done


def release(settings: Settings, work_id: str) -> None:
    """Unmount the work volume's filesystem; its image and files stay."""
    target = work_root(settings) / work_id
    while _mount_source(target) is not None:
        _run("umount", str(target))
    with contextlib.suppress(FileNotFoundError):
        target.rmdir()  # an empty mount point; never anything with files in it


def live_ids(client: Any, settings: Settings) -> set[str]:
    """Work ids of the workspaces that exist now, cold (labels) or claimed from the pool."""
    from sde.workspaces import pool
    from sde.workspaces.engine import list_containers

    every = list_containers(
        client, all=True, filters={"label": f"{pool.INSTALLATION_LABEL}={settings.hub.name}"}
    )
    found = {c.labels[names.WORK_LABEL] for c in every if names.WORK_LABEL in c.labels}
    return found | {owner["work"] for owner in pool.owners(settings).values()}


def sweep(client: Any, settings: Settings) -> list[str]:
    """Release every work mount no workspace uses (at hub start: left by a crash)."""
    root = work_root(settings)
    live = live_ids(client, settings)
    released = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.name not in live and not path.name.startswith("."):
            release(settings, path.name)
            released.append(path.name)
    return released


def legacy_claimants(session: Any, settings: Settings, legacy: str) -> list[tuple[str, str]]:
    """Every (person, project) of the registry whose old work volume name is `legacy`."""
    from sqlalchemy import select

    from sde.registry.models import Person, Project

    rest = legacy.removeprefix(f"{settings.hub.name}-work-")
    people = set(session.scalars(select(Person.username)))
    return sorted(
        (rest[: -len(slug) - 1], slug)
        for slug in session.scalars(select(Project.slug))
        if rest.endswith(f"-{slug}") and rest[: -len(slug) - 1] in people
    )


def listing(client: Any, settings: Settings) -> list[dict[str, str]]:
    """Every work volume of this installation with whose it is, for operators."""
    from sde.workspaces import pool

    filters = {"label": [f"{pool.INSTALLATION_LABEL}={settings.hub.name}"]}
    rows = []
    for volume in client.volumes.list(filters=filters):
        labels = volume.attrs.get("Labels") or {}
        if names.WORK_LABEL not in labels:
            continue
        mounted = _mount_source(work_root(settings) / labels[names.WORK_LABEL]) is not None
        rows.append(
            {
                "volume": volume.name,
                "user": labels.get(names.USER_LABEL, ""),
                "project": labels.get(names.PROJECT_LABEL, ""),
                "mounted": "yes" if mounted else "no",
                "carried_from": labels.get(CARRIED_LABEL, ""),
            }
        )
    return sorted(rows, key=lambda r: (r["user"], r["project"]))
