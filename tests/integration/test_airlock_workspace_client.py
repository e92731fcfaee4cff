"""The researchers' airlock client (sde.outputs) in a real workspace against the real service.

A real hub with Docker starts the airlock service on the workspace bridge; a
kernel in the researcher's running workspace creates a request, adds a file of
its work directory, writes the group's text and submits, with nothing but the
environment the spawner gave it ($SDE_AIRLOCK_URL, the server's own token). The
state database then holds what the airlock copied, hashed as the file was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest

from sde.airlock import service
from sde.airlock.enums import Direction, RequestStatus
from sde.core.db import transaction
from sde.hub.client import HubClient
from tests.support.hub import PASSWORD, HubSite, make_site, running
from tests.support.hub_data import provision_project
from tests.support.registry import make_active_project, make_person

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PROJECT = "outputs-study"
RESEARCHER = "rita"
COUNTS = "group,n\na,15\nb,20\n"


@pytest.fixture(scope="module")
def site(workspace_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSite]:
    s = make_site(
        tmp_path_factory.mktemp("outputs") / "home",
        docker=True,
        SDE_HUB_IMAGE=workspace_image,
        SDE_WORKSPACES_WARM_POOL="0",
    )
    make_person(s.engine, RESEARCHER)
    make_active_project(s.engine, PROJECT, RESEARCHER)
    provision_project(s, PROJECT)
    s.enrol(RESEARCHER)
    with running(s):
        yield s


KERNEL = f"""
import json, os, pathlib, subprocess
import sde.outputs
work = pathlib.Path('/home/researcher/work/results')
work.mkdir(exist_ok=True)
(work / 'counts.csv').write_text({COUNTS!r})
r = sde.outputs.new_request()
added = r.add('results/counts.csv', group='tables')
refused = []
for bad in ('/etc/passwd', '../../etc/passwd'):
    try:
        r.add(bad, group='tables')
    except sde.outputs.AirlockError as e:
        refused.append(str(e))
try:
    r.add('results/missing.csv', group='tables')
except sde.outputs.AirlockError as e:
    refused.append(str(e))
r.context('tables', 'Counts of patients by group.', 'Below 10 suppressed, rounded to 5.')
submitted = r.submit()
shown = subprocess.run(['sde-airlock', 'request', 'status', r.id], capture_output=True, text=True)
print(json.dumps({{
    'id': r.id, 'added': added, 'refused': refused, 'status': submitted['status'],
    'cli': shown.stdout, 'token_in_repr': os.environ['JUPYTERHUB_API_TOKEN'] in repr(r.client),
}}))
"""


def test_airlock_workspace_client_creates_adds_and_submits_from_a_kernel(site):
    with HubClient(site.url) as c:
        assert c.login(RESEARCHER, PASSWORD, site.code(RESEARCHER)).ok
        c.api_token()
        server = c.start_workspace(PROJECT)
        try:
            out = json.loads(c.execute(server, KERNEL, timeout=180))
        finally:
            c.stop_workspace(PROJECT)
    assert out["status"] == "submitted", out
    assert out["added"]["name"] == "results/counts.csv"
    assert out["added"]["sha256"] == hashlib.sha256(COUNTS.encode()).hexdigest()
    assert len(out["refused"]) == 3, out["refused"]
    assert all("not a file under the work directory" in e for e in out["refused"][:2])
    assert "HTTP 4" in out["refused"][2]  # the service's own refusal, passed on
    assert f"{out['id']}: submitted ({PROJECT})" in out["cli"]
    assert out["token_in_repr"] is False
    with transaction(site.engine) as s:
        request = service.get_request(s, out["id"])
        assert (request.author, request.project) == (RESEARCHER, PROJECT)
        assert request.direction == Direction.EGRESS
        assert request.status == RequestStatus.SUBMITTED
        assert [f.name for f in service.active_files(s, request)] == ["results/counts.csv"]
