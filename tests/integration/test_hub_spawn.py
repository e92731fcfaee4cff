"""Workspaces through a real hub and real Docker.

A researcher signs in at the login page with password and TOTP, starts the
project's workspace, and runs a DuckDB query over the project's data in a
kernel over the Jupyter websocket protocol. The workspace's own token cannot
use the hub's admin APIs. Spawns the registry does not allow (project out of
dates, lapsed training, not a member) are refused with their reasons, and
audited. Network and container isolation are tested with the workspace image.
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest

from sde.audit import list_events
from sde.core.db import transaction
from sde.hub.client import HubClient, HubError
from sde.registry import service
from sde.workspaces import names
from tests.support import probes
from tests.support.hub import PASSWORD, HubSite, make_site, running
from tests.support.hub_data import expected_counts, provision_project, query_counts
from tests.support.registry import ACTOR, make_active_project, make_person, today

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def site(workspace_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSite]:
    home = tmp_path_factory.mktemp("hub-spawn") / "home"
    # Running workspaces re-check access every second (default 30 s); the hub reads
    # workspace activity from the proxy every second (default 60 s).
    s = make_site(
        home,
        docker=True,
        SDE_HUB_IMAGE=workspace_image,
        SDE_WORKSPACES_ACCESS_CHECK_SECONDS="1",
        SDE_HUB_ACTIVITY_SECONDS="1",
    )
    for name in ("alice", "tina", "olaf", "lena"):
        make_person(s.engine, name)
    make_active_project(s.engine, "cohort-a", "alice", "tina", "lena")
    make_active_project(s.engine, "old-study", "alice")
    make_active_project(s.engine, "no-data", "alice")
    with transaction(s.engine) as ses:
        service.update_project(
            ses,
            ACTOR,
            "old-study",
            start_date=today() - timedelta(days=60),
            end_date=today() - timedelta(days=1),
        )
        service.update_person(ses, ACTOR, "tina", training_expiry=today() - timedelta(days=1))
    provision_project(s, "cohort-a")
    provision_project(s, "old-study")
    for name in ("alice", "tina", "olaf", "lena"):
        s.enrol(name)
    with running(s):
        yield s


def signed_in(site: HubSite, username: str) -> HubClient:
    c = HubClient(site.url)
    result = c.login(username, PASSWORD, site.code(username))
    assert result.ok, result
    c.api_token()
    return c


@pytest.fixture(scope="module")
def alice_workspace(site: HubSite) -> Iterator[tuple[HubClient, str]]:
    c = signed_in(site, "alice")
    server = c.start_workspace("cohort-a")
    yield c, server
    c.stop_workspace("cohort-a")
    c.close()


def test_hub_spawn_researcher_queries_project_data_over_kernel_websocket(site, alice_workspace):
    c, server = alice_workspace
    # On a host of its own, never the hub's (sde.hub.origins).
    assert server.endswith("/user/alice/cohort-a/")
    assert server.split("/")[2].startswith("w-") and "alice" not in server.split("/")[2]
    expected = expected_counts(site, "cohort-a")
    assert sum(expected.values()) > 100
    assert query_counts(c, server) == expected
    spawns = list(list_events(site.engine, action="workspace.spawn"))
    assert [(e["actor"], e["project"]) for e in spawns] == [("user:alice", "cohort-a")]
    build = (site.settings.projects_dir / "cohort-a" / "data").resolve().name
    assert spawns[0]["details"]["data_build"] == build


def test_hub_spawn_data_is_read_only_and_work_dir_writable(alice_workspace):
    c, server = alice_workspace
    code = """
import os
try:
    open('/data/planted.txt', 'w').write('x'); print('data writable')
except OSError as e:
    print('data read-only', e.errno)
with open(os.path.expanduser('~/work/notes.txt'), 'w') as f:
    f.write('ok')
