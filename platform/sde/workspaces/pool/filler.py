"""The filler: the managed service `warm-pool` that keeps the pool full.

Run by the hub (`python -m sde.workspaces.pool`, sde.hub.config.warm_pool_service)
as root on the Docker host. It checks once that mounts reach the containers,
then warms one container at a time, replaces containers of an outdated image,
clears slots whose container is gone, and empties the pool when it stops.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from typing import Any

from sde.core.config import Settings
from sde.core.errors import SdeError
from sde.core.files import write_atomic
from sde.core.services import run_service
from sde.workspaces import hardening
from sde.workspaces.engine import docker_client, list_containers
from sde.workspaces.pool.containers import (
    SLOT_LABEL,
    check_propagation,
    filters,
    pool_containers,
    ready_containers,
    ready_name,
    remove_container,
    start_container,
    sweep,
)
from sde.workspaces.pool.mounts import prepare_host, slots_root, state_file, teardown_host
from sde.workspaces.pool.slots import owners, slot_of

log = logging.getLogger("sde.workspaces.pool")

READY = "sde-warmstart: ready"  # printed by sde.warmstart once everything is imported
# A claimed workspace spends its first seconds starting the server and the
# person's first kernel: warming a replacement at once would take CPU from them.
REFILL_DELAY_S = 3.0
WARM_TIMEOUT_S = 120.0
SWEEP_EVERY_S = 30.0


def _write_state(settings: Settings, state: dict[str, Any]) -> None:
    write_atomic(state_file(settings), json.dumps(state))


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
    every = list_containers(client, all=True, filters=filters(settings))
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
    run_service(serve)
