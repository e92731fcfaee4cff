"""The warm pool through a real hub, real Docker and real host mounts.

A pool container holds nothing of anyone until a spawn claims it; a claimed
one is a workspace like a cold one (data read-only, work volume writable and
persistent, same hardening); a stop releases its slot and the pool refills;
two claims of one container cannot both win; with the pool off, spawns are
cold.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from sde.audit import list_events
from sde.hub.client import HubClient
from sde.workspaces import hardening, names, network, pool
from sde.workspaces.engine import list_containers
from sde.workspaces.pool import mounts
from tests.support import probes
from tests.support.hub import PASSWORD, HubSite, make_site, running
from tests.support.hub_data import expected_counts, provision_project, query_counts
from tests.support.registry import make_active_project, make_person

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PROJECT = "warm-study"


def _site(home: Path, image: str, warm_pool: int) -> HubSite:
    s = make_site(home, docker=True, SDE_HUB_IMAGE=image, SDE_WORKSPACES_WARM_POOL=str(warm_pool))
    for name in ("wendy", "walt"):
        make_person(s.engine, name)
    make_active_project(s.engine, PROJECT, "wendy", "walt")
    provision_project(s, PROJECT)
    for name in ("wendy", "walt"):
        s.enrol(name)
    return s


@pytest.fixture(scope="module")
def site(workspace_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSite]:
    s = _site(tmp_path_factory.mktemp("warm-pool") / "home", workspace_image, 1)
    with running(s):
        yield s


def signed_in(site: HubSite, username: str) -> HubClient:
    c = HubClient(site.url)
    assert c.login(username, PASSWORD, site.code(username)).ok
    c.api_token()
    return c


def ready_pool(site: HubSite) -> list[docker.models.containers.Container]:
    pool.wait_ready(site.settings)
    client = docker.from_env()
    return pool.ready_containers(site.settings, pool.pool_containers(client, site.settings))


def run(container: docker.models.containers.Container, script: str) -> tuple[int, str]:
    code, out = container.exec_run(["sh", "-c", script], user="1000")
    return code, out.decode(errors="replace")


def spawn_events(site: HubSite, username: str) -> list[dict]:
    return [
        e
        for e in list_events(site.engine, action="workspace.spawn")
        if e["target"] == f"workspace:{username}/{PROJECT}"
    ]


def workspace_container(site: HubSite, username: str) -> docker.models.containers.Container:
    # The keyed name of (person, project), cold or claimed (sde.workspaces.names).
    return docker.from_env().containers.get(names.container_name(site.settings, username, PROJECT))


def test_warm_pool_container_holds_no_data_token_or_server(site):
    (container,) = ready_pool(site)
    code, out = run(
        container,
        "ls -A /data /home/researcher/work /run/sde; env | grep -c JUPYTERHUB_ || true; "
        "python3 -c 'import socket; s=socket.socket(); print(s.connect_ex((\"127.0.0.1\", 8888)))'",
    )
    assert code == 0, out
    lines = out.split()
    # Three empty directory listings (headers only), no JupyterHub variable, port closed.
    assert lines == ["/data:", "/home/researcher/work:", "/run/sde:", "0", "111"], out


def test_warm_pool_status_command_shows_ready_container(site):
    (container,) = ready_pool(site)
    out = subprocess.run(
        [str(Path(sys.executable).with_name("sde")), "workspaces", "pool", "status", "--json"],
        env={**os.environ, **site.env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    info = json.loads(out)
    assert info["size"] == 1 and info["ready"] == [container.name] and info["warming"] == []
    assert info["filler"] == "running"  # and its mounts reach containers


def test_warm_pool_container_is_hardened_like_a_workspace(site):
    (container,) = ready_pool(site)
    host = container.attrs["HostConfig"]
    assert container.attrs["Config"]["User"] == hardening.USER
    assert host["CapDrop"] == ["ALL"]
    assert host["ReadonlyRootfs"] is True
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["PidsLimit"] == site.settings.workspaces.pids_limit
    assert host["NanoCpus"] == int(float(site.settings.hub.cpu_limit) * 1e9)
    assert host["Memory"] > 0 and host["MemorySwap"] == host["Memory"]
    assert any(opt.startswith("seccomp=") for opt in host["SecurityOpt"])
    assert list(container.attrs["NetworkSettings"]["Networks"]) == [
        site.settings.workspaces.network
    ]
    binds = {b.split(":")[1]: b.split(":")[2] for b in host["Binds"]}
    assert binds[hardening.DATA_DIR] == "ro,rslave"
    assert binds[pool.CLAIM_DIR] == "ro"


def test_warm_pool_container_has_no_default_route_before_a_claim(site):
    (container,) = ready_pool(site)
    gateway = network.gateway_of(site.settings.workspaces)
    api = f"http://{gateway}:{site.settings.hub.api_port}/hub/api/"
    _, out = container.exec_run(["python3", "-c", probes.route_probe(api)], user="1000")
    # Only the on-link subnet route, and through it the hub API answers.
    found = probes.parse(out.decode())
    assert found["default"] == [] and found["routes"] == 1, found
    assert isinstance(found["hub"], int), found


def test_warm_pool_spawn_claims_ready_container_and_serves_project_data(site):
    (ready,) = ready_pool(site)
    slot = ready.labels[pool.SLOT_LABEL]
    with signed_in(site, "wendy") as c:
        server = c.start_workspace(PROJECT)
        try:
            container = workspace_container(site, "wendy")
            assert container.id == ready.id  # the pool's container, renamed
            assert spawn_events(site, "wendy")[-1]["details"]["warm"] is True
            assert query_counts(c, server) == expected_counts(site, PROJECT)
            _, out = run(
                container,
                "touch /data/x 2>&1; echo notes > /home/researcher/work/notes.txt && "
                "stat -c %U /home/researcher/work/notes.txt; stat -c %a /run/sde/claim.json",
            )
            assert "Read-only file system" in out, out
            assert out.split()[-2:] == ["researcher", "400"], out
        finally:
            c.stop_workspace(PROJECT)
            wait_gone(site, "wendy")
    # The slot is released: no mount or file of it is left on the host.
    assert not (pool.slots_root(site.settings) / slot).exists()
    assert not any(
        p.startswith(str(pool.slots_root(site.settings)) + "/") for p in mounts.mount_points()
    )


def test_warm_pool_work_volume_persists_across_warm_spawns(site):
    for attempt in range(2):
        ready_pool(site)
        with signed_in(site, "walt") as c:
            server = c.start_workspace(PROJECT)
            try:
                out = c.execute(
                    server,
                    "import pathlib; p = pathlib.Path('/home/researcher/work/count.txt')\n"
                    "n = int(p.read_text()) + 1 if p.exists() else 1\n"
                    "p.write_text(str(n)); print(n)",
                )
                assert out == str(attempt + 1)
                assert spawn_events(site, "walt")[-1]["details"]["warm"] is True
            finally:
                c.stop_workspace(PROJECT)
                wait_gone(site, "walt")


def test_warm_pool_refills_after_a_claim(site):
    before = {c.id for c in ready_pool(site)}
    with signed_in(site, "wendy") as c:
        c.start_workspace(PROJECT)
        try:
            after = {c.id for c in ready_pool(site)}
            assert after and not after & before
        finally:
            c.stop_workspace(PROJECT)
            wait_gone(site, "wendy")


def test_warm_pool_two_claims_of_one_container_one_wins(site, tmp_path):
    (ready,) = ready_pool(site)
    client = docker.from_env()
    image_id = ready.attrs["Image"]
    data = (site.settings.projects_dir / PROJECT / "data").resolve()
    server = {"env": {}, "argv": ["jupyterhub-singleuser"], "cwd": hardening.WORK_DIR}

    def take(name: str) -> pool.Claimed | None:
        return pool.claim(
            docker.from_env(),
            site.settings,
            image_id,
            f"{site.settings.hub.name}-race-{name}",
            data,
            tmp_path,
            server,
        )

    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        results = list(ex.map(take, ["a", "b"]))
    won = [r for r in results if r is not None]
    assert len(won) == 1, results
    container = client.containers.get(won[0].container_id)
    claim = json.loads((pool.slot_of(site.settings, won[0].slot).claim_file).read_text())
    assert claim["argv"] == ["jupyterhub-singleuser"]
    pool.remove_container(client, site.settings, container)
    assert not (pool.slots_root(site.settings) / won[0].slot).exists()


def test_warm_pool_container_refuses_to_serve_without_the_project_data(site, tmp_path):
    # As if the hub's mounts did not reach the container (no mount propagation).
    (ready,) = ready_pool(site)
    empty = tmp_path / "not-a-build"
    empty.mkdir()
    logs = ready.logs(stream=True, follow=True)
    taken = pool.claim(
        docker.from_env(),
        site.settings,
        ready.attrs["Image"],
        f"{site.settings.hub.name}-no-data",
        empty,
        tmp_path,
        {"env": {"SDE_DATA_DIR": "/data"}, "argv": ["jupyterhub-singleuser"]},
    )
    assert taken is not None
    text = b"".join(logs).decode(errors="replace")  # ends when the container exits
    assert "not serving an empty workspace" in text, text
    pool.release(site.settings, taken.slot)


def test_warm_pool_container_of_another_image_is_never_claimed(site, tmp_path):
    (ready,) = ready_pool(site)
    data = (site.settings.projects_dir / PROJECT / "data").resolve()
    taken = pool.claim(
        docker.from_env(),
        site.settings,
        "sha256:" + "0" * 64,  # e.g. the image was rebuilt with a security fix since
        f"{site.settings.hub.name}-other-image",
        data,
        tmp_path,
        {"env": {}, "argv": ["jupyterhub-singleuser"]},
    )
    assert taken is None
    ready.reload()
    assert ready.name == pool.ready_name(site.settings, ready.labels[pool.SLOT_LABEL])
    assert not pool.slot_of(site.settings, ready.labels[pool.SLOT_LABEL]).claim_file.exists()


def wait_gone(site: HubSite, username: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            workspace_container(site, username)
        except docker.errors.NotFound:
            return
        time.sleep(0.2)
    raise AssertionError(f"workspace of {username} still there after {timeout} s")


def test_warmstart_preloads_every_enabled_server_extension(workspace_image):
    out = docker.from_env().containers.run(
        workspace_image,
        ["python3", "-c", "import json, sde.warmstart as w; print(json.dumps(w.preload()))"],
        remove=True,
        stderr=True,
        network_disabled=True,
    )
    text = out.decode()
    assert "not preloaded" not in text, text
    loaded = json.loads(text.strip().splitlines()[-1])
    assert {"jupyterlab", "jupyter_server_terminals", "notebook_shim"} <= set(loaded), loaded


@pytest.fixture(scope="module")
def cold_site(workspace_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSite]:
    s = _site(tmp_path_factory.mktemp("cold") / "home", workspace_image, 0)
    with running(s):
        yield s


def test_warm_pool_off_spawns_cold_and_keeps_no_pool(cold_site):
    s = cold_site
    client = docker.from_env()
    assert pool.pool_containers(client, s.settings) == []
    with signed_in(s, "wendy") as c:
        server = c.start_workspace(PROJECT)
        try:
            assert spawn_events(s, "wendy")[-1]["details"]["warm"] is False
            assert query_counts(c, server) == expected_counts(s, PROJECT)
            assert pool.SLOT_LABEL not in workspace_container(s, "wendy").labels
        finally:
            c.stop_workspace(PROJECT)
            wait_gone(s, "wendy")


def test_warm_pool_off_cold_workspace_has_no_default_route_and_no_swap(cold_site):
    s = cold_site
    with signed_in(s, "walt") as c:
        server = c.start_workspace(PROJECT)
        try:
            assert spawn_events(s, "walt")[-1]["details"]["warm"] is False
            found = probes.parse(c.execute(server, probes.route_probe()))
            # Only the on-link subnet route; the hub API on the bridge address answers.
            assert found == {"default": [], "routes": 1, "hub": 200}
            host = workspace_container(s, "walt").attrs["HostConfig"]
            assert host["Memory"] > 0 and host["MemorySwap"] == host["Memory"]
            assert any(opt.startswith("seccomp=") for opt in host["SecurityOpt"])
        finally:
            c.stop_workspace(PROJECT)
            wait_gone(s, "walt")


def test_list_containers_skips_one_removed_while_listing(workspace_image):
    client = docker.from_env()
    key, value = "org.sde.test", uuid.uuid4().hex
    made = [
        client.containers.create(workspace_image, ["true"], labels={key: value}) for _ in range(3)
    ]
    going = list(made)
    real = client.api.containers

    def listing(**kwargs):
        rows = real(**kwargs)
        going.pop(0).remove(force=True)  # as an auto_remove container exiting right then
        return rows

    client.api.containers = listing
    try:
        filters = {"label": f"{key}={value}"}
        with pytest.raises(docker.errors.NotFound):  # docker-py's own listing
            client.containers.list(all=True, filters=filters)
        found = list_containers(client, all=True, filters=filters)
        assert [c.id for c in found] == [made[2].id]
    finally:
        client.api.containers = real
        made[2].remove(force=True)
