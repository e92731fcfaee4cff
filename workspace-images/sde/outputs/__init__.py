"""Taking outputs out of a workspace: airlock requests from a notebook or a terminal.

    import sde.outputs
    request = sde.outputs.new_request()              # an egress request of this project
    request.add("results/counts.csv", group="tables")            # an output file
    request.add("results/method.md", kind="supporting", group="tables")
    request.context("tables", "Counts of ...", "Rounded to 5, none below 10.")
    request.submit()
    request.status()["status"]                       # "submitted", "returned", ...

The airlock copies each named file out of the work directory itself: the client
sends only the path (relative to the work directory), never bytes, so nothing a
kernel does can change what the checkers see. Calls go to the airlock API at
$SDE_AIRLOCK_URL with the workspace's own hub token ($JUPYTERHUB_API_TOKEN), both
put in the environment by the hub: a researcher never handles a token, and the
token is only ever sent to that one URL.

Standard library only, so the image needs nothing else for it. The image-side
name is `sde.outputs` (not `sde.airlock`) because the platform's `sde.airlock`
is another portion of the same namespace and both are installed side by side in
the platform's own environment.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import PurePosixPath
from typing import Any

WORK_DIR = "/home/researcher/work"
TIMEOUT = 120  # seconds: adding a large file copies and checks it before answering

# The airlock API's paths relative to $SDE_AIRLOCK_URL, in one place (method, path): the
# service's (sde.airlock.app.server): its write actions are POST requests/ID/ACTION.
ROUTES: dict[str, tuple[str, str]] = {
    "create": ("POST", "requests"),
    "list": ("GET", "requests"),
    "get": ("GET", "requests/{id}"),
    "add": ("POST", "requests/{id}/add_file"),
    "context": ("POST", "requests/{id}/set_group_text"),
    "exception": ("POST", "requests/{id}/ask_exception"),
    "withdraw_file": ("POST", "requests/{id}/withdraw_file"),
    "submit": ("POST", "requests/{id}/submit"),  # a returned request is resubmitted
    "withdraw": ("POST", "requests/{id}/withdraw"),
}


class AirlockError(Exception):
    """The airlock refused a call or could not be reached; the message says why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _env(name: str, what: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise AirlockError(f"${name} is not set: {what} (start the workspace from the hub)")
    return value


class Client:
    """One airlock API endpoint and the token sent to it; from the environment by default."""

    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        base = url or _env("SDE_AIRLOCK_URL", "the airlock's address is unknown")
        parsed = urllib.parse.urlsplit(base)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise AirlockError(f"the airlock URL {base!r} is not an http(s) URL")
        self.url = base if base.endswith("/") else base + "/"
        self._token = token or _env("JUPYTERHUB_API_TOKEN", "the workspace has no hub token")

    def __repr__(self) -> str:  # never the token
        return f"Client({self.url!r})"

    def call(self, route: str, body: dict[str, Any] | None = None, **params: str) -> Any:
        """The route's JSON answer; an AirlockError with the service's own message otherwise."""
        method, template = ROUTES[route]
        path = template.format(**{k: urllib.parse.quote(v, safe="") for k, v in params.items()})
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            urllib.parse.urljoin(self.url, path),
            data=data,
            method=method,
            headers={
                "Authorization": f"token {self._token}",
                "Accept": "application/json",
                **({"Content-Type": "application/json"} if data is not None else {}),
            },
        )
        # No proxy: the airlock is on the workspace network's bridge, never elsewhere.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=TIMEOUT) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise AirlockError(_error_text(exc), exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AirlockError(f"the airlock at {self.url} cannot be reached: {reason}") from None
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise AirlockError(f"the airlock at {self.url} answered with no JSON") from None


def _error_text(exc: urllib.error.HTTPError) -> str:
    """The service's one-line error ({"error": ...}, or FastAPI's {"detail": ...}), else
    the HTTP reason."""
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    detail = body.get("error") or body.get("detail")
    if isinstance(detail, list):  # a validation error: each problem's message
        detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return f"airlock: {detail or exc.reason} (HTTP {exc.code})"


