"""Start a workspace's Jupyter server in two steps: load it now, serve it once claimed.

A warm-pool container (see sde.workspaces.pool on the host) runs
`python -m sde.warmstart`. It imports everything the single-user server needs
(Jupyter Server, JupyterLab and the other enabled server extensions, and
JupyterHub's single-user extension: about two seconds of CPU on a small
machine, most of a workspace's start) before anyone asks for a workspace,
prints READY, and waits. Nothing of any person or project is in the container
then: its /data and work directory are empty and it holds no token.

At a spawn the hub claims the container: it mounts the project's data and the
person's work volume into it (mount propagation from the host) and writes
CLAIM_FILE, the server's environment (with its API token) and command line,
exactly what a cold container would have been created with. This process then
runs `jupyterhub-singleuser` itself, with everything already imported.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from sde.data import DATABASE

CLAIM_FILE = Path("/run/sde/claim.json")
READY = "sde-warmstart: ready"
SERVER_COMMAND = "jupyterhub-singleuser"
# Short: the claim is on the path of a person waiting for their workspace.
POLL_SECONDS = 0.005


def enabled_extensions() -> list[str]:
    """Server extensions enabled in the Jupyter configuration (the ones a server loads)."""
    from jupyter_core.paths import jupyter_config_path

    names: list[str] = []
    for directory in jupyter_config_path():
        for path in sorted(Path(directory, "jupyter_server_config.d").glob("*.json")):
            try:
                found = json.loads(path.read_text())["ServerApp"]["jpserver_extensions"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            names += [name for name, on in found.items() if on and name not in names]
    return names


def preload() -> list[str]:
    """Import the server, its extensions and JupyterHub's single-user extension."""
    import jupyter_server.serverapp  # noqa: F401
    import jupyterhub.singleuser.extension  # noqa: F401

    loaded = []
    for name in enabled_extensions():
        try:
            module = importlib.import_module(name)
            points: list[dict[str, Any]] = getattr(
                module, "_jupyter_server_extension_points", lambda: []
            )()
            for point in points:
                importlib.import_module(point["module"])
        except Exception as exc:  # the server itself reports a broken extension
            print(f"sde-warmstart: not preloaded {name}: {exc}", file=sys.stderr)
            continue
        loaded.append(name)
    return loaded


def read_claim(path: Path = CLAIM_FILE, poll: float = POLL_SECONDS) -> dict[str, Any]:
    """Wait for the claim (written atomically by the hub) and return it, checked."""
    while not path.exists():
        time.sleep(poll)
    claim = json.loads(path.read_text())
    env, argv = claim.get("env"), claim.get("argv")
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise SystemExit(f"sde-warmstart: {path}: 'env' must map names to strings")
    if not isinstance(argv, list) or not argv or Path(str(argv[0])).name != SERVER_COMMAND:
        raise SystemExit(f"sde-warmstart: {path}: 'argv' must start with {SERVER_COMMAND}")
    return claim


def check_mounts(data_dir: Path) -> None:
    """Refuse to serve when the hub's mounts did not arrive (e.g. no mount propagation)."""
    if not (data_dir / DATABASE).is_file():
        raise SystemExit(
            f"sde-warmstart: the project's data is not at {data_dir}: the hub's mounts did "
            "not reach this container (mount propagation between the hub and the Docker "
            "engine); not serving an empty workspace"
        )


def serve(claim: dict[str, Any]) -> int:
    check_mounts(Path(claim["env"].get("SDE_DATA_DIR", "/data")))
    os.environ.update(claim["env"])
    os.chdir(claim.get("cwd") or os.environ.get("HOME", "/"))
    sys.argv = [str(a) for a in claim["argv"]]
    from jupyterhub.singleuser import main as singleuser_main

    return int(singleuser_main() or 0)


def main() -> int:
    preload()
    print(READY, flush=True)
    return serve(read_claim())