print('work ok', os.getuid() != 0)
"""
    out = c.execute(server, code)
    assert "data read-only" in out and "work ok True" in out


def _digests(root: Path) -> dict[str, int]:
    return {
        hashlib.sha256(f.read_bytes()).hexdigest(): f.stat().st_size
        for f in root.rglob("*")
        if f.is_file()
    }


def test_hub_spawn_other_project_data_is_not_in_the_workspace_at_all(site, alice_workspace):
    # alice is a member of old-study too (it has ended): none of its files may be
    # anywhere in her cohort-a workspace, under any path or name.
    c, server = alice_workspace
    own = _digests((site.settings.projects_dir / "cohort-a" / "data").resolve())
    other = _digests((site.settings.projects_dir / "old-study" / "data").resolve())
    wanted = {h: size for h, size in other.items() if h not in own}
    assert len(wanted) >= 5, "old-study's build should have files of its own to look for"
    code = f"""
import hashlib, json, os
wanted, own = {wanted!r}, {own!r}
sizes = set(wanted.values()) | set(own.values())
found, found_own, seen = [], [], 0
for top, dirs, files in os.walk('/', onerror=lambda e: None):
    if top in ('/proc', '/sys', '/dev'):
        dirs[:] = []
        continue
    for name in files:
        path = os.path.join(top, name)
        seen += 1
        try:
            if os.path.islink(path) or os.path.getsize(path) not in sizes:
                continue
            with open(path, 'rb') as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            if digest in wanted:
                found.append(path)
            elif digest in own:
                found_own.append(path)
        except OSError:
            pass
print(json.dumps({{'found': found, 'found_own': found_own, 'seen': seen}}))
"""
    result = json.loads(c.execute(server, code, timeout=120))
    # The same walk finds the workspace's own project's files, and only under /data.
    assert len(result["found_own"]) >= len(own) and result["seen"] > 1000
    assert all(p.startswith("/data/") for p in result["found_own"])
    assert result["found"] == []


def test_hub_spawn_files_handler_and_download_plugins_are_disabled(alice_workspace):
    c, server = alice_workspace
    headers = {"Authorization": f"token {c.token}"}
    put = c.http.put(
        f"{server}api/contents/exportme.txt",
        json={"type": "file", "format": "text", "content": "secret"},
        headers=headers,
    )
    assert put.status_code in (200, 201), put.text
    assert c.http.get(f"{server}files/exportme.txt", headers=headers).status_code == 404
    assert c.http.get(f"{server}api/contents/exportme.txt", headers=headers).status_code == 200
    lab = c.http.get(f"{server}lab", headers=headers)
    assert lab.status_code == 200
    page_config = re.search(
        r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', lab.text, re.S
    )
    assert page_config, "JupyterLab page has no page config"
    disabled = json.loads(page_config.group(1))["disabledExtensions"]
    assert "@jupyterlab/filebrowser-extension:download" in disabled
    assert "@jupyterlab/docmanager-extension:download" in disabled


def test_hub_spawn_user_jupyter_config_cannot_bring_downloads_back(alice_workspace):
    c, server = alice_workspace
    code = """
import json, os
d = os.path.expanduser('~/.jupyter/labconfig')
os.makedirs(d, exist_ok=True)
with open(os.path.join(d, 'page_config.json'), 'w') as f:
    json.dump({'disabledExtensions': {
        '@jupyterlab/filebrowser-extension:download': False,
        '@jupyterlab/docmanager-extension:download': False}}, f)
print('written')
"""
    assert c.execute(server, code) == "written"
    lab = c.http.get(f"{server}lab", headers={"Authorization": f"token {c.token}"})
    page_config = re.search(
        r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', lab.text, re.S
    )
    assert page_config
    disabled = json.loads(page_config.group(1))["disabledExtensions"]
    assert "@jupyterlab/filebrowser-extension:download" in disabled
    assert "@jupyterlab/docmanager-extension:download" in disabled


def test_hub_spawn_workspace_token_cannot_call_hub_admin_apis(alice_workspace):
    c, server = alice_workspace
    code = """
