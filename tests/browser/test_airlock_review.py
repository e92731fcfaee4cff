"""The airlock's whole egress round in a real headless Chromium, from a real workspace.

A researcher's kernel in a real Docker workspace writes two tables and adds
them to an egress request with `sde.outputs` (the workspace's own token; the
airlock copies the files itself). The researcher submits from the airlock's
pages; two output checkers, each in a browser context of their own and signed
in through the hub with TOTP, review blind; one requests changes on a file with
a public comment and the request goes back. The researcher changes that file in
the workspace, adds it again and resubmits: only its votes were reset. Both
approve, the request is released, and the researcher downloads the released
files from the airlock's pages, byte for byte what was added, each download in
the audit log. The screenshots of the output-checker guide and of the researcher
guide's "Taking outputs out" are taken on the way (docs/images/ only with
SDE_UPDATE_SCREENSHOTS=1, as in test_researcher_guide.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sde.airlock import service
from sde.airlock.enums import RequestStatus, Vote
from sde.airlock.models import AirlockFile, VoteRecord
from sde.audit import list_events
from sde.core.db import transaction
from sde.hub.client import HubClient
from tests.browser.test_researcher_guide import CHROMIUM, publish
from tests.conftest import require_service
from tests.support.airlock import ensure_person, ensure_project
from tests.support.hub import PASSWORD, HubSite, make_site, running
from tests.support.hub_data import provision_project

pytestmark = [pytest.mark.browser, pytest.mark.docker]

PROJECT = "diabetes-outcomes"
RESEARCHER = "rita"
CHECKERS = ("chk1", "chk2")
GROUP = "tables"
BY_AGE = "results/by_age.csv"
BY_SEX = "results/by_sex.csv"
# The footnote row has one column: table_shape flags its line, the researcher asks an
# exception, and the checkers see the line highlighted beside the justification.
BY_AGE_TEXT = "age_band,patients\n18-39,120\n40-59,85\n60+,40\nSource: synthetic cohort\n"
BY_SEX_V1 = "sex,patients\nF,152\nM,141\nU,7\n"
BY_SEX_V2 = "sex,patients\nF,150\nM,140\nU,suppressed\n"
COMMENT = "U has 7 patients: suppress counts below 10 and round the rest to 10."

WRITE_AND_ADD = f"""
import json, pathlib, sde.outputs
work = pathlib.Path('/home/researcher/work/results')
work.mkdir(exist_ok=True)
(work / 'by_age.csv').write_text({BY_AGE_TEXT!r})
(work / 'by_sex.csv').write_text({BY_SEX_V1!r})
r = sde.outputs.new_request()
r.add({BY_AGE!r}, group={GROUP!r})
r.add({BY_SEX!r}, group={GROUP!r})
r.context({GROUP!r}, 'Patients with type 2 diabetes by age band and by sex, 2020-2024.',
          'Counts below 10 suppressed; the rest rounded to 5.')
r.exception({BY_AGE!r}, 'table_shape', 'The last row is the source note, not data.')
print(json.dumps({{'id': r.id}}))
"""

CHANGE_AND_RESUBMIT = f"""
import json, pathlib, sde.outputs
pathlib.Path('/home/researcher/work/{BY_SEX}').write_text({BY_SEX_V2!r})
r = sde.outputs.request({{rid!r}})
r.add({BY_SEX!r}, group={GROUP!r})
print(json.dumps({{{{'status': r.submit()['status']}}}}))
"""


@pytest.fixture(scope="module")
def site(workspace_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSite]:
    s = make_site(
        tmp_path_factory.mktemp("airlock-browser") / "home",
        docker=True,
        SDE_HUB_IMAGE=workspace_image,
        SDE_WORKSPACES_WARM_POOL="0",  # one cold workspace; no pool to fill on 2 cores
    )
    with transaction(s.engine) as ses:
        ensure_project(ses, PROJECT, pi=RESEARCHER)
        for checker in CHECKERS:
            ensure_person(ses, checker, "output_checker")
    provision_project(s, PROJECT)
    for name in (RESEARCHER, *CHECKERS):
        s.enrol(name)
    with running(s):
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_service("chromium", os.access(CHROMIUM, os.X_OK), "apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        yield b
        b.close()


@pytest.fixture(scope="module")
def workspace(site: HubSite) -> Iterator[tuple[HubClient, str]]:
    """The researcher's running workspace and a hub client signed in as them."""
    with HubClient(site.url) as c:
        assert c.login(RESEARCHER, PASSWORD, site.code(RESEARCHER)).ok
        c.api_token()
        server = c.start_workspace(PROJECT)
        try:
            yield c, server
        finally:
            c.stop_workspace(PROJECT)


