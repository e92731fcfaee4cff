"""A small client of the hub as a researcher's browser and notebook see it.

Used by the tests, the benchmark and anyone scripting a check of a running
hub: sign in through the login page (XSRF form, password, TOTP, enrolment),
start a project workspace, and run code in a kernel over the Jupyter
websocket protocol.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin

import httpx

from sde.core.errors import SdeError
from sde.hub import localhost

_XSRF = re.compile(r'name="_xsrf" value="([^"]+)"')
_TICKET = re.compile(r'name="enrol_ticket" value="([^"]+)"')
_SECRET = re.compile(r'data-secret="([A-Z2-7]+)"')
_ERROR = re.compile(r'class="login_error[^"]*">([^<]*)<')


class HubError(SdeError):
    """The hub answered with an error; `status` and `message` are what it said."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"hub answered {status}: {message}")
        self.status = status
        self.message = message


@dataclass
class LoginResult:
    ok: bool
    status: int
    error: str = ""
    enrolment_secret: str | None = None
    ticket: str | None = None


class HubClient:
    def __init__(self, base_url: str, timeout: float = 60.0, source: str | None = None) -> None:
        """`source`: the local address to connect from (a second loopback address, say)."""
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(
            transport=localhost.transport(local_address=source),
            base_url=self.base_url,
            timeout=timeout,
            follow_redirects=False,
        )
        self.username: str | None = None
        self.token: str | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ sign-in

    def _xsrf(self) -> str:
        r = self.http.get("/hub/login")
        m = _XSRF.search(r.text)
        if r.status_code != 200 or not m:
            raise HubError(r.status_code, "no login form")
        return m.group(1)

    def _post_login(self, form: dict[str, str]) -> LoginResult:
        r = self.http.post("/hub/login", data=form)
        if r.status_code in (302, 303) and "login" not in r.headers.get("location", "login"):
            self.username = form["username"]
            return LoginResult(ok=True, status=r.status_code)
        ticket = _TICKET.search(r.text)
        secret = _SECRET.search(r.text)
        err = _ERROR.search(r.text)
        return LoginResult(
            ok=False,
            status=r.status_code,
            error=(err.group(1).strip() if err else ""),
            enrolment_secret=secret.group(1) if secret else None,
            ticket=ticket.group(1) if ticket else None,
        )

    def login(self, username: str, password: str, code: str = "") -> LoginResult:
        form = {"_xsrf": self._xsrf(), "username": username, "password": password, "otp": code}
        return self._post_login(form)

    def confirm_enrolment(self, username: str, ticket: str, code: str) -> LoginResult:
        form = {"_xsrf": self._xsrf(), "username": username, "enrol_ticket": ticket, "otp": code}
        return self._post_login(form)

    def api_token(self) -> str:
        """A token for the hub API, requested with the sign-in cookie (like the token page)."""
        if self.username is None:
            raise SdeError("sign in first")
        xsrf = self.http.cookies.get("_xsrf", path="/hub/") or self._xsrf()
        r = self.http.post(
            f"/hub/api/users/{self.username}/tokens",
            json={"note": "sde client", "expires_in": 3600},
            headers={"X-XSRFToken": xsrf, "Referer": f"{self.base_url}/hub/token"},
        )
        if r.status_code != 201:
            raise HubError(r.status_code, _message(r))
        self.token = str(r.json()["token"])
        return self.token

    # ------------------------------------------------------------ API

    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        tok = token or self.token or self.api_token()
        headers = {"Authorization": f"token {tok}", **kw.pop("headers", {})}
        return self.http.request(method, f"/hub/api{path}", headers=headers, **kw)

    def start_workspace(self, project: str, timeout: float = 180.0) -> str:
        """Start the project's workspace and wait until it is ready; returns its URL."""
        user = self.username
        r = self.api("POST", f"/users/{user}/servers/{quote(project)}")
        if r.status_code not in (201, 202):
            raise HubError(r.status_code, _message(r))
        return self.wait_ready(project, timeout)

    def wait_ready(self, project: str, timeout: float = 180.0) -> str:
        """The workspace's own URL (on its own host) once it is ready."""
        user = self.username
        deadline = time.monotonic() + timeout
        tok = self.token or self.api_token()
        with self.http.stream(
            "GET",
            f"/hub/api/users/{user}/servers/{quote(project)}/progress",
            headers={"Authorization": f"token {tok}"},
            timeout=timeout,
        ) as r:
            for line in r.iter_lines():
                if time.monotonic() > deadline:
                    break
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if event.get("ready"):
                    return self.workspace_url(str(event["url"]))
                if event.get("failed"):
                    raise HubError(500, str(event.get("message", "spawn failed")))
        raise HubError(504, f"workspace {project} not ready after {timeout:.0f} s")

    def workspace_url(self, url: str) -> str:
        """Where the hub's URL of a workspace leads: the workspace's own host.

        The hub names every workspace on its own host, which redirects to the
        workspace's (sde.hub.origins); without host names (no subdomains) the
        URL is the workspace's already.
        """
        url = urljoin(self.base_url + "/", url)
        r = self.http.get(url)
        location = r.headers.get("location", "")
        if r.status_code in (301, 302, 303, 307) and "://" in location:
            return location
        return url

    def stop_workspace(self, project: str) -> None:
        r = self.api("DELETE", f"/users/{self.username}/servers/{quote(project)}")
        if r.status_code not in (202, 204):
            raise HubError(r.status_code, _message(r))

    # ------------------------------------------------------------ kernels

    def execute(self, server_path: str, code: str, timeout: float = 120.0) -> str:
        """Run `code` in a new kernel of the workspace; returns its output text."""
        tok = self.token or self.api_token()
        return run_in_kernel(self.base_url, server_path, tok, code, timeout)


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json().get("message", r.text))
    except ValueError:
        return r.text[:300]


