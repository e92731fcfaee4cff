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

The package follows those seams, each module importing only the ones before it:

- `mounts`: the pool's directories on the host (shared slots, private staging)
  and binding a source into a slot (`prepare_host`, `teardown_host`, `attach`);
- `slots`: one container's directories, the exclusive `take`, the claim file, the
  owner record, `release`;
- `containers`: starting, listing, claiming and removing pool containers, the
  propagation probe, `sweep`;
- `filler`: the service loop (`serve`, `fill_once`), `status`, `wait_ready`;
  `python -m sde.workspaces.pool` runs its `main`.

The names callers use are importable from here.
"""

from sde.workspaces.pool.containers import (
    INSTALLATION_LABEL,
    ROLE,
    SLOT_LABEL,
    Claimed,
    check_propagation,
    claim,
    pool_containers,
    ready_containers,
    ready_name,
    remove_container,
    start_container,
    sweep,
    warming_name,
)
from sde.workspaces.pool.filler import fill_once, main, serve, status, wait_ready
from sde.workspaces.pool.mounts import (
    attach,
    is_mount,
    pool_root,
    prepare_host,
    slots_root,
    staging_root,
    state_file,
    teardown_host,
)
from sde.workspaces.pool.slots import (
    CLAIM_DIR,
    Slot,
    new_slot,
    owners,
    release,
    slot_of,
    take,
    write_claim,
)

__all__ = [
    "CLAIM_DIR",
    "INSTALLATION_LABEL",
    "ROLE",
    "SLOT_LABEL",
    "Claimed",
    "Slot",
    "attach",
    "check_propagation",
    "claim",
    "fill_once",
    "is_mount",
    "main",
    "new_slot",
    "owners",
    "pool_containers",
    "pool_root",
    "prepare_host",
    "ready_containers",
    "ready_name",
    "release",
    "remove_container",
    "serve",
    "slot_of",
    "slots_root",
    "staging_root",
    "start_container",
    "state_file",
    "status",
    "sweep",
    "take",
    "teardown_host",
    "wait_ready",
    "warming_name",
    "write_claim",
]