def airlock_url(site: HubSite) -> str:
    """The airlock's own origin on the proxy: airlock--service.<hub host>."""
    scheme, rest = site.url.rstrip("/").split("://")
    return f"{scheme}://airlock--service.{rest}/services/airlock"


def sign_in(browser: Any, site: HubSite, username: str) -> Any:
    """A browser context of the person's own, signed in to the airlock through the hub."""
    page = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
    page.goto(airlock_url(site) + "/")
    # Not signed in: the airlock sends the browser to the hub's sign-in, and back.
    page.wait_for_selector("#username_input")
    page.fill("#username_input", username)
    page.fill("#password_input", PASSWORD)
    page.fill("#otp_input", site.code(username))
    page.click("#login_submit")
    page.wait_for_url(airlock_url(site) + "/**")
    page.wait_for_selector("header .who")
    assert page.inner_text("header .who") == username
    return page


def act(page: Any, action: str, label: str, **fields: str) -> None:
    """Press the form `action` whose hidden fields hold `fields` (e.g. the file's name)."""
    form = page.locator(f"form[action$='/{action}']")
    for name, value in fields.items():
        form = form.filter(has=page.locator(f"input[type=hidden][name={name}][value='{value}']"))
    form.get_by_role("button", name=label).click()
    page.wait_for_load_state()
    assert "Error" not in page.title(), page.inner_text("main")


def vote(page: Any, name: str, choice: str) -> None:
    form = page.locator("form[action$='/vote']").filter(
        has=page.locator(f"input[name=name][value='{name}']")
    )
    form.locator("select[name=vote]").select_option(choice)
    form.get_by_role("button", name="Vote").click()
    page.wait_for_load_state()
    assert "Error" not in page.title(), page.inner_text("main")


def votes(site: HubSite, rid: str) -> dict[tuple[str, str], str]:
    with transaction(site.engine) as s:
        rows = s.execute(
            select(AirlockFile.name, VoteRecord.checker, VoteRecord.vote)
            .join(AirlockFile, VoteRecord.file_id == AirlockFile.id)
            .where(VoteRecord.request_id == rid)
        )
        return {(name, checker): str(v) for name, checker, v in rows}


def status(site: HubSite, rid: str) -> RequestStatus:
    with transaction(site.engine) as s:
        return RequestStatus(service.get_request(s, rid).status)


