"""The workspace's airlock client (sde.outputs): what it sends and how it fails.

Against a real HTTP server on loopback that records each call and answers as
told (the service's `{"error": ...}`, FastAPI's `{"detail": ...}`, no JSON, a
closed port): every failure is one AirlockError naming the problem, and the
token goes only in the Authorization header of calls to the configured URL.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import sde.outputs as outputs
from sde.outputs import AirlockError, Client, Request, new_request, work_path
from sde.outputs.cli import main

TOKEN = "secret-workspace-token"


class Recorder(ThreadingHTTPServer):
    answer: tuple[int, bytes] = (200, b"{}")
    calls: list[dict[str, Any]]


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.calls.append(
            {
                "method": self.command,
                "path": self.path,
                "auth": self.headers.get("Authorization"),
                "body": json.loads(body) if body else None,
            }
        )
        status, payload = self.server.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _serve

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def airlock() -> Iterator[Recorder]:
    server = Recorder(("127.0.0.1", 0), Handler)
    server.calls = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(airlock: Recorder) -> Client:
    return Client(f"http://127.0.0.1:{airlock.server_address[1]}/services/airlock/api/", TOKEN)


def test_outputs_new_request_sends_project_and_token_to_the_configured_url(airlock, client):
    airlock.answer = (201, json.dumps({"id": "abc123", "status": "pending"}).encode())
    made = new_request("p1", client)
    assert made.id == "abc123"
    (call,) = airlock.calls
    assert call["method"] == "POST" and call["path"] == "/services/airlock/api/requests"
    assert call["auth"] == f"token {TOKEN}"
    assert call["body"] == {"project": "p1", "direction": "egress"}


def test_outputs_add_sends_only_the_relative_name_and_returns_the_file(airlock, client):
    view = {"groups": [{"name": "g", "files": [{"name": "results/t.csv", "sha256": "ab"}]}]}
    airlock.answer = (200, json.dumps(view).encode())
    found = Request("r1", client).add(outputs.WORK_DIR + "/results/t.csv", group="g")
    assert found == {"name": "results/t.csv", "sha256": "ab", "group": "g"}
    assert airlock.calls[0]["path"] == "/services/airlock/api/requests/r1/add_file"
    assert airlock.calls[0]["body"] == {"path": "results/t.csv", "kind": "output", "group": "g"}


@pytest.mark.parametrize(
    "status, payload, expected",
    [
        (409, {"error": "airlock request r1 is submitted: cannot add a file"}, "is submitted"),
        (422, {"detail": [{"msg": "field required"}]}, "field required"),
        (403, {"detail": "Forbidden"}, "Forbidden"),
    ],
)
def test_outputs_service_refusal_is_one_airlock_error_with_its_message(
    airlock, client, status, payload, expected
):
    airlock.answer = (status, json.dumps(payload).encode())
    with pytest.raises(AirlockError, match=expected) as caught:
        Request("r1", client).submit()
    assert caught.value.status == status
    assert f"HTTP {status}" in str(caught.value)


def test_outputs_answer_without_json_is_an_airlock_error(airlock, client):
    airlock.answer = (200, b"<html>proxy page</html>")
    with pytest.raises(AirlockError, match="no JSON"):
        Request("r1", client).status()


def test_outputs_create_answer_without_id_is_an_airlock_error(airlock, client):
    airlock.answer = (201, b"{}")
    with pytest.raises(AirlockError, match="without a request id"):
        new_request("p1", client)


def test_outputs_closed_port_is_cannot_be_reached():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends
    with pytest.raises(AirlockError, match="cannot be reached"):
        Request("r1", Client(f"http://127.0.0.1:{port}/api/", TOKEN)).status()


def test_outputs_missing_environment_names_the_variable(monkeypatch):
    monkeypatch.delenv("SDE_AIRLOCK_URL", raising=False)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)
    with pytest.raises(AirlockError, match=r"\$SDE_AIRLOCK_URL is not set"):
        Client()
    monkeypatch.setenv("SDE_AIRLOCK_URL", "http://127.0.0.1:1/api/")
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN")
    with pytest.raises(AirlockError, match=r"\$JUPYTERHUB_API_TOKEN is not set"):
        Client()


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://host/x", "not a url"])
def test_outputs_non_http_url_is_refused(url):
    with pytest.raises(AirlockError, match="not an http"):
        Client(url, TOKEN)


def test_outputs_token_never_in_repr(client):
    assert TOKEN not in repr(client) and TOKEN not in repr(Request("r1", client))


@pytest.mark.parametrize(
    "path, cwd, expected",
    [
        ("results/t.csv", "/", "results/t.csv"),
        ("t.csv", "/home/researcher/work/results", "results/t.csv"),
        ("/home/researcher/work/a/../b.csv", "/", "b.csv"),
    ],
)
def test_outputs_work_path_is_relative_to_the_work_directory(path, cwd, expected):
    assert work_path(path, cwd=cwd) == expected


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../x.csv", "/home/researcher/work", "/home/researcher/workx/a", ""]
)
def test_outputs_work_path_outside_the_work_directory_is_refused(path):
    with pytest.raises(AirlockError):
        work_path(path, cwd="/home/researcher/work")


def test_outputs_cli_refusal_exits_2_with_one_line(airlock, client, monkeypatch, capsys):
    monkeypatch.setenv("SDE_AIRLOCK_URL", client.url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)
    airlock.answer = (404, json.dumps({"error": "unknown airlock request 'nope'"}).encode())
    assert main(["request", "status", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: airlock: unknown airlock request 'nope' (HTTP 404)"]
