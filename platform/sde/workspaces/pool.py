"""A warm pool of workspace containers: started ahead of need, claimed at a spawn.

Starting a workspace takes about 2.5 s on a small machine, nearly all of it
Python importing JupyterHub's single-user server, Jupyter Server and JupyterLab
inside the new container. The pool keeps `workspaces.warm_pool` containers that
have done that already (`python -m sde.warmstart` in the image) and wait.

A pool container is a workspace container with nothing of anyone in it: the
same image, hardening, limits, network and read-only Jupyter configuration as
every workspace, its default route removed before it can be claimed
(sde.workspaces.routes), no token, and for /data and the work directory two
empty directories of its own *slot* on the host, bound with `rslave`
propagation. A spawn claims one (`claim`):

1. marks its slot taken (`take`: one file created exclusively, so of any number
   of claims of one container exactly one wins) and renames it to the
   workspace's container name;
2. mounts the project's data (read-only, nosuid, nodev) and the person's work
   volume onto the slot's directories on the host; propagation makes them
   appear at /data and /home/researcher/work inside the running container,
   read-only where the host mount is (the container has no capability to
   change mounts, and `rslave` carries nothing back to the host);
3. writes the server's environment and command line (with its API token) to
   the slot's control directory (/run/sde in the container, read-only there,
   file readable by the workspace user only); the waiting process starts the
   server.

A claimed container is never returned to the pool: at stop it is removed and
its slot's mounts and files with it (`release`). The filler (`serve`, run by the
hub as the managed service `warm-pool`) keeps the pool full, one container
warming at a time, replaces containers of an outdated image, and clears slots
whose container is gone. Mounting needs root on the Docker host (the hub
already needs it for the firewall); `workspaces.warm_pool = 0` turns the pool
off and every spawn starts a container cold.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sde.core.config import Settings, load_settings
from sde.core.errors import ConfigError, SdeError
from sde.workspaces import hardening, routes
from sde.workspaces.network import LABEL, docker_client, list_containers

log = logging.getLogger("sde.workspaces.pool")

ROLE = "warm-pool"
INSTALLATION_LABEL = "org.sde.installation"
SLOT_LABEL = "org.sde.slot"
CLAIM_DIR = "/run/sde"
CLAIM_NAME = "claim.json"
# Whose a claimed container is (user, project, work id): Docker labels are fixed when a
# container is created, before anyone claims it. Beside the slot's directories, so
# outside everything the container sees.
OWNER_NAME = "owner.json"
READY = "sde-warmstart: ready"  # printed by sde.warmstart once everything is imported
COMMAND = ["python3", "-m", "sde.warmstart"]
# A claimed workspace spends its first seconds starting the server and the
# person's first kernel: warming a replacement at once would take CPU from them.
REFILL_DELAY_S = 3.0
WARM_TIMEOUT_S = 120.0
SWEEP_EVERY_S = 30.0
# The probe container waits for its go file, then says whether the probe mount arrived.
PROBE_SCRIPT = (
    "i=0; while [ ! -e /run/sde/go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; "
    "if [ -e /data/probe ]; then echo mount-seen; else echo mount-unseen; fi"
)


# ------------------------------------------------------------------ host mounts


def pool_root(settings: Settings) -> Path:
    return Path(settings.workspaces.pool_dir) / settings.hub.name


def slots_root(settings: Settings) -> Path:
    return pool_root(settings) / "slots"


def staging_root(settings: Settings) -> Path:
    return pool_root(settings) / "slot-staging"


def _run(*cmd: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SdeError(f"{' '.join(cmd)}: {done.stderr.strip() or f'exit {done.returncode}'}")


def _mounts() -> dict[str, str]:
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
    return str(path) in _mounts()


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
    mounts = _mounts()
    wanted = ((slots_root(settings), "--make-rshared"), (staging_root(settings), "--make-private"))
    for path, mode in wanted:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if str(path) not in mounts:
            _run("mount", "--bind", str(path), str(path))
        shared = "shared:" in _mounts().get(str(path), "")
        if shared != (mode == "--make-rshared"):
            _run("mount", mode, str(path))


def teardown_host(settings: Settings) -> bool:
    """Undo `prepare_host` once no slot is left; False (nothing undone) while any is."""
    root, staging = slots_root(settings), staging_root(settings)
    if root.is_dir() and any(root.iterdir()):
        return False
    for path in (root, staging):
        while is_mount(path):
            _run("umount", str(path))
        with contextlib.suppress(FileNotFoundError):
            path.rmdir()
    state_file(settings).unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError, OSError):
        pool_root(settings).rmdir()
    return True


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
    for path in (slot.path, slot.data, slot.work, slot.ctl):
        path.mkdir(mode=0o755)
    return slot


def attach(settings: Settings, slot: Slot, source: Path, target: Path, read_only: bool) -> None:
    """Bind `source` onto the slot directory `target`, flags set before it propagates."""
    stage = staging_root(settings) / f"{slot.name}-{target.name}"
    stage.mkdir()  # exists only while one attach (of the slot's one claimer) runs
    try:
        flags = "ro,nosuid,nodev" if read_only else "nosuid,nodev"
        _run("mount", "--bind", "-o", flags, str(source), str(stage))
        try:
            _run("mount", "--move", str(stage), str(target))
        except SdeError:
            _run("umount", str(stage))
            raise
    finally:
        stage.rmdir()


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
    tmp = slot.ctl / f".{CLAIM_NAME}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "w") as f:
        json.dump(claim, f)
    os.chown(tmp, uid, gid)
    # The waiting process polls for the name: it appears whole or not at all.
    os.replace(tmp, slot.claim_file)


def release(settings: Settings, name: str) -> None:
    """Unmount a slot's data and work directories and delete the slot.

    Nothing is ever deleted recursively: a directory that is still a mount point
    (or not empty) stops the release with an error, so a failure cannot reach
    into a person's work volume or the project data.
    """
    slot = slot_of(settings, name)
    if not slot.path.exists():
        return
    for target in (slot.data, slot.work):
        if is_mount(target):
            try:
                _run("umount", str(target))
            except SdeError:
                # Released at the same moment by the spawner and the filler's sweep:
                # only a mount that is still there is a failure.
                if is_mount(target):
                    raise
    for leftover in (slot.claim_file, slot.ctl / f".{CLAIM_NAME}.tmp", slot.owner_file, slot.taken):
        leftover.unlink(missing_ok=True)
    for path in (slot.data, slot.work, slot.ctl, slot.path):
        with contextlib.suppress(FileNotFoundError):
            path.rmdir()


# ------------------------------------------------------------------ containers


def _labels(settings: Settings, slot: Slot) -> dict[str, str]:
    return {LABEL: ROLE, INSTALLATION_LABEL: settings.hub.name, SLOT_LABEL: slot.name}


def _filters(settings: Settings) -> dict[str, Any]:
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
            labels=_labels(settings, slot),
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
                labels=_labels(settings, slot),
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
            return f"a container bound to {slots_root(settings)} cannot start: {exc.explanation}"
        attach(settings, slot, source, slot.data, read_only=True)
        (slot.ctl / "go").touch()
        container.wait(timeout=60)
        said = container.logs().decode(errors="replace")
        if "mount-seen" in said:
            return None
        return (
            f"mounts made under {slots_root(settings)} do not reach the containers of the "
            "Docker engine (it runs in another mount namespace, or the directory is not "
            f"a shared mount); the probe said {said.strip()[-200:]!r}"
        )
    finally:
        if container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        (slot.ctl / "go").unlink(missing_ok=True)
        if is_mount(slot.data):
            _run("umount", str(slot.data))
        (source / "probe").unlink()
        source.rmdir()
        release(settings, slot.name)


def state_file(settings: Settings) -> Path:
    """What the filler found when it started (`check_propagation`), for `pool status`."""
    return pool_root(settings) / "state.json"


def _write_state(settings: Settings, state: dict[str, Any]) -> None:
    path = state_file(settings)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def ready_containers(settings: Settings, pool: list[Any]) -> list[Any]:
    return [c for c in pool if c.name.startswith(f"{settings.hub.name}-pool-")]


def pool_containers(client: Any, settings: Settings) -> list[Any]:
    """Unclaimed pool containers (warming or ready) of this installation."""
    prefixes = (f"{settings.hub.name}-warming-", f"{settings.hub.name}-pool-")
    return [
        c
        for c in list_containers(client, all=True, filters=_filters(settings))
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
    every = list_containers(client, all=True, filters=_filters(settings))
    live = {c.labels.get(SLOT_LABEL) for c in every}
    root = slots_root(settings)
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


def _write_owner(slot: Slot, owner: dict[str, str]) -> None:
    tmp = slot.path / f".{OWNER_NAME}.tmp"
    tmp.write_text(json.dumps(owner))
    os.replace(tmp, slot.owner_file)


def claim(
    client: Any,
    settings: Settings,
    image_id: str,
    container_name: str,
    data_dir: Path,
    work_dir: Path,
    server: dict[str, Any],
    owner: dict[str, str] | None = None,
) -> Claimed | None:
    """Turn a ready pool container into this workspace; None when there is none to take.

    `work_dir` is the work volume's mounted filesystem on the host
    (sde.workspaces.workvolumes); `server` is what the waiting process runs:
    {"env": {...}, "argv": [...], "cwd": ...}; `owner` is recorded in the slot for
    operators and the hub ({"user", "project", "work"}).
    """
    import docker

    candidates = [
        c
        for c in list_containers(client, filters={**_filters(settings), "status": "running"})
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
                _write_owner(slot, owner)
            attach(settings, slot, data_dir, slot.data, read_only=True)
            attach(settings, slot, work_dir, slot.work, False)
            uid, gid = (int(x) for x in hardening.USER.split(":"))
            write_claim(slot, server, uid, gid)
        except Exception:
            log.exception("claiming pool container %s failed; removing it", container.id[:12])
            remove_container(client, settings, container)
            return None
        return Claimed(container.id, slot.name)
    return None


# ------------------------------------------------------------------ the filler


def _is_ready(container: Any) -> bool:
    try:
        return READY in container.logs(stdout=True, stderr=False, tail=20).decode(errors="replace")
    except Exception:
        return False


def fill_once(client: Any, settings: Settings, image_id: str, image: str, now: float) -> str:
    """One step of keeping the pool full; returns what it did (for the log and tests)."""
    size = settings.workspaces.warm_pool
    pool = [
        c
        for c in pool_containers(client, settings)
        if not slot_of(settings, c.labels[SLOT_LABEL]).taken.exists()
    ]
    for container in pool:
        outdated = container.attrs.get("Image") != image_id
        if outdated or container.status not in ("created", "running"):
            remove_container(client, settings, container)
            return f"removed {container.name} (outdated image or exited)"
    warming = [c for c in pool if c.name.startswith(f"{settings.hub.name}-warming-")]
    for container in warming:
        if _is_ready(container):
            container.rename(ready_name(settings, container.labels[SLOT_LABEL]))
            return f"ready {container.labels[SLOT_LABEL]}"
        started = container.attrs.get("Created", "")
        if _age(started, now) > WARM_TIMEOUT_S:
            remove_container(client, settings, container)
            return f"removed {container.name} (not ready in {WARM_TIMEOUT_S:.0f} s)"
    if not warming and len(pool) < size:
        container = start_container(client, settings, image)
        return f"warming {container.labels[SLOT_LABEL]}"
    return ""


def _age(created: str, now: float) -> float:
    from datetime import datetime

    try:
        stamp = datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00")
    except ValueError:
        return 0.0
    return now - stamp.timestamp()


def serve(settings: Settings) -> None:
    """Keep the pool full until SIGTERM or SIGINT (or the hub goes), then empty it."""
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s warm-pool] %(message)s"
    )
    prepare_host(settings)
    hardening.publish_jupyter_config(settings)
    client = docker_client()
    image = settings.hub.image
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    parent = os.getppid()
    sweep(client, settings, unclaimed=True)
    ready_seen = 0
    refill_at = 0.0
    last_sweep = time.monotonic()
    checked = False
    log.info("keeping %d warm workspace(s) of %s", settings.workspaces.warm_pool, image)
    try:
        while not stopping and os.getppid() == parent:
            now = time.monotonic()
            idle = False
            try:
                if not checked:
                    problem = check_propagation(client, settings, image)
                    checked = True
                    _write_state(
                        settings,
                        {"mounts_reach_containers": problem is None, "problem": problem or ""},
                    )
                    if problem:
                        log.error("warm pool off, workspaces start cold: %s", problem)
                        while not stopping and os.getppid() == parent:
                            time.sleep(1.0)
                        break
                    log.info("mount propagation to workspace containers: checked")
                image_id = client.images.get(image).id
                pool = pool_containers(client, settings)
                ready = len(ready_containers(settings, pool))
                idle = ready == len(pool) >= settings.workspaces.warm_pool
                if ready < ready_seen:
                    refill_at = now + REFILL_DELAY_S  # a claim: let that workspace start first
                ready_seen = ready
                if now >= refill_at:
                    done = fill_once(client, settings, image_id, image, time.time())
                    if done:
                        log.info("%s", done)
                        if done.startswith("ready"):
                            ready_seen += 1
                if now - last_sweep > SWEEP_EVERY_S:
                    sweep(client, settings, unclaimed=False)
                    last_sweep = now
            except Exception as exc:  # Docker restarting, image being rebuilt: try again
                log.warning("%s", exc)
                time.sleep(2)
            # Often while a claim or a warming container needs an answer; seldom when full,
            # so that an idle pool costs next to no CPU.
            time.sleep(1.0 if idle else 0.25)
    finally:
        state_file(settings).unlink(missing_ok=True)
        sweep(client, settings, unclaimed=True)
        teardown_host(settings)
        log.info("pool emptied")


def status(settings: Settings) -> dict[str, Any]:
    """What the pool holds now: ready and warming containers, claimed workspaces, slots."""
    client = docker_client()
    every = list_containers(client, all=True, filters=_filters(settings))
    unclaimed = pool_containers(client, settings)
    ready = ready_containers(settings, unclaimed)
    owned = owners(settings)
    root = slots_root(settings)
    try:
        state = json.loads(state_file(settings).read_text())
    except (FileNotFoundError, ValueError):
        state = {}
    if not state:
        running = "not running"
    elif state.get("problem"):
        running = f"off, workspaces start cold: {state['problem']}"
    else:
        running = "running"
    return {
        "filler": running,
        "size": settings.workspaces.warm_pool,
        "image": settings.hub.image,
        "ready": sorted(c.name for c in ready),
        "warming": sorted(c.name for c in unclaimed if c not in ready),
        "claimed": sorted(_claimed(c, owned) for c in every if c not in unclaimed),
        "slots": len(list(root.iterdir())) if root.is_dir() else 0,
    }


def _claimed(container: Any, owned: dict[str, dict[str, str]]) -> str:
    """A claimed container's opaque name, with whose it is (from its slot's record)."""
    owner = owned.get(container.labels.get(SLOT_LABEL, ""))
    return f"{container.name} ({owner['user']}/{owner['project']})" if owner else container.name


def wait_ready(settings: Settings, timeout: float = 120.0) -> None:
    """Block until the pool holds its full number of ready containers (tests, benchmark)."""
    client = docker_client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = ready_containers(settings, pool_containers(client, settings))
        if len(ready) >= settings.workspaces.warm_pool:
            return
        time.sleep(0.1)
    raise SdeError(f"the warm pool did not fill within {timeout:.0f} s")


def main() -> None:
    try:
        serve(load_settings())
    except SdeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
