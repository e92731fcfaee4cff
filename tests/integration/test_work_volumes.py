"""Work volumes and workspace names through a real hub, real Docker and real mounts.

The pair that shared a work volume in the attack (person `alice` in project
`diabetes-outcomes`, person `alice-diabetes` in project `outcomes`) start at the same
moment; each gets a volume of its own. Each work volume is a filesystem of its own
size (`[workspaces] work_quota`): writing stops there with ENOSPC, on the warm and the
cold path. Names seen in Docker's DNS on the workspace network say nothing of who works
on what. A volume of the old name is carried over once, and an ambiguous one waits for
an operator.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from sde.audit import list_events
from sde.hub.client import HubClient, HubError
from sde.workspaces import names, workvolumes
from tests.support.hub import PASSWORD, HubSite, make_site, running
from tests.support.hub_data import provision_project
from tests.support.registry import make_active_project, make_person

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PAIR = [("alice", "diabetes-outcomes"), ("alice-diabetes", "outcomes")]
QUOTA_MB = 64
WORDS = ("alice", "diabetes", "outcomes")
MB = 2**20
SDE = str(Path(sys.executable).with_name("sde"))


@pytest.fixture(scope="module")
def site(workspace_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSite]:
    home = tmp_path_factory.mktemp("work-volumes") / "home"
    s = make_site(
        home,
        docker=True,
        SDE_HUB_IMAGE=workspace_image,
        SDE_WORKSPACES_WORK_QUOTA=f"{QUOTA_MB}M",
    )
    people = ("alice", "alice-diabetes", "carol", "eve", "eve-diabetes")
    for name in people:
        make_person(s.engine, name)
    make_active_project(s.engine, "diabetes-outcomes", "alice", "eve")
    make_active_project(s.engine, "outcomes", "alice-diabetes", "carol", "eve-diabetes")
    provision_project(s, "diabetes-outcomes")
    provision_project(s, "outcomes")
    for name in people:
        s.enrol(name)
    with running(s):
        yield s


def signed_in(site: HubSite, username: str) -> HubClient:
    c = HubClient(site.url)
    assert c.login(username, PASSWORD, site.code(username)).ok
    c.api_token()
    return c


@pytest.fixture(scope="module")
def pair(site: HubSite) -> Iterator[dict[str, tuple[HubClient, str]]]:
    """Both workspaces of the colliding pair, started at the same moment."""
    clients = {u: signed_in(site, u) for u, _ in PAIR}
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            started = {u: ex.submit(clients[u].start_workspace, p) for u, p in PAIR}
            servers = {u: f.result() for u, f in started.items()}
        yield {u: (clients[u], servers[u]) for u in clients}
    finally:
        for u, p in PAIR:
            with contextlib.suppress(HubError):
                _stop(clients[u], p)
            clients[u].close()


def _stop(c: HubClient, project: str, timeout: float = 60) -> None:
    """Stop the workspace and wait until the hub has forgotten it (its mounts released)."""
    c.stop_workspace(project)
    deadline = time.monotonic() + timeout
    while c.api("GET", f"/users/{c.username}").json()["servers"].get(project):
        assert time.monotonic() < deadline, f"{project} still there after {timeout} s"
        time.sleep(0.2)


def _volumes(site: HubSite, username: str, project: str) -> list[docker.models.volumes.Volume]:
    labels = [f"{names.USER_LABEL}={username}", f"{names.PROJECT_LABEL}={project}"]
    return docker.from_env().volumes.list(filters={"label": labels})


def test_work_volumes_colliding_pair_start_together_and_stay_apart(site, pair):
    for username, (c, server) in pair.items():
        out = c.execute(
            server,
            "import os; p = os.path.expanduser('~/work')\n"
            f"open(os.path.join(p, '{username}.txt'), 'w').write('{username}')\n"
            "print('written')",
        )
        assert out == "written"
    for username, (c, server) in pair.items():
        listing = c.execute(
            server, "import os; print(sorted(os.listdir(os.path.expanduser('~/work'))))"
        )
        assert listing == str([f"{username}.txt"])
    # One volume each, named apart, labelled with whose it is.
    found = {u: [v.name for v in _volumes(site, u, p)] for u, p in PAIR}
    assert all(len(v) == 1 for v in found.values()), found
    assert found["alice"] != found["alice-diabetes"]
    spawns = [e for e in list_events(site.engine, action="workspace.spawn")]
    warm = {e["target"]: e["details"]["warm"] for e in spawns}
    # The pool held one: one spawn claimed it, the other started cold.
    assert sorted(warm[f"workspace:{u}/{p}"] for u, p in PAIR) == [False, True]


def test_work_volumes_names_in_dns_reveal_no_user_or_project(site, pair):
    client = docker.from_env()
    net = client.networks.get(site.settings.workspaces.network)
    addresses = [c["IPv4Address"].split("/")[0] for c in net.attrs["Containers"].values()]
    assert len(addresses) >= 2
    prefix = site.settings.hub.name
    # The old names (DockerSpawner escapes '-' in user and server names as -2d).
    guessed = [f"{prefix}-alice-2ddiabetes--outcomes", f"{prefix}-alice--diabetes-2doutcomes"]
    code = f"""