def test_airlock_review_round_from_workspace_to_download(site, browser, workspace, tmp_path):
    shots = tmp_path / "shots"
    shots.mkdir()
    client, server = workspace
    base = airlock_url(site)

    # The researcher's kernel writes two tables and adds them; the airlock copies them.
    rid = json.loads(client.execute(server, WRITE_AND_ADD, timeout=180))["id"]
    assert status(site, rid) == RequestStatus.PENDING

    # The researcher sees the check results before submitting, and submits from the page.
    rita = sign_in(browser, site, RESEARCHER)
    rita.goto(f"{base}/requests/{rid}")
    text = rita.inner_text("main")
    assert "table_shape: fail" in text and "The last row is the source note" in text
    rita.screenshot(path=str(shots / "airlock-researcher-request.png"), full_page=True)
    act(rita, "submit", "Submit")
    assert status(site, rid) == RequestStatus.SUBMITTED

    # Two checkers review blind, each in a browser context of their own.
    first, second = (sign_in(browser, site, name) for name in CHECKERS)
    queue = first.locator("table").first.inner_text()
    assert rid[:8] in queue and PROJECT in queue
    first.screenshot(path=str(shots / "airlock-queue.png"), full_page=True)

    first.click(f"a[href$='/requests/{rid}']")
    first.wait_for_selector("section.group")
    page_text = first.inner_text("main")
    assert "Patients with type 2 diabetes" in page_text and "Counts below 10" in page_text
    assert "The last row is the source note, not data." in page_text
    first.screenshot(path=str(shots / "airlock-request.png"), full_page=True)

    # The CSV view: the footnote line the shape check found is highlighted.
    first.click(f"a[href$='/file?name={BY_AGE}']")
    first.wait_for_selector("table.data")
    flagged = first.locator("td.flagged")
    assert flagged.count() == 1 and flagged.first.inner_text() == "Source: synthetic cohort"
    first.screenshot(path=str(shots / "airlock-file.png"), full_page=True)
    first.goto(f"{base}/requests/{rid}")

    for name in (BY_AGE, BY_SEX):
        vote(first, name, "approve")
    act(first, "review", "Submit my review")
    assert status(site, rid) == RequestStatus.PARTIALLY_REVIEWED

    # Blind: the second checker sees none of the first's votes.
    second.goto(f"{base}/requests/{rid}")
    assert "chk1" not in second.inner_text("main")
    vote(second, BY_AGE, "approve")
    vote(second, BY_SEX, "request_changes")
    comment = second.locator("form[action$='/comment']")
    comment.locator("textarea[name=text]").fill(COMMENT)
    comment.locator("select[name=visibility]").select_option("public")
    comment.get_by_role("button", name="Comment").click()
    second.wait_for_load_state()
    act(second, "review", "Submit my review")
    assert status(site, rid) == RequestStatus.REVIEWED

    # Consolidation: now both see every vote; the second checker returns the request.
    second.goto(f"{base}/requests/{rid}")
    consolidated = second.inner_text("main")
    assert "chk1: approve" in consolidated and "chk2: request_changes" in consolidated
    second.screenshot(path=str(shots / "airlock-consolidation.png"), full_page=True)
    act(second, "return", "Return to the author")
    assert status(site, rid) == RequestStatus.RETURNED

    # The researcher reads the comment, changes the file in the workspace and resubmits.
    rita.goto(f"{base}/")
    assert COMMENT in rita.inner_text("main")
    rita.screenshot(path=str(shots / "airlock-researcher-returned.png"), full_page=True)
    out = client.execute(server, CHANGE_AND_RESUBMIT.format(rid=rid), timeout=180)
    assert json.loads(out)["status"] == "submitted"
    # The changed file's votes were reset; the unchanged approvals stayed.
    assert votes(site, rid) == {
        (BY_AGE, "chk1"): Vote.APPROVE,
        (BY_AGE, "chk2"): Vote.APPROVE,
        (BY_SEX, "chk1"): Vote.UNDECIDED,
        (BY_SEX, "chk2"): Vote.UNDECIDED,
    }

    for checker in (first, second):
        checker.goto(f"{base}/requests/{rid}")
        row = checker.locator("tr").filter(has_text=BY_SEX)
        assert "changed" in row.inner_text()
        vote(checker, BY_SEX, "approve")
        act(checker, "review", "Submit my review")
    assert status(site, rid) == RequestStatus.REVIEWED
    first.goto(f"{base}/requests/{rid}")
    act(first, "approve", "Approve")
    act(first, "release", "Release")
    assert status(site, rid) == RequestStatus.RELEASED

    # The researcher downloads the released files from the airlock's pages, outside the
    # workspace: the bytes are those added, and each download is audited.
    rita.goto(f"{base}/")
    released = rita.locator("h2:has-text('Released files') + ul")
    assert BY_AGE in released.inner_text() and BY_SEX in released.inner_text()
    rita.screenshot(path=str(shots / "airlock-released.png"), full_page=True)
    expected = {BY_AGE: BY_AGE_TEXT, BY_SEX: BY_SEX_V2}
    for name, content in expected.items():
        with rita.expect_download() as got:
            released.get_by_role("link", name=name).click()
        path = got.value.path()
        assert Path(path).read_bytes() == content.encode(), name
    downloads = list_events(site.engine, action="airlock.file.download")
    assert sorted((e["actor"], e["details"]["file"]) for e in downloads) == sorted(
        (RESEARCHER, name) for name in expected
    )

    for shot in shots.iterdir():
        assert shot.stat().st_size > 5_000, f"{shot.name} looks empty"
        publish(shot)
