"""Workspace isolation with a real Docker engine: what a workspace can and cannot reach.

Each isolation claim is paired with a control that shows the probe would have
succeeded without the control under test (a container on an ordinary internal
network, a container on the other network, the host itself), so that a broken
probe cannot pass for a working firewall. Everything is created per test run
under unique names (networks, bridges, containers, volumes, iptables chains) and
removed afterwards; traffic goes only to the host and to those containers.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import random
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from sde.core.config import Settings, load_settings
from sde.core.errors import ConfigError
from sde.workspaces import firewall, hardening, network
from tests.conftest import require_service
from tests.support import probes

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PROBE = """
import socket, sys
s = socket.socket()
s.settimeout(float(sys.argv[3]) if len(sys.argv) > 3 else 2.0)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("open", s.recv(64).decode().strip())
except OSError as exc:
    print("closed", type(exc).__name__)
"""

SERVE = """
import socketserver
class Banner(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(b"container-server\\n")
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", 8888), Banner).serve_forever()
"""

CONTAINER_PORT = 8888


class _Banner(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        port = cast(tuple[str, int], self.server.server_address)[1]
        self.request.sendall(f"host-{port}\n".encode())


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def host_server(host: str = "0.0.0.0") -> _Server:
    """A TCP server on the host, bound like a careless service: every address."""
    server = _Server((host, 0), _Banner)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_subnet(client: Any, taken: set[str]) -> str:
    """A /24 in 10.213.0.0/16 that no network of this engine or host route uses."""
    used = [ipaddress.IPv4Network(s) for s in taken]
    for net in client.networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet", "").count(".") == 3:
                used.append(ipaddress.IPv4Network(cfg["Subnet"]))
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for line in routes.splitlines():
        first = line.split()[0]
        if "/" in first:
            used.append(ipaddress.IPv4Network(first, strict=False))
    for _ in range(200):
        candidate = ipaddress.IPv4Network(f"10.213.{random.randint(100, 250)}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return str(candidate)
    raise RuntimeError("no free /24 in 10.213.0.0/16")


def probe(container: Any, host: str, port: int, timeout: float = 2.0) -> str:
    result = container.exec_run(["python3", "-c", PROBE, host, str(port), str(timeout)])
    return result.output.decode().strip()


def wait_open(host: str, port: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{host}:{port} never answered")


def container_ip(container: Any, network_name: str) -> str:
    container.reload()
    return str(container.attrs["NetworkSettings"]["Networks"][network_name]["IPAddress"])


@dataclass
class Site:
    settings: Settings
    net: network.WorkspaceNetwork
    image: str
    data_dir: Path
    hub_port: int
    airlock_port: int
    other_port: int
    control_net: Any
    control_gateway: str
    outside_net: Any
    containers: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def site(
    docker_engine: str, workspace_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    import docker

    client = docker.from_env()
    run = uuid.uuid4().hex[:6]
    prefix = f"sde-wst-{run}"
    servers = [host_server() for _ in range(3)]
    hub_port, airlock_port, other_port = (s.server_address[1] for s in servers)
    subnet = free_subnet(client, set())
    control_subnet = free_subnet(client, {subnet})
    home = tmp_path_factory.mktemp("isolation")
    data_dir = home / "data"
    data_dir.mkdir()
    (data_dir / "person.parquet").write_bytes(b"PAR1 not really")
    settings = load_settings(
        env={
            "SDE_HOME": str(home),
            "SDE_WORKSPACES_NETWORK": prefix,
            "SDE_WORKSPACES_BRIDGE": f"sdewst{run}",
            "SDE_WORKSPACES_SUBNET": subnet,
            "SDE_WORKSPACES_PIDS_LIMIT": "128",
            "SDE_HUB_API_PORT": str(hub_port),
            "SDE_WORKSPACES_AIRLOCK_PORT": str(airlock_port),
            "SDE_HUB_MEM_LIMIT": "512m",
            "SDE_HUB_CPU_LIMIT": "0.5",
        }
    )
    created_networks: list[Any] = []
    volumes = [f"{prefix}-work1", f"{prefix}-work2"]
    s: Site | None = None
    try:
        net = network.ensure_network(settings)
        # Control: an internal network as Docker makes it, without sde's firewall or no-ICC.
        control_gateway = str(ipaddress.IPv4Network(control_subnet).network_address + 1)
        control_net = client.networks.create(
            f"{prefix}-control",
            driver="bridge",
            internal=True,
            ipam=docker.types.IPAMConfig(
                pool_configs=[docker.types.IPAMPool(subnet=control_subnet, gateway=control_gateway)]
            ),
        )
        created_networks.append(control_net)
        # Another network on the same engine, the kind a hub or a database would sit on.
        outside_net = client.networks.create(f"{prefix}-outside", driver="bridge")
        created_networks.append(outside_net)
        s = Site(
            settings,
            net,
            workspace_image,
            data_dir,
            hub_port,
            airlock_port,
            other_port,
            control_net,
            control_gateway,
            outside_net,
        )
        for i, name in enumerate(("ws1", "ws2")):
            options = hardening.workspace_options(data_dir, volumes[i], settings)
            s.containers[name] = client.containers.run(
                workspace_image,
                ["python3", "-c", SERVE],
                name=f"{prefix}-{name}",
                detach=True,
                **hardening.run_kwargs(options),
            )
        for name, net_name in (
            ("ctl1", control_net.name),
            ("ctl2", control_net.name),
            ("outside", outside_net.name),
            ("outside-peer", outside_net.name),
        ):
            s.containers[name] = client.containers.run(
                workspace_image,
                ["python3", "-c", SERVE],
                name=f"{prefix}-{name}",
                detach=True,
                network=net_name,
            )
        for name, c in s.containers.items():
            net_name = {"ws": net.name, "ct": control_net.name, "ou": outside_net.name}[name[:2]]
            wait_open(container_ip(c, net_name), CONTAINER_PORT)
        yield s
    finally:
        if s is not None:
            for c in s.containers.values():
                c.remove(force=True)
        for n in created_networks:
            n.remove()
        network.remove_network(settings)
        for v in volumes:
            with contextlib.suppress(docker.errors.NotFound):
                client.volumes.get(v).remove(force=True)
        for server in servers:
            server.shutdown()
            server.server_close()


def test_workspace_reaches_hub_and_airlock_ports_only(site: Site) -> None:
    ws = site.containers["ws1"]
    gw = site.net.gateway
    assert probe(ws, gw, site.hub_port) == f"open host-{site.hub_port}"
    assert probe(ws, gw, site.airlock_port) == f"open host-{site.airlock_port}"
    assert probe(ws, gw, site.other_port).startswith("closed")
    # Control: without sde's firewall, the host answers that port on an internal network.
    ctl = site.containers["ctl1"]
    assert probe(ctl, site.control_gateway, site.other_port) == f"open host-{site.other_port}"


def test_workspace_cannot_reach_host_ports_on_its_other_addresses(site: Site) -> None:
    """The allowed ports are allowed on the bridge address only, not on the host's others."""
    ws = site.containers["ws1"]
    assert probe(ws, site.control_gateway, site.hub_port).startswith("closed")
    ctl = site.containers["ctl1"]
    assert probe(ctl, site.control_gateway, site.hub_port) == f"open host-{site.hub_port}"


def test_workspace_cannot_reach_a_server_on_another_network(site: Site) -> None:
    target = container_ip(site.containers["outside"], site.outside_net.name)
    assert probe(site.containers["ws1"], target, CONTAINER_PORT).startswith("closed")
    peer = site.containers["outside-peer"]
    assert probe(peer, target, CONTAINER_PORT) == "open container-server"


def test_workspaces_cannot_reach_each_other(site: Site) -> None:
    ws2 = container_ip(site.containers["ws2"], site.net.name)
    assert probe(site.containers["ws1"], ws2, CONTAINER_PORT).startswith("closed")
    # The server in ws2 is up (the host reaches it) ...
    wait_open(ws2, CONTAINER_PORT, seconds=2)
    # ... and on an ordinary internal network two containers do reach each other.
    ctl2 = container_ip(site.containers["ctl2"], site.control_net.name)
    assert probe(site.containers["ctl1"], ctl2, CONTAINER_PORT) == "open container-server"


def test_workspace_has_no_docker_socket(site: Site) -> None:
    script = (
        "import os; print([p for p in ('/var/run/docker.sock', '/run/docker.sock',"
        " '/var/run/docker', '/run/containerd') if os.path.exists(p)])"
    )
    result = site.containers["ws1"].exec_run(["python3", "-c", script])
    assert result.exit_code == 0
    assert result.output.decode().strip() == "[]"


def test_workspace_has_no_ipv6(site: Site) -> None:
    """The firewall is IPv4: a workspace has no IPv6 address, not even link-local."""
    ws = site.containers["ws1"]
    assert ws.exec_run(["cat", "/proc/net/if_inet6"]).output.decode().strip() == ""
    flag = ws.exec_run(["cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6"]).output.decode()
    assert flag.strip() == "1"


def _write(container: Any, path: str) -> str:
    script = (
        "import sys\n"
        "try:\n"
        "    open(sys.argv[1], 'w').write('x'); print('written')\n"
        "except OSError as exc:\n"
        "    print(exc.errno)\n"
    )
    return container.exec_run(["python3", "-c", script, path]).output.decode().strip()


def test_workspace_data_mount_is_read_only(site: Site) -> None:
    ws = site.containers["ws1"]
    assert _write(ws, "/data/person.parquet") == str(errno.EROFS)
    assert _write(ws, "/data/new.parquet") == str(errno.EROFS)
    read = ws.exec_run(["python3", "-c", "print(open('/data/person.parquet','rb').read(4))"])
    assert read.output.decode().strip() == "b'PAR1'"
    assert (site.data_dir / "person.parquet").read_bytes() == b"PAR1 not really"


def test_workspace_root_filesystem_is_read_only_with_writable_scratch_and_work(
    site: Site,
) -> None:
    ws = site.containers["ws1"]
    assert _write(ws, "/etc/sde-test") == str(errno.EROFS)
    assert _write(ws, "/opt/sde-test") == str(errno.EROFS)
    assert _write(ws, "/tmp/scratch") == "written"
    assert _write(ws, "/home/researcher/.scratch") == "written"
    assert _write(ws, "/home/researcher/work/analysis.py") == "written"


def test_workspace_runs_unprivileged_with_limits(site: Site) -> None:
    ws = site.containers["ws1"]
    status = ws.exec_run(["cat", "/proc/self/status"]).output.decode()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Uid"].split()[:2] == ["1000", "1000"]
    assert fields["Gid"].split()[:2] == ["1000", "1000"]
    assert int(fields["CapEff"].strip(), 16) == 0
    assert int(fields["CapBnd"].strip(), 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    ws.reload()
    host = ws.attrs["HostConfig"]
    assert host["PidsLimit"] == 128
    assert host["Memory"] == 512 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000
    assert host["ReadonlyRootfs"] is True
    assert host["Privileged"] is False


def test_workspace_seccomp_refuses_ptrace_io_uring_personality_userfaultfd(site: Site) -> None:
    """The calls that let code reach into a process of its own uid, or into the kernel's
    riskier corners, answer EPERM (Docker's default allows ptrace on kernels >= 4.8)."""
    code = probes.syscall_probe("child")
    found = probes.parse(site.containers["ws1"].exec_run(["python3", "-c", code]).output.decode())
    assert found["same_uid"] is True
    assert {call: found[call] for call in probes.CALLS} == dict.fromkeys(probes.CALLS, errno.EPERM)
    # Control: under Docker's default profile the same attach succeeds.
    control = probes.parse(
        site.containers["ctl1"].exec_run(["python3", "-c", code], user="1000").output.decode()
    )
    assert control["same_uid"] is True and control["ptrace_attach"] == 0, control


def test_workspace_swap_limit_equals_memory_limit(site: Site) -> None:
    ws = site.containers["ws1"]
    ws.reload()
    host = ws.attrs["HostConfig"]
    assert host["Memory"] == 512 * 1024 * 1024
    assert host["MemorySwap"] == host["Memory"]
    # What the kernel enforces, read from the container's own cgroup.
    script = (
        "import pathlib\n"
        "v2 = pathlib.Path('/sys/fs/cgroup/memory.swap.max')\n"
        "v1 = pathlib.Path('/sys/fs/cgroup/memory')\n"
        "if v2.exists():\n"
        "    print('v2', v2.read_text().strip())\n"
        "else:\n"
        "    mem = (v1 / 'memory.limit_in_bytes').read_text().strip()\n"
        "    swap = (v1 / 'memory.memsw.limit_in_bytes').read_text().strip()\n"
        "    print('v1', int(swap) - int(mem), mem)\n"
    )
    out = ws.exec_run(["python3", "-c", script]).output.decode().split()
    if out[0] == "v2":
        assert out == ["v2", "0"]
    else:
        assert out == ["v1", "0", str(512 * 1024 * 1024)]


def test_workspace_default_route_removal_refuses_a_container_not_running(site: Site) -> None:
    import docker

    from sde.workspaces import routes

    client = docker.from_env()
    container = client.containers.create(
        site.image, ["true"], network=site.net.name, name=f"{site.settings.workspaces.network}-nr"
    )
    try:
        with pytest.raises(routes.RouteError, match="not running"):
            routes.remove_default_route(client, container.id)
    finally:
        container.remove(force=True)


def test_workspace_fork_bomb_stops_at_pids_limit(site: Site) -> None:
    script = (
        "import threading, time\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(1000):\n"
        "        threading.Thread(target=time.sleep, args=(5,), daemon=True).start(); n += 1\n"
        "except RuntimeError:\n"
        "    pass\n"
        "print(n)\n"
    )
    started = int(site.containers["ws2"].exec_run(["python3", "-c", script]).output.decode())
    assert 0 < started < 128


def test_workspace_dns_gets_no_answer_and_nothing_reaches_the_host(site: Site) -> None:
    """The workspace's only resolver is the bridge address, where the firewall drops DNS."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind((site.net.gateway, 53))
    listener.settimeout(0.5)
    try:
        ws = site.containers["ws1"]
        resolve = (
            "import socket\n"
            "try:\n"
            "    print(socket.getaddrinfo('sde-probe.invalid', 80))\n"
            "except OSError as exc:\n"
            "    print('unresolved')\n"
        )
        assert ws.exec_run(["python3", "-c", resolve]).output.decode().strip() == "unresolved"
        with pytest.raises(TimeoutError):
            listener.recvfrom(512)
    finally:
        listener.close()


def test_firewall_apply_is_idempotent_and_remove_leaves_nothing() -> None:
    bridge = f"sdewsf{uuid.uuid4().hex[:6]}"
    rules = firewall.Rules(bridge, "10.213.99.1", (8081, 8082))
    try:
        firewall.apply(rules)
        once = firewall.listing(bridge)
        firewall.apply(rules)
        assert firewall.listing(bridge) == once
        inputs = subprocess.run(["iptables", "-S", "INPUT"], capture_output=True, text=True)
        assert inputs.stdout.count(f"-i {bridge} ") == 1
        assert "--dport 8081 -j ACCEPT" in once and once.rstrip().endswith("-j DROP")
    finally:
        firewall.remove(bridge)
    assert not firewall.installed(bridge)
    assert firewall.listing(bridge) == ""
    everything = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    assert bridge not in everything


def test_ensure_network_refuses_a_network_that_is_not_isolated(
    docker_engine: str, tmp_path: Path
) -> None:
    import docker

    client = docker.from_env()
    run = uuid.uuid4().hex[:6]
    name = f"sde-wst-{run}-open"
    bridge = f"sdewso{run}"
    open_net = client.networks.create(name, driver="bridge")
    try:
        settings = load_settings(
            env={
                "SDE_HOME": str(tmp_path),
                "SDE_WORKSPACES_NETWORK": name,
                "SDE_WORKSPACES_BRIDGE": bridge,
                "SDE_WORKSPACES_SUBNET": free_subnet(client, set()),
            }
        )
        with pytest.raises(ConfigError, match="is not internal"):
            network.ensure_network(settings)
        assert not firewall.installed(bridge)
    finally:
        open_net.remove()


def test_cli_network_up_status_down(
    docker_engine: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    import docker

    from sde.cli import context
    from tests.support.cli import run_sde

    run = uuid.uuid4().hex[:6]
    bridge = f"sdewsc{run}"
    monkeypatch.setenv("SDE_HOME", str(tmp_path))
    monkeypatch.setenv("SDE_WORKSPACES_NETWORK", f"sde-wst-{run}-cli")
    monkeypatch.setenv("SDE_WORKSPACES_BRIDGE", bridge)
    monkeypatch.setenv("SDE_WORKSPACES_SUBNET", free_subnet(docker.from_env(), set()))
    context.reset()
    try:
        up = run_sde(capsys, "workspaces", "network", "up")
        assert up.code == 0, up.err
        assert "firewall installed" in up.out
        status = run_sde(capsys, "workspaces", "network", "status", "--json")
        info = json.loads(status.out)
        assert info["exists"] and info["internal"] and not info["icc"]
        assert info["firewall_installed"]
    finally:
        down = run_sde(capsys, "workspaces", "network", "down")
        context.reset()
    assert down.code == 0, down.err
    assert "removed" in down.out
    assert not firewall.installed(bridge)


# ------------------------------------------------ DNS: CVE-2024-29018 on a loopback resolver
#
# Engines before 26.0 forward a name the embedded resolver does not know from the
# host's namespace when the host's resolv.conf names a loopback resolver (as with
# systemd-resolved), also for containers on internal networks. To show that no
# workspace query leaves the host, the test starts a private engine whose host
# resolv.conf names a UDP listener on loopback: a control container on an
# internal network reaches it (on engines < 26), a hardened workspace does not.

LOOPBACK_RESOLVER = "127.0.0.77"


@dataclass
class PrivateEngine:
    client: Any
    sock: str
    version: str


def _library_rootfs(root: Path) -> None:
    """A tiny image: getent and the C library, enough to resolve a name."""
    getent = Path("/usr/bin/getent")
    libs = subprocess.run(["ldd", str(getent)], capture_output=True, text=True, check=True)
    files = [getent] + [Path(p) for p in libs.stdout.split() if p.startswith("/")]
    for f in files:
        target = root / f.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.read_bytes())
        target.chmod(0o755)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/nsswitch.conf").write_text("hosts: files dns\n")


# The private engine's default bridge: an address range no other test uses.
PRIVATE_BRIDGE_CIDR = "10.219.77.1/24"


@pytest.fixture(scope="module")
def private_engine(docker_engine: str) -> Iterator[PrivateEngine]:
    import io
    import os
    import shutil
    import tarfile

    import docker

    have = shutil.which("dockerd") and shutil.which("unshare") and os.geteuid() == 0
    require_service("private docker engine", bool(have), "needs root, dockerd and unshare")
    base = Path(tempfile.mkdtemp(prefix="sde-dnsd-", dir="/var/tmp"))
    (base / "resolv.conf").write_text(f"nameserver {LOOPBACK_RESOLVER}\n")
    sock = f"unix://{base}/docker.sock"
    # Its own mount namespace, so that only this engine sees the loopback resolv.conf;
    # no iptables of its own, so that it cannot disturb the engine everyone uses; and a
    # default bridge of its own: with `--bridge=none` dockerd deletes the host's
    # docker0, which the engine everyone uses still needs.
    bridge = f"sdedns{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", PRIVATE_BRIDGE_CIDR, "dev", bridge], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    script = (
        f"mount --bind {base}/resolv.conf /etc/resolv.conf && exec dockerd"
        f" --data-root {base}/data --exec-root {base}/exec --pidfile {base}/dockerd.pid"
        f" -H {sock} --bridge={bridge} --iptables=false --ip-masq=false --userland-proxy=false"
    )
    log = (base / "dockerd.log").open("w")
    proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client: Any = None
    try:
        deadline = time.monotonic() + 60
        while client is None:
            try:
                client = docker.DockerClient(base_url=sock)
                client.ping()
            except docker.errors.DockerException:
                client = None
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (base / "dockerd.log").read_text()[-800:]
                    raise AssertionError(f"private dockerd did not start: {tail}") from None
                time.sleep(0.3)
        rootfs = base / "rootfs"
        _library_rootfs(rootfs)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(rootfs, arcname=".")
        client.api.import_image_from_data(buf.getvalue(), repository="sde-dnsprobe", tag="test")
        yield PrivateEngine(client, sock, client.version()["Version"])
    finally:
        if client is not None:
            for c in client.containers.list(all=True):
                c.remove(force=True)
            client.close()
        _stop_engine(proc, base / "dockerd.pid")
        subprocess.run(["ip", "link", "del", bridge], check=False)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def _stop_engine(proc: subprocess.Popen[bytes], pidfile: Path) -> None:
    """Stop the private dockerd (by its own pid: unshare may have forked) and wait for it."""
    import os
    import signal

    pids = {proc.pid}
    with contextlib.suppress(OSError, ValueError):
        pids.add(int(pidfile.read_text()))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        proc.poll()
        time.sleep(0.2)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def engine_env(sock: str) -> Iterator[None]:
    """sde's own network code, pointed at the private engine."""
    import os

    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = sock
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = old


class _Listener:
    """Every UDP datagram that reaches the loopback resolver address."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 53))
        self.sock.settimeout(0.2)
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(2048)
                self.received.append(data)
            except TimeoutError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def asked_for(self, label: str) -> bool:
        return any(label.encode() in packet for packet in self.received)


def test_workspace_dns_never_reaches_a_loopback_resolver_of_the_host(
    private_engine: PrivateEngine, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    client = private_engine.client
    settings = load_settings(
        env={
            "SDE_HOME": str(tmp_path),
            "SDE_WORKSPACES_NETWORK": f"sde-wst-{run}-dns",
            "SDE_WORKSPACES_BRIDGE": f"sdewsd{run}",
            "SDE_WORKSPACES_SUBNET": free_subnet(docker_main_client(), set()),
        }
    )
    data = tmp_path / "data"
    data.mkdir()
    listener = _Listener(LOOPBACK_RESOLVER)
    try:
        with engine_env(private_engine.sock):
            net = network.ensure_network(settings)
        options = hardening.workspace_options(data, f"sde-wst-{run}-dnswork", settings)
        workspace = client.containers.run(
            "sde-dnsprobe:test",
            ["/usr/bin/getent", "hosts", f"workspace-{run}.invalid"],
            detach=True,
            **hardening.run_kwargs(options),
        )
        control = client.containers.run(
            "sde-dnsprobe:test",
            ["/usr/bin/getent", "hosts", f"control-{run}.invalid"],
            detach=True,
            network=net.name,
        )
        for c in (workspace, control):
            c.wait(timeout=60)
        # getent exits 2: not found. The workspace got no answer from anywhere.
        assert workspace.wait(timeout=1)["StatusCode"] == 2
        time.sleep(0.5)
        assert not listener.asked_for(f"workspace-{run}")
        if int(private_engine.version.split(".")[0]) < 26:
            # The control shows the leak this engine has, so the test above can fail.
            assert listener.asked_for(f"control-{run}"), private_engine.version
    finally:
        listener.close()
        for c in client.containers.list(all=True):
            c.remove(force=True)
        with engine_env(private_engine.sock):
            network.remove_network(settings)
        with contextlib.suppress(Exception):
            client.volumes.get(f"sde-wst-{run}-dnswork").remove(force=True)


def docker_main_client() -> Any:
    import docker

    return docker.from_env()
