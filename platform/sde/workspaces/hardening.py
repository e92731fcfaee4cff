"""The Docker options of one workspace container, in the shapes DockerSpawner takes.

What a workspace gets:
- runs as uid/gid 1000 (`researcher`), never root; every capability dropped and
  `no-new-privileges`, so setuid binaries cannot regain any;
- a read-only root filesystem; in-memory scratch space at /tmp and the home
  directory (lost at stop); only the work volume persists;
- the project's data read-only at /data (the container cannot change it, the
  kernel answers EROFS);
- the project's approved ingress files read-only at /ingress (`ingress_dir`);
- limits on memory (swap included: none beyond it), CPU and processes (a fork
  bomb stops at the pids limit);
- Docker's default seccomp profile without ptrace, process_vm_*, io_uring,
  personality and userfaultfd (sde.workspaces.seccomp);
- the workspace network's bridge address as its only DNS resolver (see
  sde.workspaces.network), no IPv6 and no Docker socket.

`host_config()` and `create_kwargs()` are for `DockerSpawner.extra_host_config`
and `extra_create_kwargs`; `workspace_options()` gives the whole set for one
person x project; `run_kwargs()` turns that set into `docker.containers.run`
arguments for tools and tests that start a workspace without the hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sde.core.config import Settings, load_settings
from sde.core.files import write_atomic
from sde.workspaces import seccomp
from sde.workspaces.network import dns_servers, gateway_of

USER = "1000:1000"
# Read-only Jupyter configuration for every workspace (platform/sde/hub/jupyter-config/):
# no /files/ handler, no JupyterLab download commands. Mounted from a copy under
# SDE_HOME (`publish_jupyter_config`), never from this package's folder.
JUPYTER_CONFIG = Path(__file__).resolve().parents[1] / "hub" / "jupyter-config"
JUPYTER_CONFIG_MOUNT = "/opt/sde/jupyter-config"
HOME = "/home/researcher"
WORK_DIR = "/home/researcher/work"
DATA_DIR = "/data"
# Approved ingress files of the project (code, code lists, reference files), read-only.
INGRESS_DIR = "/ingress"
# The airlock API as a workspace reaches it: the hub service `airlock` on the bridge.
AIRLOCK_API_PATH = "/services/airlock/api/"


def ingress_dir(settings: Settings, project: str) -> Path:
    """The project's released ingress files on the host, bound at /ingress in its workspaces.

    One directory per project, never replaced: releases add files into it, so a
    workspace that is already running sees them at once (a bind shows the
    directory's current entries).
    """
    return settings.projects_dir / project / "ingress"


def ensure_ingress_dir(settings: Settings, project: str) -> Path:
    """`ingress_dir`, created empty when the project has none yet (a bind needs a source)."""
    path = ingress_dir(settings, project)
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)  # readable by the workspace's unprivileged user whatever the umask
    return path


def airlock_url(settings: Settings) -> str:
    """$SDE_AIRLOCK_URL of a workspace (the host firewall opens this port to workspaces)."""
    ws = settings.workspaces
    return f"http://{gateway_of(ws)}:{ws.airlock_port}{AIRLOCK_API_PATH}"


def jupyter_config_dir(settings: Settings) -> Path:
    """Where `publish_jupyter_config` puts the workspaces' Jupyter configuration."""
    return settings.home / "workspace-config" / "jupyter"


def publish_jupyter_config(settings: Settings) -> Path:
    """Publish the workspaces' Jupyter configuration as a copy under SDE_HOME.

    Done once when the hub and the warm pool start, not at every spawn.

    Docker resolves a bind source on the engine's host. SDE_HOME is at the same path
    there whether the hub runs on the host or in a container that binds it
    (docker-compose.yml); the installed package's folder is only in the hub's own
    filesystem. Each file is replaced atomically and only when it differs, so hubs,
    the warm pool and tools may publish at once.
    """
    target = jupyter_config_dir(settings)
    for src in sorted(JUPYTER_CONFIG.rglob("*")):
        if not src.is_file() or "__pycache__" in src.parts:
            continue
        dest = target / src.relative_to(JUPYTER_CONFIG)
        data = src.read_bytes()
        if dest.is_file() and dest.read_bytes() == data:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Readable by the workspace's unprivileged user whatever the hub's umask.
        folder = dest.parent
        while folder != target.parent.parent:
            folder.chmod(0o755)
            folder = folder.parent
        write_atomic(dest, data, mode=0o644)
    return target


def host_config(settings: Settings | None = None) -> dict[str, Any]:
    """For `DockerSpawner.extra_host_config` (docker-py `create_host_config` keywords)."""
    settings = settings or load_settings()
    ws = settings.workspaces
    scratch = f"rw,nosuid,nodev,size={ws.tmp_size}"
    return {
        "cap_drop": ["ALL"],
        # Docker's default seccomp profile minus ptrace, io_uring and a few more
        # (sde.workspaces.seccomp).
        "security_opt": ["no-new-privileges:true", seccomp.security_opt()],
        "pids_limit": ws.pids_limit,
        # Memory and swap together at the memory limit: no swap on top of it.
        "memswap_limit": settings.hub.mem_limit,
        "read_only": True,
        "tmpfs": {
            "/tmp": scratch,
            # Jupyter, IPython and matplotlib write under $HOME; the work volume is
            # mounted beneath it and persists, the rest does not.
            HOME: f"{scratch},uid=1000,gid=1000,mode=0700",
        },
        "dns": dns_servers(ws),
        # The firewall is IPv4; no IPv6 at all, not even link-local to the bridge.
        "sysctls": {
            "net.ipv6.conf.all.disable_ipv6": "1",
            "net.ipv6.conf.default.disable_ipv6": "1",
        },
        "ipc_mode": "private",
        "privileged": False,
    }


def create_kwargs() -> dict[str, Any]:
    """For `DockerSpawner.extra_create_kwargs`: who runs and where."""
    return {"user": USER, "working_dir": WORK_DIR}


def workspace_options(
    data_dir: str | Path,
    work_volume: str,
    settings: Settings | None = None,
    ingress: str | Path | None = None,
) -> dict[str, Any]:
    """Every option of one person x project workspace, keyed by DockerSpawner trait name.

    `ingress` is the project's ingress directory (`ingress_dir`), bound read-only at
    /ingress when given.
    """
    settings = settings or load_settings()
    read_only = {str(data_dir): DATA_DIR}
    if ingress is not None:
        read_only[str(ingress)] = INGRESS_DIR
    return {
        "network_name": settings.workspaces.network,
        "extra_host_config": host_config(settings),
        "extra_create_kwargs": create_kwargs(),
        "volumes": {work_volume: WORK_DIR},
        "read_only_volumes": read_only,
        "mem_limit": settings.hub.mem_limit,
        "cpu_limit": float(settings.hub.cpu_limit),  # checked by load_settings
    }


def run_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """`docker.containers.run` keywords equal to what DockerSpawner makes of `options`."""
    volumes: dict[str, dict[str, str]] = {
        src: {"bind": dst, "mode": "rw"} for src, dst in options["volumes"].items()
    }
    volumes.update(
        {src: {"bind": dst, "mode": "ro"} for src, dst in options["read_only_volumes"].items()}
    )
    return {
        **options["extra_host_config"],
        **options["extra_create_kwargs"],
        "network": options["network_name"],
        "volumes": volumes,
        "mem_limit": options["mem_limit"],
        "nano_cpus": int(options["cpu_limit"] * 1e9),
    }
