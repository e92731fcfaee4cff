"""No default route in a workspace: only the on-link route of the workspace subnet.

Docker gives every container on a bridge network a default route via the bridge,
internal networks included, so "no route out" would rest on the host firewall
alone. The hub API and the airlock API are on the bridge address, on-link, and
need no gateway; so the default route is deleted, from the host side (the
container has no capability to change its own routes), before any researcher code
can run in the container: by the pool's filler before a waiting container can be
claimed, by the spawner before a cold start returns. A container whose route
cannot be removed must not be used (`RouteError`).

The network namespace is opened through the container's pid, and the pid checked
again afterwards: a container that exited in between (its pid free for any host
process) is refused, and so is a namespace that is the host's own, so that the
host's routes can never be the ones changed. Needs root (CAP_SYS_ADMIN and
CAP_SYS_PTRACE) on the Docker host's pid namespace, and `nsenter` and `ip`.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from sde.core.errors import SdeError


class RouteError(SdeError):
    """A workspace container's default route could not be removed: it must not run."""


def _state(client: Any, container_id: str) -> tuple[int, str]:
    """(pid, start time) of a running container; RouteError when it is not running."""
    state = client.api.inspect_container(container_id)["State"]
    if not state.get("Running") or not state.get("Pid"):
        raise RouteError(
            f"workspace container {container_id[:12]} is not running: its default route "
            "cannot be removed"
        )
    return int(state["Pid"]), str(state.get("StartedAt", ""))


def _ip(netns_fd: int, *args: str) -> str:
    done = subprocess.run(
        ["nsenter", f"--net=/proc/self/fd/{netns_fd}", "ip", *args],
        capture_output=True,
        text=True,
        pass_fds=(netns_fd,),
        check=False,
    )
    if done.returncode != 0:
        raise RouteError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _gateways(netns_fd: int, family: str) -> list[dict[str, Any]]:
    """Routes of the namespace that go through a gateway (the default route among them)."""
    routes: list[dict[str, Any]] = json.loads(_ip(netns_fd, "-j", family, "route", "show") or "[]")
    return [r for r in routes if r.get("gateway") or r.get("dst") == "default"]


def remove_default_route(client: Any, container_id: str) -> None:
    """Delete every route through a gateway in the container; RouteError if one is left."""
    pid, started = _state(client, container_id)
    try:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise RouteError(
            f"workspace container {container_id[:12]}: its network namespace cannot be "
            f"opened ({exc.strerror}; the hub needs root in the Docker host's pid namespace)"
        ) from None
    try:
        if _state(client, container_id) != (pid, started):
            raise RouteError(f"workspace container {container_id[:12]} restarted meanwhile")
        if os.fstat(fd).st_ino == os.stat("/proc/self/ns/net").st_ino:
            raise RouteError(
                f"workspace container {container_id[:12]} shares the host's network "
                "namespace: refusing to change its routes"
            )
        for family in ("-4", "-6"):
            for route in _gateways(fd, family):
                _ip(fd, family, "route", "del", str(route["dst"]))
            left = _gateways(fd, family)
            if left:
                raise RouteError(
                    f"workspace container {container_id[:12]} still has routes out: {left}"
                )
    finally:
        os.close(fd)
