"""The snapshot refusals made real on a real work volume, from a kernel in a running workspace.

A real hub with Docker runs the researcher's workspace (its work volume the
ext4 image mounted on the host, sde.workspaces.workvolumes) and the airlock on
the workspace bridge. Kernel code makes what a researcher could make in
/home/researcher/work: a symlink into /data, a hard link, a FIFO, and a table
it changes after adding; each is added through the API with the workspace's
own client (sde.outputs, its server's token). The service resolves every name
beneath the mounted work volume itself, so each refusal names its reason and
the store and the request gain nothing; the changed table's release carries
the bytes as added. Then 10,000 files named in one `sde-airlock request add`
stop at airlock.max_files (set low here so the test is quick; the check is the
same at any limit) with the request unchanged, and HTML in context and
comments comes back escaped on the request page.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from sde.airlock import service
from sde.airlock.models import AirlockFile
from sde.airlock.permissions import SYSTEM_ACTOR
from sde.core.db import transaction
from sde.hub.client import HubClient
from tests.support.airlock import ensure_person
from tests.support.airlock_api import browser_session, service_host
from tests.support.hub import PASSWORD, HubSite, make_site, running
from tests.support.hub_data import provision_project
from tests.support.registry import make_active_project, make_person

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PROJECT = "refusals-study"
RESEARCHER = "rosa"
CHECKERS = ("chk1", "chk2")
MAX_FILES = 12
ADDED = "group,n\na,15\nb,20\n"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def site(workspace_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSite]:
    s = make_site(
        tmp_path_factory.mktemp("refusals") / "home",
        docker=True,
        SDE_HUB_IMAGE=workspace_image,
        SDE_WORKSPACES_WARM_POOL="0",
        SDE_AIRLOCK_MAX_FILES=str(MAX_FILES),
    )
    make_person(s.engine, RESEARCHER)
    make_active_project(s.engine, PROJECT, RESEARCHER)
    with transaction(s.engine) as ses:
        for checker in CHECKERS:
            ensure_person(ses, checker, "output_checker")
    provision_project(s, PROJECT)
    s.enrol(RESEARCHER)
    with running(s):
        yield s


KERNEL = f"""
import json, os, pathlib, subprocess
import sde.outputs
work = pathlib.Path('/home/researcher/work')
res = work / 'results'
res.mkdir(exist_ok=True)
target = next(p for p in pathlib.Path('/data').rglob('*') if p.is_file())
(res / 'link.csv').symlink_to(target)
(res / 'orig.csv').write_text('group,n\\na,15\\n')
os.link(res / 'orig.csv', res / 'hard.csv')
os.mkfifo(res / 'pipe.csv')
(res / 'counts.csv').write_text({ADDED!r})
r = sde.outputs.new_request()
refused = {{}}
for name in ('link.csv', 'hard.csv', 'pipe.csv'):
    try:
        r.add('results/' + name, group='tables')
        refused[name] = None
    except sde.outputs.AirlockError as e:
        refused[name] = str(e)
added = r.add('results/counts.csv', group='tables')
(res / 'counts.csv').write_text('group,n\\na,1\\nb,2\\n')  # after adding: never released
r.context('tables', {HOSTILE!r}, '<b>bold</b>')
many = res / 'many'
many.mkdir()
names = []
for i in range(10_000):
    (many / f'f{{i:05d}}.txt').write_text('ok')
    names.append(f'results/many/f{{i:05d}}.txt')
bulk = subprocess.run(['sde-airlock', 'request', 'add', r.id, '--group', 'bulk', *names],
                      capture_output=True, text=True)
print(json.dumps({{'id': r.id, 'refused': refused, 'added': added, 'bulk_rc': bulk.returncode,
                  'bulk_err': bulk.stderr, 'bulk_out': bulk.stdout.count(chr(10))}}))
"""


def stored(site: HubSite) -> set[str]:
    return {p.name for p in site.settings.airlock_store_dir.rglob("*") if p.is_file()}


def test_airlock_refusals_on_a_real_work_volume_store_nothing_and_release_as_added(site):
    before = stored(site)
    with HubClient(site.url) as c:
        assert c.login(RESEARCHER, PASSWORD, site.code(RESEARCHER)).ok
        c.api_token()
        server = c.start_workspace(PROJECT)
        try:
            out = json.loads(c.execute(server, KERNEL, timeout=600))
        finally:
            c.stop_workspace(PROJECT)
    rid = out["id"]
    reasons = out["refused"]
    assert "a symbolic link" in reasons["link.csv"], reasons
    assert "a hard link" in reasons["hard.csv"], reasons
    assert "a FIFO" in reasons["pipe.csv"], reasons
    assert all("(HTTP 400)" in reasons[n] for n in reasons), reasons

    # 10,000 names: the first MAX_FILES - 1 taken (counts.csv is one), then a clear refusal.
    assert out["bulk_rc"] != 0
    assert f"airlock.max_files is {MAX_FILES}" in out["bulk_err"], out["bulk_err"]
    assert out["bulk_out"] == MAX_FILES - 1
    with transaction(site.engine) as s:
        request = service.get_request(s, rid)
        assert request.status == "pending"
        names = set(s.scalars(select(AirlockFile.name).where(AirlockFile.request_id == rid)))
        assert len(names) == MAX_FILES
        assert not names & {"results/link.csv", "results/hard.csv", "results/pipe.csv"}
        assert "results/many/f00011.txt" not in names
    # What is stored: the table as added and the one small file the bulk adds share; no
    # byte of the symlink's target, the hard link or the FIFO.
    new = stored(site) - before
    assert hashlib.sha256(ADDED.encode()).hexdigest() in new
    assert hashlib.sha256(b"ok").hexdigest() in new
    assert hashlib.sha256(b"group,n\na,15\n").hexdigest() not in new
    assert len(new) == 2, new

    # HTML in the context (from the kernel) and in a comment: escaped on the request page.
    with transaction(site.engine) as s:
        service.comment(s, RESEARCHER, site.settings, rid, "tables", HOSTILE)
    page = browser_session(site, RESEARCHER).get(f"{service_host(site)}/requests/{rid}")
    assert page.status_code == 200, page.text
    assert HOSTILE not in page.text and "<b>bold</b>" not in page.text
    assert page.text.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") >= 2

    # The changed table: reviewed and released as it was added, not as it is now.
    with transaction(site.engine) as s:
        for f in service.active_files(s, service.get_request(s, rid)):
            if f.name.startswith("results/many/"):
                service.withdraw_file(s, RESEARCHER, site.settings, rid, f.name)
        service.submit(s, RESEARCHER, site.settings, rid)
    for checker in CHECKERS:
        with transaction(site.engine) as s:
            service.vote(s, checker, site.settings, rid, "results/counts.csv", "approve")
            service.submit_review(s, checker, site.settings, rid)
    with transaction(site.engine) as s:
        service.approve(s, CHECKERS[0], site.settings, rid)
        service.release(s, SYSTEM_ACTOR, site.settings, rid)
    with transaction(site.engine) as s:
        path = service.record_download(s, RESEARCHER, site.settings, rid, "results/counts.csv")
        assert path.read_text() == ADDED
    assert out["added"]["sha256"] == hashlib.sha256(ADDED.encode()).hexdigest()