def server_url(base_url: str, server: str) -> str:
    """A Jupyter server's URL: `server` itself when absolute, else a path under `base_url`."""
    return urljoin(base_url.rstrip("/") + "/", server).rstrip("/")


def start_kernel(base_url: str, server_path: str, token: str, timeout: float = 120.0) -> str:
    """Start a kernel on a Jupyter server; returns its id."""
    url = server_url(base_url, server_path) + "/api/kernels"
    deadline = time.monotonic() + timeout
    while True:
        r = localhost.request(
            "POST", url, headers={"Authorization": f"token {token}"}, json={}, timeout=timeout
        )
        if r.status_code == 201:
            return str(r.json()["id"])
        # The proxy route can trail the ready event by a moment.
        if r.status_code in (502, 503) and time.monotonic() < deadline:
            time.sleep(0.05)
            continue
        raise HubError(r.status_code, _message(r))


def run_in_kernel(
    base_url: str, server_path: str, token: str, code: str, timeout: float = 120.0
) -> str:
    """Start a kernel, execute `code` over the websocket channels, return the output text."""
    kernel = start_kernel(base_url, server_path, token, timeout)
    ws_url = (
        server_url(base_url, server_path).replace("http", "ws", 1)
        + f"/api/kernels/{kernel}/channels"
    )
    msg_id = uuid.uuid4().hex
    request = {
        "header": {
            "msg_id": msg_id,
            "username": "sde",
            "session": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": {"code": code, "silent": False, "store_history": False},
        "channel": "shell",
    }
    out: list[str] = []
    deadline = time.monotonic() + timeout
    with localhost.ws_connect(
        ws_url, additional_headers={"Authorization": f"token {token}"}, open_timeout=timeout
    ) as ws:
        ws.send(json.dumps(request))
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HubError(504, "no kernel reply in time")
            msg = json.loads(ws.recv(timeout=remaining))
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind in ("execute_result", "display_data"):
                out.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                raise HubError(500, f"{content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                break
    return "".join(out).strip()