def work_path(
    path: str | os.PathLike[str], work_dir: str | None = None, cwd: str | None = None
) -> str:
    """The path relative to the work directory, as the airlock takes it.

    Only a name is sent; the airlock resolves it beneath the work volume without
    following symlinks and refuses what escapes. Refused here already, so the
    researcher learns at once: paths outside the work directory. A relative path
    is taken from the current directory when that is inside the work directory.
    """
    root = PurePosixPath(work_dir or os.environ.get("SDE_WORK_DIR") or WORK_DIR)
    raw = os.fspath(path)
    if not raw or "\x00" in raw:
        raise AirlockError(f"{raw!r} is not a file name")
    here = PurePosixPath(cwd or os.getcwd())
    p = PurePosixPath(raw)
    if not p.is_absolute():
        p = (here if here.is_relative_to(root) else root) / p
    parts: list[str] = []
    for part in p.parts[1:]:
        if part == "..":
            if parts:
                parts.pop()
        elif part != ".":
            parts.append(part)
    p = PurePosixPath("/", *parts)
    if not p.is_relative_to(root) or p == root:
        raise AirlockError(f"{raw} is not a file under the work directory {root}")
    return str(p.relative_to(root))


class Request:
    """One airlock request, by id; every method is one call to the airlock."""

    def __init__(self, request_id: str, client: Client | None = None) -> None:
        self.id = request_id
        self.client = client or Client()

    def __repr__(self) -> str:
        return f"Request({self.id!r})"

    def add(
        self, path: str | os.PathLike[str], kind: str = "output", group: str = "outputs"
    ) -> dict[str, Any]:
        """Add a file of the work directory (the airlock copies and checks it now).

        `kind` is "output" (released once approved) or "supporting" (seen by the
        checkers, never released). Returns the file with its check results.
        """
        if kind not in ("output", "supporting"):
            raise AirlockError(f"kind must be output or supporting, got {kind!r}")
        name = work_path(path)
        view = self.client.call("add", {"path": name, "kind": kind, "group": group}, id=self.id)
        for found in files_of(view):
            if found.get("name") == name:
                return found
        return {"name": name}

    def context(self, group: str, context: str, controls: str) -> dict[str, Any]:
        """What the group's files are (context) and how disclosure was controlled (controls)."""
        body = {"group": group, "context": context, "controls": controls}
        result: dict[str, Any] = self.client.call("context", body, id=self.id)
        return result

    def exception(self, name: str, check: str, justification: str) -> dict[str, Any]:
        """Ask the checkers to accept a file that fails `check`, saying why."""
        body = {"name": name, "check": check, "justification": justification}
        result: dict[str, Any] = self.client.call("exception", body, id=self.id)
        return result

    def withdraw_file(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.client.call("withdraw_file", {"name": name}, id=self.id)
        return result

    def submit(self) -> dict[str, Any]:
        """Hand the request to the output checkers (a returned request is resubmitted)."""
        result: dict[str, Any] = self.client.call("submit", {}, id=self.id)
        return result

    def status(self) -> dict[str, Any]:
        """The request as the airlock shows its author: state, files, checks, comments."""
        result: dict[str, Any] = self.client.call("get", id=self.id)
        return result

    def withdraw(self) -> dict[str, Any]:
        """Give the request up (final)."""
        result: dict[str, Any] = self.client.call("withdraw", {}, id=self.id)
        return result


def files_of(view: dict[str, Any]) -> list[dict[str, Any]]:
    """Every file of a request as the airlock shows it, each with its group's name."""
    return [
        {**f, "group": g.get("name", "")}
        for g in view.get("groups", [])
        if isinstance(g, dict)
        for f in g.get("files", [])
        if isinstance(f, dict)
    ]


def new_request(project: str | None = None, client: Client | None = None) -> Request:
    """A new egress request of this workspace's project ($SDE_PROJECT)."""
    client = client or Client()
    project = project or _env("SDE_PROJECT", "the workspace's project is unknown")
    made = client.call("create", {"project": project, "direction": "egress"})
    if not isinstance(made, dict) or not isinstance(made.get("id"), str):
        raise AirlockError("the airlock answered a create without a request id")
    return Request(made["id"], client)


def request(request_id: str, client: Client | None = None) -> Request:
    """An existing request by its id."""
    return Request(request_id, client)


def requests(client: Client | None = None) -> list[dict[str, Any]]:
    """My requests, newest first, as the airlock lists them."""
    found = (client or Client()).call("list")
    if isinstance(found, dict):
        found = found.get("requests", [])
    return list(found)
