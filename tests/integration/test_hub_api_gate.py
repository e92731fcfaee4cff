"""The hub API as workspaces and other networks see it, and the firewall's order, live.

A real hub with Docker: the hub API listens on loopback, and on the workspace
bridge address the API gate (sde.workspaces.gate) forwards only what
jupyterhub-singleuser needs. From a network the test creates (an ordinary,
non-internal bridge like Docker's default one) the bridge address answers nothing;
from a workspace the API answers and the login page does not. While the hub runs,
rules put above sde's jumps (and sde's own chain flushed) are undone within the
poll, audited, and a workspace can no longer reach the host port the tampering
had opened. Every container, network and iptables rule the tests add is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sde.audit import list_events
from sde.hub.client import HubClient
from sde.workspaces import firewall, hardening, network
from tests.integration.test_workspace_isolation import container_ip, host_server, probe
from tests.support.hub import PASSWORD, HubSite, make_site, running
from tests.support.hub_data import provision_project
from tests.support.registry import make_active_project, make_person

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# An HTTP GET from inside a container: the status, or `closed` when nothing answers.
HTTP_GET = """
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=3).status)
except urllib.error.HTTPError as e:
    print(e.code)
except OSError as e:
    print('closed', type(e).__name__)
"""


@pytest.fixture(scope="module")
def site(workspace_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSite]:
    home = tmp_path_factory.mktemp("api-gate") / "home"
    # The firewall is checked at every poll: every second here (default 30 s).
    s = make_site(
        home, docker=True, SDE_HUB_IMAGE=workspace_image, SDE_WORKSPACES_ACCESS_CHECK_SECONDS="1"
    )
    make_person(s.engine, "alice")
    make_active_project(s.engine, "gated", "alice")
    provision_project(s, "gated")
    s.enrol("alice")
    with running(s):
        yield s


@pytest.fixture(scope="module")
def workspace(site: HubSite) -> Iterator[tuple[HubClient, str]]:
    c = HubClient(site.url)
    assert c.login("alice", PASSWORD, site.code("alice")).ok
    c.api_token()
    server = c.start_workspace("gated")
    yield c, server
    c.stop_workspace("gated")
    c.close()


@pytest.fixture(scope="module")
def probe_workspace(
    site: HubSite, workspace_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A container with a workspace's options on the hub's workspace network, for probes."""
    import docker

    client = docker.from_env()
    data = tmp_path_factory.mktemp("gate-probe-data")
    volume = f"{site.settings.hub.name}-gate-probe"
    options = hardening.workspace_options(data, volume, site.settings)
    c = client.containers.run(
        workspace_image,
        ["python3", "-c", "import time; time.sleep(3600)"],
        name=f"{site.settings.hub.name}-gate-probe",
        detach=True,
        **hardening.run_kwargs(options),
    )
    try:
        yield c
    finally:
        c.remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            client.volumes.get(volume).remove(force=True)


@pytest.fixture(scope="module")
def outside(site: HubSite, workspace_image: str) -> Iterator[tuple[Any, str]]:
    """A container on an ordinary (not internal) bridge network of the test's own."""
    import docker

    client = docker.from_env()
    name = f"{site.settings.hub.name}-outside"
    net = client.networks.create(name, driver="bridge")
    c = None
    try:
        c = client.containers.run(
            workspace_image,
            ["python3", "-c", "import time; time.sleep(3600)"],
            name=name,
            detach=True,
            network=name,
        )
        net.reload()
        gateway = net.attrs["IPAM"]["Config"][0]["Gateway"]
        container_ip(c, name)
        yield c, gateway
    finally:
        if c is not None:
            c.remove(force=True)
        net.remove()


def http_get(container: Any, url: str) -> str:
    return str(container.exec_run(["python3", "-c", HTTP_GET, url]).output.decode().strip())


def gateway(site: HubSite) -> str:
    return network.gateway_of(site.settings.workspaces)


