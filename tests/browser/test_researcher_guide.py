"""The researcher guide's screenshots, taken from a real headless Chromium at a real hub.

Sign-in with TOTP enrolment through the browser, then the home page listing
the person's projects. With SDE_UPDATE_SCREENSHOTS=1 the screenshots are copied
to docs/images/ (the guide links them), so the guide shows what the hub really
looks like; otherwise the test only checks them, and the tree stays unchanged.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pyotp
import pytest

from sde.core.db import transaction
from sde.registry import service
from tests.conftest import require_service
from tests.support.hub import PASSWORD, HubSite, make_site, running
from tests.support.hub_data import provision_project
from tests.support.registry import ACTOR, make_active_project, make_person, today

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def publish(shot: Path) -> None:
    """Refresh the guide's copy when asked (SDE_UPDATE_SCREENSHOTS=1)."""
    if os.environ.get("SDE_UPDATE_SCREENSHOTS") == "1":
        IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, IMAGES / shot.name)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSite]:
    s = make_site(tmp_path_factory.mktemp("hub-browser") / "home")
    make_person(s.engine, "alice")
    make_active_project(s.engine, "diabetes-outcomes", "alice")
    make_active_project(s.engine, "old-study", "alice")
    with transaction(s.engine) as ses:
        service.update_project(
            ses,
            ACTOR,
            "old-study",
            start_date=today() - timedelta(days=60),
            end_date=today() - timedelta(days=1),
        )
    s.set_password("alice")
    with running(s):
        yield s


@pytest.fixture
def page() -> Iterator[object]:
    require_service("chromium", os.access(CHROMIUM, os.X_OK), "apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 1100, "height": 760})
        yield context.new_page()
        browser.close()


def test_researcher_guide_sign_in_enrol_and_home_screenshots(site, page, tmp_path):
    shots = tmp_path / "shots"
    shots.mkdir()
    page.goto(f"{site.url}/hub/login")
    page.fill("#username_input", "alice")
    page.fill("#password_input", PASSWORD)
    page.screenshot(path=str(shots / "sign-in.png"))
    page.click("#login_submit")

    page.wait_for_selector("#totp-secret")
    assert "Set up your authenticator" in page.content()
    secret = page.get_attribute("#totp-secret", "data-secret")
    assert secret
    page.screenshot(path=str(shots / "enrol-totp.png"))
    page.fill("#otp_input", pyotp.TOTP(secret).now())
    page.click("#enrol_submit")

    page.wait_for_selector("#sde-projects")
    row = page.inner_text("#sde-projects")
    assert "diabetes-outcomes" in row and "allowed" in row
    assert "not now: project ended on" in row
    page.screenshot(path=str(shots / "home.png"))

    # A spawn the registry refuses shows its reason to the person.
    page.goto(f"{site.url}/hub/spawn/alice/old-study")
    page.wait_for_load_state()
    text = page.inner_text("body")
    assert "Workspace for project old-study refused: project ended on" in text
    page.screenshot(path=str(shots / "refused.png"))

    for shot in shots.iterdir():
        assert shot.stat().st_size > 5_000, f"{shot.name} looks empty"
        publish(shot)


@pytest.fixture(scope="module")
def docker_site(
    workspace_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HubSite]:
    home = tmp_path_factory.mktemp("hub-browser-docker") / "home"
    s = make_site(home, docker=True, SDE_HUB_IMAGE=workspace_image)
    make_person(s.engine, "alice")
    make_active_project(s.engine, "diabetes-outcomes", "alice")
    provision_project(s, "diabetes-outcomes")
    s.enrol("alice")
    with running(s):
        yield s


@pytest.mark.docker
def test_researcher_guide_workspace_screenshot(docker_site, page, tmp_path):
    site = docker_site
    page.goto(f"{site.url}/hub/login")
    page.fill("#username_input", "alice")
    page.fill("#password_input", PASSWORD)
    page.fill("#otp_input", site.code("alice"))
    page.click("#login_submit")
    page.wait_for_selector("#sde-projects")
    page.click("#start-diabetes-outcomes")
    # The hub's progress page forwards to JupyterLab once the workspace is up.
    page.wait_for_selector(".jp-LauncherCard", timeout=180_000)
    assert "/user/alice/diabetes-outcomes/lab" in page.url
    # The workspace is on a host of its own, not the hub's.
    assert urlsplit(page.url).hostname != urlsplit(site.url).hostname
    shot = tmp_path / "workspace.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000
    publish(shot)