import json, socket
found = {{}}
for ip in {addresses!r}:
    try:
        name, aliases, _ = socket.gethostbyaddr(ip)
        found[ip] = [name, *aliases]
    except OSError as exc:
        found[ip] = 'unanswered ' + type(exc).__name__
for name in {guessed!r}:
    try:
        found[name] = socket.gethostbyname(name)
    except OSError as exc:
        found[name] = 'unanswered ' + type(exc).__name__
print(json.dumps(found))
"""
    c, server = pair["alice"]
    found = json.loads(c.execute(server, code))
    # The probe works: Docker's DNS answers reverse lookups of the other workspaces.
    assert all(isinstance(found[ip], list) for ip in addresses), found
    text = json.dumps(list(found.values())).lower()  # the answers, not the questions
    assert not [w for w in WORDS if w in text], found
    assert all(found[name].startswith("unanswered") for name in guessed), found


def _fill(c: HubClient, server: str, name: str, limit_mb: int) -> dict:
    code = f"""
import errno, json, os
path = os.path.expanduser('~/work/{name}')
written, failed = 0, None
try:
    with open(path, 'wb') as f:
        chunk = os.urandom({MB})
        while written < {limit_mb * MB}:
            f.write(chunk)
            written += {MB}
            if written % {8 * MB} == 0:
                f.flush(); os.fsync(f.fileno())
        f.flush(); os.fsync(f.fileno())
except OSError as exc:
    failed = exc.errno