import json, os, urllib.request, urllib.error
api = os.environ['JUPYTERHUB_API_URL']
tok = os.environ['JUPYTERHUB_API_TOKEN']
def call(method, path):
    req = urllib.request.Request(api + path, method=method,
                                 headers={'Authorization': 'token ' + tok})
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code
print(json.dumps({
    'list_users': call('GET', '/users'),
    'other_server': call('POST', '/users/olaf/servers/x'),
    'new_token': call('POST', '/users/alice/tokens'),
    'stop_own_other': call('DELETE', '/users/alice/servers/old-study'),
    'whoami': call('GET', '/user'),
}))
"""
    status = json.loads(c.execute(server, code))
    assert status["whoami"] == 200, "the token works, so the refusals below are not about it"
    # The API gate on the bridge address (the workspace's only way to the hub) forwards
    # none of these; the hub's scopes would refuse them behind it too.
    assert status["list_users"] == 404
    assert status["other_server"] == 404
    assert status["new_token"] == 404
    assert status["stop_own_other"] == 404


def test_hub_spawn_person_cannot_share_a_workspace_with_anyone(alice_workspace):
    c, _ = alice_workspace
    # JupyterHub lets a person share a server (or a share code) by default; here who
    # enters a project's workspace is the registry's to say.
    shared = c.api("POST", "/shares/alice/cohort-a", json={"user": "olaf"})
    code = c.api("POST", "/share-codes/alice/cohort-a", json={})
    assert (shared.status_code, code.status_code) == (403, 403), (shared.text, code.text)
    assert c.api("GET", "/user").status_code == 200  # the control: the token works


def _server_activity(c: HubClient, project: str) -> datetime:
    """The hub's record of the workspace's last activity (what the idle culler reads)."""
    raw = c.api("GET", f"/users/{c.username}").json()["servers"][project]["last_activity"]
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


def test_hub_idle_activity_comes_from_the_proxy_not_from_the_workspace(site, alice_workspace):
    c, server = alice_workspace
    # Kernel code claims activity ahead (the hub takes up to an hour ahead); in a loop
    # it would keep its workspace from the idle culler for ever.
    code = """
import datetime, json, os, urllib.request, urllib.error
api, user = os.environ['JUPYTERHUB_API_URL'], os.environ['JUPYTERHUB_USER']
auth = {'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN'],
        'Content-Type': 'application/json'}
later = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=50)).isoformat()
name = os.environ['JUPYTERHUB_SERVER_NAME']
body = {'last_activity': later, 'servers': {name: {'last_activity': later}}}
req = urllib.request.Request(api + '/users/' + user + '/activity',
                             data=json.dumps(body).encode(), method='POST', headers=auth)
try:
    status = urllib.request.urlopen(req, timeout=10).status
except urllib.error.HTTPError as e:
    status = e.code
