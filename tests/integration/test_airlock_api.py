"""The airlock's API and pages against the running service, started the way the hub starts it.

A real JupyterHub (tests/support/hub.py, Docker off: no workspace is needed)
starts the managed service `airlock` (`python -m sde.airlock.app`) on its port,
over a state database on SQLite and PostgreSQL (`db_url`). People sign in to
the hub for real (password and TOTP) and mint hub tokens; the service resolves
every token with the hub. The workspace's token is the one a workspace server
holds, `custom:airlock:requests!server=USER/PROJECT` as the hub expands it for
its server; its calls go straight to the service's address, as a workspace's do,
and the work folder is the one the service copies from (`workfolders.folder_of`).
People's calls and pages go through the proxy, on the service's own host.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from sde.airlock import release_record
from sde.airlock.app.server import service_url
from sde.airlock.app.workfolders import folder_of
from sde.airlock.models import AirlockFile, AirlockRequest, Comment
from sde.audit import list_events
from sde.core.db import transaction
from sde.hub import localhost
from tests.support.airlock import (
    AUTHOR,
    CHECKERS,
    GROUP,
    NOTES,
    PROJECT,
    TABLE,
    ensure_people,
    ensure_project,
    write_work,
)
from tests.support.airlock_api import Api, browser_session, mint, service_host, signed_in
from tests.support.hub import HubSite, make_site, running

C1, C2, _ = CHECKERS
PI = "pat"
OUTSIDER = "olga"  # a researcher of another project
OTHER = "p2"
PEOPLE = (AUTHOR, C1, C2, PI, OUTSIDER)
PERSON_SCOPES = ["access:services!service=airlock"]


@pytest.fixture
def site(tmp_path: Path, db_url: str) -> Iterator[HubSite]:
    s = make_site(
        tmp_path / "home",
        SDE_DATABASE_URL=db_url,
        SDE_WORKSPACES_POOL_DIR=str(tmp_path / "pool"),
    )
    with transaction(s.engine) as ses:
        ensure_people(ses)
        ensure_project(ses, PROJECT, pi=PI)
        ensure_project(ses, OTHER, OUTSIDER)
    for name in PEOPLE:
        s.enrol(name)
    with running(s):
        yield s


def people(site: HubSite) -> tuple[Api, dict[str, Api]]:
    """The author's workspace and every person's own API caller."""
    base = service_host(site)
    callers = {}
    workspace = None
    for name in PEOPLE:
        with signed_in(site, name) as c:
            callers[name] = Api(base, mint(c, PERSON_SCOPES))
            if name == AUTHOR:
                token = mint(c, [f"custom:airlock:requests!server={AUTHOR}/{PROJECT}"])
                # As a workspace calls it: straight to the service's address.
                workspace = Api(service_url(site.settings) + "/services/airlock", token)
    assert workspace is not None
    return workspace, callers


def test_airlock_api_egress_workflow_over_http_with_two_checkers(site):
    work = write_work(folder_of(site.settings, AUTHOR, PROJECT))
    ws, p = people(site)

    made = ws.ok("POST", "/requests", json={"direction": "egress"})
    rid = made["id"]
    assert (made["project"], made["author"], made["status"]) == (PROJECT, AUTHOR, "pending")
    ws.act(rid, "add_file", path=TABLE, group=GROUP)
    view = ws.act(rid, "add_file", path=NOTES, group=GROUP, kind="supporting")
    files = {f["name"]: f for f in view["groups"][0]["files"]}
    assert files[TABLE]["checks"]["status"] == "pass", "check results shown before submitting"
    ws.act(rid, "set_group_text", group=GROUP, context="Counts by group.", controls="Rounded.")
    assert ws.act(rid, "submit")["status"] == "submitted"

    # Two checkers, blind to each other until both are in; one asks for changes.
    p[C1].act(rid, "vote", name=TABLE, vote="request_changes")
    p[C1].act(rid, "comment", group=GROUP, text="Round to 5.", visibility="public")
    assert p[C1].act(rid, "review")["status"] == "partially_reviewed"
    blind = p[C2].ok("GET", f"/requests/{rid}")
    assert not blind["groups"][0]["comments"] and not blind["groups"][0]["files"][0]["votes"]
    p[C2].act(rid, "vote", name=TABLE, vote="approve")
    assert p[C2].act(rid, "review")["status"] == "reviewed"
    assert p[C1].act(rid, "return")["status"] == "returned"

    # The author sees the public comment, changes the table, resubmits.
    mine = ws.ok("GET", f"/requests/{rid}")
    assert [c["text"] for c in mine["groups"][0]["comments"]] == ["Round to 5."]
    (work / TABLE).write_text("group,n\na,15\nb,20\nc,25\n")
    ws.act(rid, "add_file", path=TABLE, group=GROUP)
    assert ws.act(rid, "submit")["status"] == "submitted"
    for checker in (C1, C2):
        p[checker].act(rid, "vote", name=TABLE, vote="approve")
        p[checker].act(rid, "review")
    assert p[C1].act(rid, "approve")["status"] == "approved"
    assert p[C2].act(rid, "release")["status"] == "released"

    # Downloads: the author and the PI only, from outside the workspace; audited.
    for name in (AUTHOR, PI):
        got = p[name].ok("GET", f"/requests/{rid}/download", params={"name": TABLE})
        assert got.content == (work / TABLE).read_bytes()
    p[C1].refused(403, "GET", f"/requests/{rid}/download", params={"name": TABLE})
    ws.refused(403, "GET", f"/requests/{rid}/download", params={"name": TABLE})
    record = p[AUTHOR].ok("GET", f"/requests/{rid}/record")
    release_record.verify(record, site.settings)  # raises on a bad record
    downloads = list_events(site.engine, action="airlock.file.download")
    assert sorted(e["actor"] for e in downloads) == sorted([AUTHOR, PI])


def test_airlock_api_refusals_tokens_projects_csrf_escaping_and_ingress_uploads(site):
    work = write_work(folder_of(site.settings, AUTHOR, PROJECT))
    ws, p = people(site)
    rid = ws.ok("POST", "/requests", json={})["id"]

    # One place maps SdeError classes to HTTP, each a one-line {"error": ...}.
    assert "../" in ws.refused(
        400, "POST", f"/requests/{rid}/add_file", json={"path": "../etc/passwd", "group": GROUP}
    )
    ws.refused(400, "POST", f"/requests/{rid}/add_file", json={"group": GROUP})
    ws.refused(404, "GET", "/requests/nosuchrequest")
    # A checker's step from a workspace; a checker's step in a state that allows none.
    ws.refused(403, "POST", f"/requests/{rid}/vote", json={"name": TABLE, "vote": "approve"})
    p[C1].refused(409, "POST", f"/requests/{rid}/vote", json={"name": TABLE, "vote": "approve"})
    ws.refused(400, "POST", f"/requests/{rid}/submit")  # nothing to submit
    with transaction(site.engine) as s:
        assert s.scalar(select(func.count()).select_from(AirlockFile)) == 0

    # Forged and expired tokens; a person with no part; another project's workspace.
    Api(service_host(site), "f" * 32).refused(401, "GET", "/requests")
    with signed_in(site, AUTHOR) as c:
        short = mint(c, PERSON_SCOPES, expires_in=1)
    time.sleep(2.5)
    Api(service_host(site), short).refused(401, "GET", f"/requests/{rid}")
    p[OUTSIDER].refused(403, "GET", f"/requests/{rid}")
    other = p[OUTSIDER].ok("POST", "/requests", json={"project": OTHER})["id"]
    assert "p2" in ws.refused(403, "GET", f"/requests/{other}")
    ws.refused(403, "POST", f"/requests/{other}/withdraw")
    ws.refused(403, "POST", "/requests", json={"project": OTHER})
    # The workspace lists its own project's requests only.
    assert {r["id"] for r in ws.ok("GET", "/requests")} == {rid}
    with transaction(site.engine) as s:
        untouched = s.get(AirlockRequest, other)
        assert untouched is not None and untouched.status == "pending"

    # Workspace not running: no work folder, a clear refusal, nothing stored.
    with signed_in(site, OUTSIDER) as c:
        outsider_ws = Api(
            service_url(site.settings) + "/services/airlock",
            mint(c, [f"custom:airlock:requests!server={OUTSIDER}/{OTHER}"]),
        )
    assert "not running" in outsider_ws.refused(
        409, "POST", f"/requests/{other}/add_file", json={"path": TABLE, "group": GROUP}
    )

    # HTML in user text, rendered escaped in the pages of the service's own host.
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    ws.act(rid, "add_file", path=TABLE, group=GROUP)
    ws.act(rid, "set_group_text", group=GROUP, context=hostile, controls="<b>bold</b>")
    ws.act(rid, "comment", group=GROUP, text=hostile)
    browser = browser_session(site, AUTHOR)
    page = browser.get(f"{service_host(site)}/requests/{rid}")
    assert page.status_code == 200, page.text
    assert hostile not in page.text and "<b>bold</b>" not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
    csp = page.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"

    # A page form without its CSRF token (or another session's) changes nothing.
    csrf = re.search(r'name="_csrf" value="([0-9a-f]+)"', page.text)
    assert csrf
    form = {"group": GROUP, "text": "posted by a form"}
    for token in ("", "0" * 64):
        r = browser.post(
            f"{service_host(site)}/requests/{rid}/comment", data={**form, "_csrf": token}
        )
        assert r.status_code == 403, r.text
    with transaction(site.engine) as s:
        assert "posted by a form" not in set(s.scalars(select(Comment.text)))
    r = browser.post(
        f"{service_host(site)}/requests/{rid}/comment", data={**form, "_csrf": csrf.group(1)}
    )
    assert r.status_code == 303, r.text
    with transaction(site.engine) as s:
        assert "posted by a form" in set(s.scalars(select(Comment.text)))
    # The session cookie is the service's own: host-only, on its prefix.
    cookie = next(c for c in browser.cookies.jar if c.name == "sde-airlock-session")
    assert cookie.path == "/services/airlock/" and not cookie.domain_specified
    assert work.is_dir()

    # Ingress from outside: a page form opens the request and uploads (multipart, CSRF);
    # a person's token uploads through the API; a workspace's token may not.
    home = browser.get(f"{service_host(site)}/")
    csrf_home = re.search(r'name="_csrf" value="([0-9a-f]+)"', home.text)
    assert csrf_home
    made = browser.post(
        f"{service_host(site)}/requests",
        data={"_csrf": csrf_home.group(1), "project": PROJECT, "direction": "ingress"},
    )
    assert made.status_code == 303, made.text
    ingress_id = made.headers["location"].rsplit("/", 1)[-1]
    refused = browser.post(
        f"{service_host(site)}/requests/{ingress_id}/upload",
        data={"group": "codes"},
        files={"file": ("codes.csv", b"code,term\nE11,diabetes\n", "text/csv")},
    )
    assert refused.status_code == 403, "an upload form without its CSRF token"
    page = browser.get(f"{service_host(site)}/requests/{ingress_id}")
    upload_csrf = re.search(r'name="_csrf" value="([0-9a-f]+)"', page.text)
    assert upload_csrf and 'enctype="multipart/form-data"' in page.text
    sent = browser.post(
        f"{service_host(site)}/requests/{ingress_id}/upload",
        data={"_csrf": upload_csrf.group(1), "group": "codes"},
        files={"file": ("codes.csv", b"code,term\nE11,diabetes\n", "text/csv")},
    )
    assert sent.status_code == 303, sent.text
    p[AUTHOR].ok(
        "POST",
        f"/requests/{ingress_id}/upload",
        params={"name": "README.md", "group": "codes", "kind": "supporting"},
        content=b"# Codes\n",
    )
    ws.refused(
        403,
        "POST",
        f"/requests/{ingress_id}/upload",
        params={"name": "x.csv", "group": "codes"},
        content=b"a\n",
    )
    view = p[AUTHOR].ok("GET", f"/requests/{ingress_id}")
    assert view["direction"] == "ingress"
    assert {f["name"] for g in view["groups"] for f in g["files"]} == {"codes.csv", "README.md"}


def test_airlock_service_stops_when_its_hub_is_killed(tmp_path):
    import os
    import signal

    s = make_site(tmp_path / "home")
    with running(s):
        url = service_url(s.settings) + "/services/airlock/static/airlock.css"
        assert localhost.request("GET", url, timeout=5).status_code == 200
        assert s.hub is not None and s.hub._proc is not None
        hub_pid = s.hub._proc.pid
        children = _children(hub_pid)  # its proxy and services, each in a session of its own
        os.kill(hub_pid, signal.SIGKILL)  # the hub only; its services are left orphaned
        s.hub._proc.wait()
        deadline = time.monotonic() + 15
        gone = False
        while time.monotonic() < deadline and not gone:
            try:
                localhost.request("GET", url, timeout=1)
                time.sleep(0.3)
            except httpx.TransportError:
                gone = True
        # What else the killed hub had started (its proxy, the idle culler), so that the
        # test leaves nothing running.
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert gone, "the airlock kept its port after its hub was killed"


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.docker
def test_airlock_service_listens_on_the_bridge_address_with_docker(tmp_path, docker_engine):
    from sde.workspaces import network

    s = make_site(tmp_path / "home", docker=True, SDE_WORKSPACES_WARM_POOL="0")
    with running(s):
        bridge = network.gateway_of(s.settings.workspaces)
        assert service_url(s.settings) == f"http://{bridge}:{s.settings.workspaces.airlock_port}"
        css = localhost.request(
            "GET", service_url(s.settings) + "/services/airlock/static/airlock.css"
        )
        assert css.status_code == 200
        # And through the proxy on the service's own host: a person's call, no token.
        r = localhost.request("GET", service_host(s) + "/api/requests")
        assert r.status_code == 401 and r.json() == {"error": "no hub token"}
