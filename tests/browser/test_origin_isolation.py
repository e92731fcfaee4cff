"""A page served from a workspace cannot act as the person who opens it.

The attack this pins (issue 9, finding 1): kernel code took over its own
workspace's port and served a page of its own at the workspace's URL; another
researcher, signed in, opened a link to it; on the hub's origin the page read
his XSRF token from /hub/home and minted a hub token with his rights.

Here the takeover is played by the test: mallory's workspace is real, and its
route in the proxy is pointed at a hostile server of the test's (what a
process owning the port would serve). Victor signs in with a real Chromium and
opens mallory's link. The hostile page must run (it reports back: the
control) and must fail to read any hub page or to mint a token for him,
whether through CORS, a form-like request, or a cookie tossed onto the hub's
domain.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from sde.hub.client import HubClient
from tests.conftest import require_service
from tests.support.hub import PASSWORD, HubSite, free_port, make_site, running
from tests.support.hub_data import provision_project
from tests.support.registry import make_active_project, make_person

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"

ATTACK = """<!doctype html><title>results</title><script>
(async () => {
  const hub = %(hub)s, report = {ran: true};
  try {
    const own = await fetch(location.pathname);
    report.own_origin = own.status;
  } catch (e) { report.own_origin = "failed: " + e; }
  let xsrf = "";
  try {
    const r = await fetch(hub + "/hub/home", {credentials: "include"});
    const text = await r.text();
    const m = text.match(/xsrf_token: "([^"]+)"/);
    xsrf = m ? m[1] : "";
    report.home = m ? "read" : "no token in page " + r.status;
  } catch (e) { report.home = "blocked: " + e; }
  // A subdomain may set a cookie on its parent domain: try double-submit with it.
  document.cookie = "_xsrf=tossed; domain=" + new URL(hub).hostname + "; path=/hub/";
  const body = JSON.stringify({note: "stolen", expires_in: 3600});
  try {
    const r = await fetch(hub + "/hub/api/users/victor/tokens", {
      method: "POST", credentials: "include",
      headers: {"Content-Type": "application/json", "X-XSRFToken": xsrf || "tossed"}, body});
    report.mint = r.status;
  } catch (e) { report.mint = "blocked: " + e; }
  try {
    await fetch(hub + "/hub/api/users/victor/tokens?_xsrf=" + (xsrf || "tossed"), {
      method: "POST", credentials: "include", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body});
    report.mint_no_cors = "sent";
  } catch (e) { report.mint_no_cors = "blocked: " + e; }
  await fetch("report", {method: "POST", body: JSON.stringify(report)});
})();
</script>"""


class Hostile:
    """What a process that took over a workspace's port would serve."""

    def __init__(self, hub_url: str) -> None:
        self.report: dict[str, object] = {}
        self.cookies: list[str] = []
        self.reported = threading.Event()
        page = (ATTACK % {"hub": json.dumps(hub_url)}).encode()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.cookies.append(self.headers.get("Cookie", ""))
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(page)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.endswith("/report"):
                    outer.report = json.loads(body)
                    outer.reported.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def site(workspace_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSite]:
    home = tmp_path_factory.mktemp("hub-origins") / "home"
    s = make_site(
        home, docker=True, SDE_HUB_IMAGE=workspace_image, SDE_HUB_PROXY_API_PORT=str(free_port())
    )
    make_person(s.engine, "mallory")
    make_person(s.engine, "victor")
    make_active_project(s.engine, "attack", "mallory")
    make_active_project(s.engine, "vault", "victor")
    provision_project(s, "attack")
    s.enrol("mallory")
    s.enrol("victor")
    with running(s):
        yield s


def hijack_route(site: HubSite, user: str, server: str, target: str) -> str:
    """Point the proxy route of user/server at `target`; returns the route's spec."""
    api = f"http://127.0.0.1:{site.settings.hub.proxy_api_port}/api/routes"
    token = (site.home / "hub" / "proxy-token").read_text().strip()
    auth = {"Authorization": f"token {token}"}
    routes = httpx.get(api, headers=auth).json()
    spec = next(
        path
        for path, route in routes.items()
        if route.get("user") == user and route.get("server_name") == server
    )
    data = {k: v for k, v in routes[spec].items() if k not in ("target", "last_activity")}
    r = httpx.post(api + spec, headers=auth, json={**data, "target": target})
    assert r.status_code == 201, r.text
    return str(spec)


def victor_tokens(site: HubSite) -> list[str]:
    with HubClient(site.url) as c:
        assert c.login("victor", PASSWORD, site.code("victor")).ok
        r = c.api("GET", "/users/victor/tokens")
        assert r.status_code == 200, r.text
        return [str(t.get("note")) for t in r.json()["api_tokens"]]


def test_origin_workspace_page_cannot_read_hub_pages_or_mint_tokens(
    site: HubSite, tmp_path: Path
) -> None:
    require_service("chromium", os.access(CHROMIUM, os.X_OK), "apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with HubClient(site.url) as mallory:
        assert mallory.login("mallory", PASSWORD, site.code("mallory")).ok
        mallory.start_workspace("attack")
        hostile = Hostile(site.url)
        try:
            hijack_route(site, "mallory", "attack", hostile.url)
            link = f"{site.url}/user/mallory/attack/"
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=CHROMIUM,
                    headless=True,
                    args=["--no-sandbox", "--disable-background-networking"],
                )
                page = browser.new_context().new_page()
                page.goto(f"{site.url}/hub/login")
                page.fill("#username_input", "victor")
                page.fill("#password_input", PASSWORD)
                page.fill("#otp_input", site.code("victor"))
                page.click("#login_submit")
                page.wait_for_selector("#sde-projects")
                page.goto(link)
                landed = page.url
                assert hostile.reported.wait(30), "the hostile page never ran"
                browser.close()
        finally:
            hostile.close()
            mallory.stop_workspace("attack")

    report = hostile.report
    assert report["ran"] is True and report["own_origin"] == 200  # the control
    # The page landed on the workspace's own host, not the hub's.
    assert urlsplit(landed).hostname != urlsplit(site.url).hostname
    assert report["home"] != "read", report
    assert report["mint"] != 201, report
    assert "stolen" not in victor_tokens(site)
    # Neither the hub's sign-in cookie nor victor's workspace cookies reach the page.
    assert not [
        c for c in hostile.cookies if "jupyterhub-hub-login" in c or "jupyterhub-user-" in c
    ]