me = json.load(urllib.request.urlopen(urllib.request.Request(api + '/user', headers=auth)))
print(json.dumps({'activity': status, 'scopes': me['scopes']}))
"""
    claim = json.loads(c.execute(server, code))
    # The hub API gate answers 404 before the hub; the hub itself would say 403.
    assert claim["activity"] in (403, 404)
    assert not [s for s in claim["scopes"] if s.startswith("users:activity")], claim["scopes"]
    interval = site.settings.hub.activity_seconds
    time.sleep(2 * interval + 0.5)
    before = _server_activity(c, "cohort-a")
    assert before <= datetime.now(UTC), "the workspace's own claim moved the hub's record"

    # Control: a browser's request through the proxy does move it.
    time.sleep(0.5)
    sent = datetime.now(UTC)
    status = c.http.get(f"{server}api/status", headers={"Authorization": f"token {c.token}"})
    assert status.status_code == 200
    deadline = time.monotonic() + 5 * interval + 5
    while _server_activity(c, "cohort-a") <= before and time.monotonic() < deadline:
        time.sleep(0.2)
    after = _server_activity(c, "cohort-a")
    assert sent - timedelta(seconds=0.5) <= after <= datetime.now(UTC)

    # jupyterhub-singleuser runs on without reporting activity: no failed reports logged.
    client = docker.from_env()
    for container in client.containers.list(filters={"network": site.settings.workspaces.network}):
        logs = container.logs().decode(errors="replace")
        assert "Error notifying Hub of activity" not in logs, container.name


def test_hub_spawn_kernel_cannot_ptrace_its_jupyter_server(alice_workspace):
    # The route of a same-origin takeover: attach to the server (same uid), take its port.
    c, server = alice_workspace
    found = probes.parse(c.execute(server, probes.syscall_probe("parent")))
    assert found["same_uid"] is True
    assert {call: found[call] for call in probes.CALLS} == dict.fromkeys(probes.CALLS, errno.EPERM)
    assert c.execute(server, "print(1+1)") == "2"  # the server still serves


def test_hub_spawn_workspace_has_no_default_route_and_reaches_the_hub(alice_workspace):
    c, server = alice_workspace
    found = probes.parse(c.execute(server, probes.route_probe()))
    # Only the on-link subnet route; the hub API on the bridge address still answers.
    assert found == {"default": [], "routes": 1, "hub": 200}


@pytest.mark.parametrize(
    ("username", "project", "reason"),
    [
        ("alice", "old-study", "project ended on"),
        ("tina", "cohort-a", "training expired on"),
        ("olaf", "cohort-a", "not a member of project cohort-a"),
    ],
    ids=["expired-project", "lapsed-training", "non-member"],
)
def test_hub_spawn_refused_with_reason_and_audited(site, username, project, reason):
    with signed_in(site, username) as c:
        with pytest.raises(HubError) as refused:
            c.start_workspace(project)
        assert refused.value.status == 403
        assert refused.value.message.startswith(f"Workspace for project {project} refused:")
        assert reason in refused.value.message
        server = c.api("GET", f"/users/{username}").json()["servers"].get(project)
        assert server is None or not server.get("ready")
    events = [
        e
        for e in list_events(site.engine, action="workspace.spawn.refused")
        if e["target"] == f"workspace:{username}/{project}"
    ]
    assert events and any(reason in r for r in events[-1]["details"]["reasons"])


def test_hub_spawn_refused_when_project_data_is_not_provisioned(site):
    with signed_in(site, "alice") as c:
        with pytest.raises(HubError) as refused:
            c.start_workspace("no-data")
        assert refused.value.status == 409
        assert "sde projects provision no-data" in refused.value.message
    events = [
        e
        for e in list_events(site.engine, action="workspace.spawn.refused")
        if e["target"] == "workspace:alice/no-data"
    ]
    assert events and events[-1]["details"]["reasons"] == ["project data is not provisioned"]


def test_hub_running_workspace_stops_when_access_lapses(site, alice_workspace):
    alice, alice_server = alice_workspace
    with signed_in(site, "lena") as c:
        c.start_workspace("cohort-a")
        with transaction(site.engine) as ses:
            service.update_person(ses, ACTOR, "lena", training_expiry=today() - timedelta(days=1))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not c.api("GET", "/users/lena").json()["servers"].get("cohort-a"):
                break
            time.sleep(0.2)
        assert not c.api("GET", "/users/lena").json()["servers"].get("cohort-a")
    client = docker.from_env()
    mine = {"label": [f"{names.USER_LABEL}=lena", f"{names.PROJECT_LABEL}=cohort-a"]}
    assert not client.containers.list(all=True, filters=mine)
    gone = names.container_name(site.settings, "lena", "cohort-a")
    assert not [x for x in client.containers.list(all=True) if x.name == gone]
    target = "workspace:lena/cohort-a"
    lapses = [e for e in list_events(site.engine, action="workspace.access.lapsed")]
    assert [e["target"] for e in lapses] == [target]
    assert any("training expired on" in r for r in lapses[0]["details"]["reasons"])
    stops = [e for e in list_events(site.engine, action="workspace.stop") if e["target"] == target]
    assert [e["details"].get("reason") for e in stops] == ["access lapsed"]
    # Control: a workspace whose access holds keeps running through the same checks.
    assert alice.api("GET", "/users/alice").json()["servers"]["cohort-a"]["ready"]
    assert alice.execute(alice_server, "print(1+1)") == "2"