print(json.dumps({{'written': written, 'errno': failed}}))
"""
    return json.loads(c.execute(server, code, timeout=180))


def test_work_volumes_writes_stop_at_the_quota_and_nothing_else_fills(site, pair):
    (alice, a_server), (other, o_server) = pair["alice"], pair["alice-diabetes"]
    images = [
        Path(v.attrs["Mountpoint"]) / workvolumes.IMAGE_NAME
        for user, project in (("alice", "diabetes-outcomes"), ("alice-diabetes", "outcomes"))
        for v in _volumes(site, user, project)
    ]
    assert len(images) == 2
    # Warm (claimed) and cold workspace alike: ENOSPC at the quota, not at the host's disk.
    first = _fill(alice, a_server, "fill.bin", 4 * QUOTA_MB)
    assert first["errno"] == errno.ENOSPC, first
    assert 32 * MB < first["written"] <= QUOTA_MB * MB
    # The other workspace's volume is untouched and writable, then stops at its own quota.
    assert _fill(other, o_server, "small.bin", 8) == {"written": 8 * MB, "errno": None}
    second = _fill(other, o_server, "fill.bin", 4 * QUOTA_MB)
    assert second["errno"] == errno.ENOSPC, second
    # What the writes took of the host's disk is what each volume's image holds (the root
    # filesystem is read-only, the scratch space in memory); the host's free space is no
    # measure, since other processes write to the same disk meanwhile.
    for image in images:
        assert image.stat().st_blocks * 512 <= QUOTA_MB * MB, image
    # Deleting files makes room again: the workspace still works.
    for c, server in ((alice, a_server), (other, o_server)):
        c.execute(server, "import os; os.remove(os.path.expanduser('~/work/fill.bin')); print(1)")
        assert _fill(c, server, "again.bin", 4) == {"written": 4 * MB, "errno": None}


def _old_volume(name: str, files: dict[str, str]) -> None:
    volume = docker.from_env().volumes.create(name)
    root = Path(volume.attrs["Mountpoint"])
    os.chown(root, 1000, 1000)
    for rel, text in files.items():
        (root / rel).write_text(text)
        os.chown(root / rel, 1000, 1000)


def _work_files(c: HubClient, server: str) -> list[str]:
    out = c.execute(server, "import os; print(sorted(os.listdir(os.path.expanduser('~/work'))))")
    return list(json.loads(out.replace("'", '"')))


def test_work_volumes_old_volume_carried_over_once_and_released_at_stop(site):
    old = names.legacy_work_volume(site.settings, "carol", "outcomes")
    _old_volume(old, {"notes.txt": "old work"})
    work_id = names.workspace_id(site.settings, "carol", "outcomes")
    with signed_in(site, "carol") as c:
        server = c.start_workspace("outcomes")
        assert _work_files(c, server) == ["notes.txt"]
        c.execute(server, "import os; os.remove(os.path.expanduser('~/work/notes.txt')); print(1)")
        _stop(c, "outcomes")
        assert workvolumes._mount_source(workvolumes.work_root(site.settings) / work_id) is None
        server = c.start_workspace("outcomes")
        assert _work_files(c, server) == []  # carried over once, not again
        _stop(c, "outcomes")
    carried = [
        e
        for e in list_events(site.engine, action="workspace.work.carried")
        if e["target"] == "workspace:carol/outcomes"
    ]
    assert [e["details"]["from"] for e in carried] == [old]
    assert docker.from_env().volumes.get(old)  # never deleted


def test_work_volumes_ambiguous_old_volume_waits_for_an_operator(site):
    old = names.legacy_work_volume(site.settings, "eve", "diabetes-outcomes")
    assert old == names.legacy_work_volume(site.settings, "eve-diabetes", "outcomes")
    _old_volume(old, {"eve.txt": "whose?"})
    with signed_in(site, "eve") as c:
        with pytest.raises(HubError) as refused:
            c.start_workspace("diabetes-outcomes")
        assert refused.value.status == 409
        # The researcher is not told who else there is; the audit log and hub log are.
        assert "eve-diabetes" not in refused.value.message
        (event,) = [
            e
            for e in list_events(site.engine, action="workspace.spawn.refused")
            if e["target"] == "workspace:eve/diabetes-outcomes"
        ]
        (reason,) = event["details"]["reasons"]
        assert "eve-diabetes/outcomes" in reason and "sde workspaces work carry-over" in reason
        done = subprocess.run(
            [SDE, "workspaces", "work", "carry-over", old, "eve", "diabetes-outcomes"],
            env={**os.environ, **site.env, "SDE_ACTOR": "test:operator"},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        server = c.start_workspace("diabetes-outcomes")
        assert _work_files(c, server) == ["eve.txt"]
        _stop(c, "diabetes-outcomes")
    with signed_in(site, "eve-diabetes") as c:
        server = c.start_workspace("outcomes")
        assert _work_files(c, server) == []
        _stop(c, "outcomes")
