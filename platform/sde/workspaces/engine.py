"""The local Docker engine: the one way sde gets a client and lists containers.

Every part that talks to Docker (the spawner, the warm pool, the network, work
volumes, provisioning, the firewall's event watch) gets its client here, so that an
engine that is not running is reported one way (one line saying how to start it),
and listing survives containers that vanish meanwhile.
"""

from __future__ import annotations

from typing import Any

from sde.core.errors import SdeError


def docker_client() -> Any:
    """A client of the local Docker engine, or a one-line error saying how to start one."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise SdeError(
            f"the Docker engine is not reachable ({exc}); start it with "
            "infra/scripts/ensure-docker.sh"
        ) from None
    return client


def list_containers(
    client: Any, all: bool = False, filters: dict[str, Any] | None = None
) -> list[Any]:
    """Containers matching `filters`, skipping any removed while they are listed.

    docker-py's `containers.list` inspects each container after listing them and
    raises NotFound for one that went in between; with `auto_remove` workspaces and
    pool containers that happens whenever one exits at that moment.
    """
    import docker

    found = []
    for row in client.api.containers(all=all, filters=filters):
        try:
            found.append(client.containers.get(row["Id"]))
        except docker.errors.NotFound:
            continue
    return found
