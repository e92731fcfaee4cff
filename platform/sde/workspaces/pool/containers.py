"""Pool containers: started warming in a slot of their own, claimed by a spawn, removed.

A pool container is a workspace container with nothing of anyone in it: the same
image, hardening, limits, network and read-only Jupyter configuration as every
workspace, its default route removed before it can be claimed
(sde.workspaces.routes), no token, and its slot's empty directories bound at /data,
the work directory, /ingress and /run/sde. Its name says its state: `<hub>-warming-<slot>`
while it imports, `<hub>-pool-<slot>` once ready, the workspace's own name once
claimed (when it stops belonging to the pool).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sde.core.config import Settings
from sde.core.errors import SdeError
from sde.workspaces import hardening, routes
from sde.workspaces.engine import list_containers
from sde.workspaces.network import LABEL
from sde.workspaces.pool import mounts
from sde.workspaces.pool.slots import (
    CLAIM_DIR,
    Slot,
    new_slot,
    release,
    slot_of,
    take,
    write_claim,
    write_owner,
)

log = logging.getLogger("sde.workspaces.pool")

ROLE = "warm-pool"
INSTALLATION_LABEL = "org.sde.installation"
SLOT_LABEL = "org.sde.slot"
COMMAND = ["python3", "-m", "sde.warmstart"]
# The probe container waits for its go file, then says whether the probe mount arrived.
PROBE_SCRIPT = (
    "i=0; while [ ! -e /run/sde/go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; "
    "if [ -e /data/probe ]; then echo mount-seen; else echo mount-unseen; fi"
)


def labels(settings: Settings, slot: Slot) -> dict[str, str]:
    return {LABEL: ROLE, INSTALLATION_LABEL: settings.hub.name, SLOT_LABEL: slot.name}


def filters(settings: Settings) -> dict[str, Any]:
    """Every container of this installation's pool, claimed or not."""
    return {"label": [f"{LABEL}={ROLE}", f"{INSTALLATION_LABEL}={settings.hub.name}"]}


def warming_name(settings: Settings, slot: str) -> str:
    return f"{settings.hub.name}-warming-{slot}"


def ready_name(settings: Settings, slot: str) -> str:
    return f"{settings.hub.name}-pool-{slot}"


def start_container(client: Any, settings: Settings, image: str) -> Any:
    """A new pool container in a new slot, warming (importing) under its warming name."""
    slot = new_slot(settings)
    kwargs = hardening.run_kwargs(
        {
            **hardening.workspace_options(slot.data, "unused", settings),
            "volumes": {},
            "read_only_volumes": {},
        }
    )
    kwargs["volumes"] = {
        str(slot.data): {"bind": hardening.DATA_DIR, "mode": "ro,rslave"},
        str(slot.work): {"bind": hardening.WORK_DIR, "mode": "rw,rslave"},
        str(slot.ingress): {"bind": hardening.INGRESS_DIR, "mode": "ro,rslave"},
        str(slot.ctl): {"bind": CLAIM_DIR, "mode": "ro"},
        str(hardening.jupyter_config_dir(settings)): {
            "bind": hardening.JUPYTER_CONFIG_MOUNT,
            "mode": "ro",
        },
    }
    try:
        container = client.containers.run(
            image,
            COMMAND,
            name=warming_name(settings, slot.name),
            detach=True,
            auto_remove=True,
            labels=labels(settings, slot),
            environment={
                "JUPYTER_CONFIG_PATH": hardening.JUPYTER_CONFIG_MOUNT,
                "SDE_DATA_DIR": hardening.DATA_DIR,
                "PYTHONUNBUFFERED": "1",
            },
            **kwargs,
        )
    except Exception:
        release(settings, slot.name)
        raise
    try:
        # Before it can be claimed: no default route (sde.workspaces.routes).
        routes.remove_default_route(client, container.id)
    except Exception:
        remove_container(client, settings, container)
        raise
    return container