def test_hub_api_gate_bridge_address_answers_nothing_on_another_network(
    site: HubSite, outside: tuple[Any, str]
) -> None:
    container, its_gateway = outside
    port = site.settings.hub.api_port
    api = f"http://{gateway(site)}:{port}"
    assert http_get(container, f"{api}/hub/api/").startswith("closed")
    assert http_get(container, f"{api}/hub/login").startswith("closed")
    assert probe(container, gateway(site), site.settings.workspaces.airlock_port).startswith(
        "closed"
    )
    # Control: from there the host answers a port of its own on that network's gateway ...
    server = host_server()
    try:
        own = server.server_address[1]
        assert probe(container, its_gateway, own) == f"open host-{own}"
    finally:
        server.shutdown()
        server.server_close()
    # ... and the host itself reaches the gate (the hub waits for it there at start).
    import httpx

    assert httpx.get(f"{api}/hub/api/", timeout=5).status_code == 200


GATE_PROBE = """
import json, os, urllib.request, urllib.error
api = os.environ['JUPYTERHUB_API_URL']            # http://<bridge address>:<port>/hub/api
root = api[: -len('/hub/api')]
tok = os.environ['JUPYTERHUB_API_TOKEN']
def call(method, url, auth=True):
    req = urllib.request.Request(url, method=method, data=b'' if method == 'POST' else None,
                                 headers={'Authorization': 'token ' + tok} if auth else {})
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code
print(json.dumps({
    'api': call('GET', api + '/', auth=False),
    'whoami': call('GET', api + '/user'),
    'login_page': call('GET', root + '/hub/login', auth=False),
    'login_post': call('POST', root + '/hub/login', auth=False),
    'authorize': call('GET', api + '/oauth2/authorize?client_id=x&response_type=code'),
    'home': call('GET', root + '/hub/home'),
    'spawn': call('GET', root + '/hub/spawn/alice/other'),
    'users': call('GET', api + '/users'),
    'tokens': call('POST', api + '/users/alice/tokens'),
    'dotdot': call('GET', api + '/user/../users'),
    'escaped': call('GET', api + '/%75sers'),
}))
"""


def test_hub_api_gate_workspace_reaches_the_api_but_not_the_login_page(
    workspace: tuple[HubClient, str],
) -> None:
    c, server = workspace
    status = json.loads(c.execute(server, GATE_PROBE))
    # Control: what jupyterhub-singleuser needs answers (and the kernel ran at all,
    # through the gate's OAuth and token checks).
    assert status.pop("api") == 200
    assert status.pop("whoami") == 200
    assert status == dict.fromkeys(status, 404), status


def gate_pids(site: HubSite) -> list[int]:
    """The api-gate processes of this test's hub (its SDE_HOME in their environment)."""
    found = []
    home = f"SDE_HOME={site.home}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes()
            if b"sde.workspaces.gate" in cmdline and home in (proc / "environ").read_bytes().split(
                b"\0"
            ):
                found.append(int(proc.name))
    return found


def wait_for(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {seconds:.0f} s")
        time.sleep(0.2)


def api_answers(site: HubSite) -> bool:
    import httpx

    try:
        url = f"http://{gateway(site)}:{site.settings.hub.api_port}/hub/api/"
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_hub_api_gate_comes_back_when_it_dies(site: HubSite) -> None:
    before = gate_pids(site)
    assert len(before) == 1, before
    os.kill(before[0], signal.SIGKILL)
    wait_for(lambda: gate_pids(site) not in ([], before), 30, "the gate was not restarted")
    wait_for(lambda: api_answers(site), 30, "the restarted gate did not answer")


def iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True, check=False)


