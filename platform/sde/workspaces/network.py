"""The workspace network: internal, no traffic between workspaces, no DNS out.

- `internal=True`: Docker gives the containers no route off the network.
- `com.docker.network.bridge.enable_icc=false`: containers on it cannot reach
  each other, only the host's bridge address.
- A fixed bridge name and subnet (settings [workspaces]) so that the host
  firewall (sde.workspaces.firewall) can match the bridge and the hub and the
  airlock can bind to its gateway address before any workspace exists.
- DNS: every workspace gets the bridge address as its only resolver (see
  `dns_servers`). Docker's embedded resolver forwards names it does not know to
  the container's resolvers; before Engine 26.0 it did so from the *host's*
  namespace when the resolvers came from a host resolv.conf pointing at
  loopback (CVE-2024-29018), i.e. out of an internal network. Resolvers named
  in the container's own configuration are never used that way, and the bridge
  address answers no DNS (the firewall drops port 53), so no query leaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sde.core.config import Settings, WorkspacesSettings, load_settings
from sde.core.errors import ConfigError, SdeError
from sde.core.validators import ipv4_subnet_of
from sde.workspaces import firewall
from sde.workspaces.engine import docker_client

ICC_OPTION = "com.docker.network.bridge.enable_icc"
BRIDGE_OPTION = "com.docker.network.bridge.name"
LABEL = "org.sde.role"


@dataclass(frozen=True)
class WorkspaceNetwork:
    name: str
    id: str
    bridge: str
    subnet: str
    gateway: str
    allowed_ports: tuple[int, ...]
    firewall: bool


def gateway_of(ws: WorkspacesSettings) -> str:
    """The bridge (gateway) address: the subnet's first host address (checked by load_settings)."""
    return str(ipv4_subnet_of(ws.subnet).network_address + 1)


def dns_servers(ws: WorkspacesSettings) -> list[str]:
    """The only resolver a workspace is given: the bridge address, which answers no DNS."""
    return [gateway_of(ws)]


def allowed_ports(settings: Settings) -> tuple[int, ...]:
    return (settings.hub.api_port, settings.workspaces.airlock_port)


def firewall_rules(settings: Settings) -> firewall.Rules:
    """The host firewall of this site's bridge (the hub, the gate and the CLI build it here)."""
    ws = settings.workspaces
    return firewall.Rules(ws.bridge, gateway_of(ws), allowed_ports(settings))


def _find(client: Any, name: str) -> Any | None:
    # The name filter matches substrings; only an exact name counts.
    for net in client.networks.list(names=[name]):
        if net.name == name:
            return net
    return None


def _describe(net: Any) -> tuple[bool, str, str, str, str]:
    attrs = net.attrs
    options = attrs.get("Options") or {}
    configs = (attrs.get("IPAM") or {}).get("Config") or [{}]
    return (
        bool(attrs.get("Internal")),
        options.get(ICC_OPTION, "true"),
        options.get(BRIDGE_OPTION, ""),
        configs[0].get("Subnet", ""),
        configs[0].get("Gateway", ""),
    )


def _check(net: Any, ws: WorkspacesSettings, gateway: str) -> None:
    internal, icc, bridge, subnet, gw = _describe(net)
    problems = []
    if not internal:
        problems.append("it is not internal")
    if icc != "false":
        problems.append("containers on it can reach each other (enable_icc is not false)")
    if bridge != ws.bridge:
        problems.append(f"its bridge is {bridge or 'unnamed'}, not {ws.bridge}")
    if subnet != ws.subnet or gw != gateway:
        problems.append(f"its subnet is {subnet} via {gw}, not {ws.subnet} via {gateway}")
    if problems:
        raise ConfigError(
            f"Docker network {ws.network} exists but " + "; ".join(problems) + ": remove it "
            "(`sde workspaces network down`, with no workspace running) or change [workspaces]"
        )


def _create(client: Any, ws: WorkspacesSettings, gateway: str) -> Any:
    import docker

    ipam = docker.types.IPAMConfig(
        pool_configs=[docker.types.IPAMPool(subnet=ws.subnet, gateway=gateway)]
    )
    try:
        return client.networks.create(
            ws.network,
            driver="bridge",
            internal=True,
            ipam=ipam,
            options={ICC_OPTION: "false", BRIDGE_OPTION: ws.bridge},
            labels={LABEL: "workspaces"},
        )
    except docker.errors.APIError as exc:
        # Another process (a second hub start, a parallel test) may have won the race.
        found = _find(client, ws.network)
        if found is not None:
            return found
        raise SdeError(f"cannot create Docker network {ws.network}: {exc.explanation}") from None


def ensure_network(settings: Settings | None = None) -> WorkspaceNetwork:
    """Create the workspace network and its firewall rules when missing; check them when not.

    Idempotent: safe to call at every hub start.
    """
    settings = settings or load_settings()
    ws = settings.workspaces
    gateway = gateway_of(ws)
    client = docker_client()
    net = _find(client, ws.network)
    if net is None:
        net = _create(client, ws, gateway)
    net.reload()
    _check(net, ws, gateway)
    ports = allowed_ports(settings)
    if ws.firewall:
        firewall.apply(firewall_rules(settings))
    return WorkspaceNetwork(
        name=ws.network,
        id=net.id,
        bridge=ws.bridge,
        subnet=ws.subnet,
        gateway=gateway,
        allowed_ports=ports,
        firewall=ws.firewall,
    )


def remove_network(settings: Settings | None = None) -> bool:
    """Remove the firewall rules and the network; False when there was no network.

    Refuses while containers are attached, so a running workspace never loses
    its firewall.
    """
    settings = settings or load_settings()
    ws = settings.workspaces
    client = docker_client()
    net = _find(client, ws.network)
    if net is not None:
        net.reload()
        attached = sorted(c.get("Name", "?") for c in (net.attrs.get("Containers") or {}).values())
        if attached:
            raise SdeError(
                f"Docker network {ws.network} still has containers attached "
                f"({', '.join(attached)}): stop those workspaces first"
            )
    if ws.firewall or firewall.installed(ws.bridge):
        firewall.remove(ws.bridge)
    if net is None:
        return False
    net.remove()
    return True


def network_status(settings: Settings | None = None) -> dict[str, Any]:
    """What exists now, for `sde workspaces network status`."""
    settings = settings or load_settings()
    ws = settings.workspaces
    client = docker_client()
    net = _find(client, ws.network)
    status: dict[str, Any] = {
        "network": ws.network,
        "exists": net is not None,
        "engine_version": client.version().get("Version", "?"),
        "bridge": ws.bridge,
        "subnet": ws.subnet,
        "gateway": gateway_of(ws),
        "allowed_ports": list(allowed_ports(settings)),
        "firewall_installed": firewall.installed(ws.bridge),
    }
    if status["firewall_installed"]:
        # Where sde's jumps sit: they must come before Docker's chains and any site rule.
        order = firewall.order(firewall_rules(settings))
        status.update(
            firewall_first=order["first"],
            firewall_input_positions=order["INPUT"]["positions"],
            firewall_input_rules=order["INPUT"]["of"],
            firewall_forward_positions=order["FORWARD"]["positions"],
            firewall_forward_rules=order["FORWARD"]["of"],
        )
    if net is not None:
        net.reload()
        internal, icc, bridge, subnet, gateway = _describe(net)
        status.update(
            internal=internal,
            icc=icc != "false",
            actual_bridge=bridge,
            actual_subnet=subnet,
            actual_gateway=gateway,
            containers=sorted(
                c.get("Name", "?") for c in (net.attrs.get("Containers") or {}).values()
            ),
        )
    return status