def check_propagation(client: Any, settings: Settings, image: str) -> str | None:
    """None when a mount made in a slot after its container started appears inside it.

    Every claim depends on that. It fails when the engine runs in another mount
    namespace than the hub (a snap, a unit with private mounts) or the pool
    directory is not a shared mount, and then every warm spawn would fail; checked
    once when the pool starts, so that the pool can stay empty instead and
    workspaces start cold. Returns the problem otherwise.
    """
    import docker

    slot = new_slot(settings)
    source = slot.path / "probe-source"
    source.mkdir()
    (source / "probe").touch()
    container = None
    try:
        name = f"{settings.hub.name}-probe-{slot.name}"
        try:
            container = client.containers.run(
                image,
                ["sh", "-c", PROBE_SCRIPT],
                name=name,
                detach=True,
                labels=labels(settings, slot),
                user=hardening.USER,
                network_disabled=True,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges:true"],
                read_only=True,
                volumes={
                    str(slot.data): {"bind": hardening.DATA_DIR, "mode": "ro,rslave"},
                    str(slot.ctl): {"bind": CLAIM_DIR, "mode": "ro"},
                },
            )
        except docker.errors.APIError as exc:
            # Created but refused at start (Docker checks bind propagation then).
            with contextlib.suppress(docker.errors.NotFound):
                client.containers.get(name).remove(force=True)
            root = mounts.slots_root(settings)
            return f"a container bound to {root} cannot start: {exc.explanation}"
        mounts.attach(settings, slot, source, slot.data, read_only=True)
        (slot.ctl / "go").touch()
        container.wait(timeout=60)
        said = container.logs().decode(errors="replace")
        if "mount-seen" in said:
            return None
        return (
            f"mounts made under {mounts.slots_root(settings)} do not reach the containers of "
            "the Docker engine (it runs in another mount namespace, or the directory is not "
            f"a shared mount); the probe said {said.strip()[-200:]!r}"
        )
    finally:
        if container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        (slot.ctl / "go").unlink(missing_ok=True)
        if mounts.is_mount(slot.data):
            mounts.run("umount", str(slot.data))
        (source / "probe").unlink()
        source.rmdir()
        release(settings, slot.name)


def ready_containers(settings: Settings, pool: list[Any]) -> list[Any]:
    return [c for c in pool if c.name.startswith(f"{settings.hub.name}-pool-")]


def pool_containers(client: Any, settings: Settings) -> list[Any]:
    """Unclaimed pool containers (warming or ready) of this installation."""
    prefixes = (f"{settings.hub.name}-warming-", f"{settings.hub.name}-pool-")
    return [
        c
        for c in list_containers(client, all=True, filters=filters(settings))
        if c.name.startswith(prefixes)
    ]


def remove_container(client: Any, settings: Settings, container: Any) -> None:
    import docker

    slot = container.labels.get(SLOT_LABEL, "")
    with contextlib.suppress(docker.errors.NotFound):
        container.remove(force=True)
    if slot:
        release(settings, slot)


def sweep(client: Any, settings: Settings, unclaimed: bool) -> None:
    """Release slots whose container is gone; with `unclaimed`, empty the pool too."""
    if unclaimed:
        for container in pool_containers(client, settings):
            remove_container(client, settings, container)
    every = list_containers(client, all=True, filters=filters(settings))
    live = {c.labels.get(SLOT_LABEL) for c in every}
    root = mounts.slots_root(settings)
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if path.name not in live:
            try:
                release(settings, path.name)
            except (OSError, SdeError) as exc:
                log.warning("slot %s not released: %s", path.name, exc)


@dataclass
class Claimed:
    container_id: str
    slot: str


def claim(
    client: Any,
    settings: Settings,
    image_id: str,
    container_name: str,
    data_dir: Path,
    work_dir: Path,
    server: dict[str, Any],
    owner: dict[str, str] | None = None,
    ingress_dir: Path | None = None,
) -> Claimed | None:
    """Turn a ready pool container into this workspace; None when there is none to take.

    `work_dir` is the work volume's mounted filesystem on the host
    (sde.workspaces.workvolumes); `server` is what the waiting process runs:
    {"env": {...}, "argv": [...], "cwd": ...}; `owner` is recorded in the slot for
    operators and the hub ({"user", "project", "work"}); `ingress_dir` is the project's
    released ingress files (hardening.ingress_dir), bound read-only at /ingress.
    """
    import docker

    candidates = [
        c
        for c in list_containers(client, filters={**filters(settings), "status": "running"})
        if c.name.startswith(f"{settings.hub.name}-pool-") and c.attrs.get("Image") == image_id
    ]
    for container in candidates:
        slot = slot_of(settings, container.labels[SLOT_LABEL])
        if not take(slot):
            continue  # taken by another spawn
        try:
            container.rename(container_name)
        except docker.errors.APIError:
            remove_container(client, settings, container)  # gone meanwhile
            continue
        try:
            if owner:
                write_owner(slot, owner)
            mounts.attach(settings, slot, data_dir, slot.data, read_only=True)
            mounts.attach(settings, slot, work_dir, slot.work, False)
            if ingress_dir is not None:
                mounts.attach(settings, slot, ingress_dir, slot.ingress, read_only=True)
            uid, gid = (int(x) for x in hardening.USER.split(":"))
            write_claim(slot, server, uid, gid)
        except Exception:
            log.exception("claiming pool container %s failed; removing it", container.id[:12])
            remove_container(client, settings, container)
            return None
        return Claimed(container.id, slot.name)
    return None
