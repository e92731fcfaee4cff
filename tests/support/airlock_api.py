"""Callers of the airlock's HTTP API, with tokens made as people and workspaces get them.

People sign in to the hub for real (password and TOTP) and mint hub tokens
through the hub's own API; a workspace's token is the one its server holds,
`custom:airlock:requests!server=USER/PROJECT`, and its calls go straight to
the service's address as a workspace's do. People's calls go through the
proxy, on the service's own host. Shared by the crash test, the workspace
refusals test and benchmarks/airlock.py, so all of them meet the service as
tests/integration/test_airlock_api.py does.
"""

from __future__ import annotations

from typing import Any

import httpx

from sde.airlock.app.server import service_url
from sde.hub import localhost
from sde.hub.client import HubClient
from tests.support.hub import PASSWORD, HubSite

PERSON_SCOPES = ["access:services!service=airlock"]


def service_host(site: HubSite) -> str:
    """The airlock's own origin on the proxy: airlock--service.<hub host>."""
    scheme, rest = site.url.rstrip("/").split("://")
    return f"{scheme}://airlock--service.{rest}/services/airlock"


def signed_in(site: HubSite, username: str) -> HubClient:
    c = HubClient(site.url)
    result = c.login(username, PASSWORD, site.code(username))
    assert result.ok, (username, result.status, result.error)
    return c


def mint(c: HubClient, scopes: list[str], expires_in: int = 3600) -> str:
    xsrf = c.http.cookies.get("_xsrf", path="/hub/") or c._xsrf()
    r = c.http.post(
        f"/hub/api/users/{c.username}/tokens",
        json={"note": "airlock test", "expires_in": expires_in, "scopes": scopes},
        headers={"X-XSRFToken": xsrf, "Referer": f"{c.base_url}/hub/token"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


class Api:
    """One caller of the airlock API: a hub token against a base URL."""

    def __init__(self, base: str, token: str, timeout: float = 30) -> None:
        self.base = base
        self.http = localhost.client(timeout=timeout, headers={"Authorization": f"token {token}"})

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, f"{self.base}/api{path}", **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = self.call(method, path, **kw)
        assert r.status_code in (200, 201), (r.status_code, r.text)
        return r.json() if "json" in r.headers.get("content-type", "") else r

    def act(self, rid: str, action: str, **body: Any) -> Any:
        return self.ok("POST", f"/requests/{rid}/{action}", json=body)

    def refused(self, status: int, method: str, path: str, **kw: Any) -> str:
        r = self.call(method, path, **kw)
        assert r.status_code == status, (r.status_code, r.text)
        message = r.json()["error"]
        assert message and "\n" not in message
        return str(message)


def person_api(site: HubSite, username: str) -> Api:
    """`username`'s own caller through the proxy, with a freshly minted hub token."""
    with signed_in(site, username) as c:
        return Api(service_host(site), mint(c, PERSON_SCOPES))


def workspace_api(site: HubSite, username: str, project: str) -> Api:
    """The caller of `username`'s workspace in `project`: its server's token, direct."""
    with signed_in(site, username) as c:
        token = mint(c, [f"custom:airlock:requests!server={username}/{project}"])
    return Api(service_url(site.settings) + "/services/airlock", token)


def browser_session(site: HubSite, username: str) -> httpx.Client:
    """A browser-like client: signed in to the hub, then through the airlock's OAuth."""
    c = localhost.client(timeout=30, follow_redirects=False)
    with HubClient(site.url) as hub:
        assert hub.login(username, PASSWORD, site.code(username)).ok
        for cookie in hub.http.cookies.jar:
            c.cookies.jar.set_cookie(cookie)
    url = f"{service_host(site)}/"
    for _ in range(10):
        r = c.get(url)
        if r.status_code not in (302, 303):
            break
        url = str(httpx.URL(url).join(r.headers["location"]))
    assert r.status_code == 200 and "My requests" in r.text, (r.status_code, url, r.text[:500])
    return c