def test_firewall_order_and_rules_repaired_while_the_hub_runs(
    site: HubSite, probe_workspace: Any
) -> None:
    ws = site.settings.workspaces
    bridge = ws.bridge
    rules = network.firewall_rules(site.settings)
    wait_for(lambda: firewall.order(rules)["first"], 10, "sde's jumps were not first")
    repairs_before = len(list(list_events(site.engine, action="workspaces.firewall.repaired")))
    docker_user_jumps = firewall.parent_rules("FORWARD").count("-j DOCKER-USER")
    server = host_server()
    port = server.server_address[1]
    gates = gate_pids(site)
    try:
        # The gate's poll held still, so that the tampering can be shown to open the port.
        for pid in gates:
            os.kill(pid, signal.SIGSTOP)
        assert iptables("-I", "FORWARD", "1", "-j", "DOCKER-USER").returncode == 0
        assert iptables("-I", "INPUT", "1", "-i", bridge, "-j", "ACCEPT").returncode == 0
        assert iptables("-F", firewall.input_chain(bridge)).returncode == 0
        status = network.network_status(site.settings)
        assert status["firewall_first"] is False
        above = firewall.parent_rules("INPUT")[: status["firewall_input_positions"][0] - 1]
        assert f"-i {bridge} -j ACCEPT" in above
        # Control: with the rules out of order, the workspace reaches a host port.
        assert probe(probe_workspace, gateway(site), port) == f"open host-{port}"

        for pid in gates:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: firewall.order(rules)["first"], 10, "the order was not repaired")
        wait_for(
            lambda: (
                len(list(list_events(site.engine, action="workspaces.firewall.repaired")))
                > repairs_before
            ),
            10,
            "the repair was not audited",
        )
        assert probe(probe_workspace, gateway(site), port).startswith("closed")
        assert firewall.chain_listing(firewall.input_chain(bridge)).rstrip().endswith("-j DROP")
        status = network.network_status(site.settings)
        assert status["firewall_first"] is True
        # Other sites' sde jumps (parallel test runs) may sit above: first all the same.
        for key in ("firewall_input_positions", "firewall_forward_positions"):
            first = status[key][0]
            assert status[key] == [first, first + 1], status
        event = list(list_events(site.engine, action="workspaces.firewall.repaired"))[-1]
        problems = " ".join(event["details"]["problems"])
        assert "-j DOCKER-USER" in problems and f"-i {bridge} -j ACCEPT" in problems
        assert f"chain {firewall.input_chain(bridge)} changed" in problems
        assert event["target"] == f"firewall:{bridge}"
        log = site.hub.log_path.read_text(errors="replace") if site.hub else ""
        assert f"firewall of {bridge} repaired" in log
    finally:
        for pid in gates:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        while iptables("-C", "INPUT", "-i", bridge, "-j", "ACCEPT").returncode == 0:
            iptables("-D", "INPUT", "-i", bridge, "-j", "ACCEPT")
        if firewall.parent_rules("FORWARD").count("-j DOCKER-USER") > docker_user_jumps:
            iptables("-D", "FORWARD", "-j", "DOCKER-USER")
        server.shutdown()
        server.server_close()
    assert firewall.parent_rules("FORWARD").count("-j DOCKER-USER") == docker_user_jumps


def test_firewall_apply_puts_the_jumps_first_and_remove_leaves_nothing() -> None:
    bridge = f"sdewso{uuid.uuid4().hex[:6]}"
    rules = firewall.Rules(bridge, "10.213.98.1", (8081, 8082))
    guard = firewall.Guard(rules)
    try:
        assert guard.repair() == [
            f"INPUT: jump `-i {bridge} -j {firewall.input_chain(bridge)}` missing",
            f"INPUT: jump `-d 10.213.98.1/32 -j {firewall.address_chain(bridge)}` missing",
            f"FORWARD: jump `-i {bridge} -j {firewall.forward_chain(bridge)}` missing",
            f"FORWARD: jump `-o {bridge} -j {firewall.forward_chain(bridge)}` missing",
            f"chain {firewall.input_chain(bridge)} missing",
            f"chain {firewall.address_chain(bridge)} missing",
            f"chain {firewall.forward_chain(bridge)} missing",
        ]
        assert guard.repair() == []
        assert firewall.order(rules)["first"]
        # Another rule above sde's: found, and sde's jumps go back on top, once each.
        assert iptables("-I", "INPUT", "1", "-i", bridge, "-j", "ACCEPT").returncode == 0
        try:
            assert guard.repair() == [
                f"INPUT: `-i {bridge} -j ACCEPT` sits above sde's "
                f"`-i {bridge} -j {firewall.input_chain(bridge)}`",
                f"INPUT: `-i {bridge} -j ACCEPT` sits above sde's "
                f"`-d 10.213.98.1/32 -j {firewall.address_chain(bridge)}`",
            ]
            assert firewall.parent_rules("INPUT")[:3] == [
                f"-i {bridge} -j {firewall.input_chain(bridge)}",
                f"-d 10.213.98.1/32 -j {firewall.address_chain(bridge)}",
                f"-i {bridge} -j ACCEPT",
            ]
        finally:
            iptables("-D", "INPUT", "-i", bridge, "-j", "ACCEPT")
        assert guard.repair() == []
    finally:
        firewall.remove(bridge)
    everything = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    assert bridge not in everything
