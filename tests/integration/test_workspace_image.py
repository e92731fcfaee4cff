"""The researcher workspace image, built from Debian packages and PyPI only."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
import uuid

import httpx
import pytest

pytestmark = pytest.mark.docker


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def run_in_image(image: str, script: str) -> subprocess.CompletedProcess[str]:
    return docker("run", "--rm", "--network", "none", image, "sh", "-c", script)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_workspace_image_runs_as_unprivileged_researcher(workspace_image):
    result = run_in_image(workspace_image, "id -u; id -g; echo $HOME; pwd")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1000", "1000", "/home/researcher", "/home/researcher/work"]


def test_workspace_image_has_analysis_stack_and_researcher_library(workspace_image):
    script = (
        "python -c 'import duckdb, pyarrow, pandas, scipy, statsmodels, matplotlib, sde.data;"
        " print(duckdb.__version__, pyarrow.__version__, pandas.__version__)'"
        " && jupyterhub-singleuser --version && sde-data --help"
    )
    result = run_in_image(workspace_image, script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:3] == ["2.0.0", "26.0.1", "3.1.1"]
    assert "6.1.1" in result.stdout and "catalogue" in result.stdout


def test_workspace_image_build_is_cached_when_inputs_unchanged(workspace_image):
    result = subprocess.run(
        ["bash", "workspace-images/build.sh"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "is up to date" in result.stdout


def test_workspace_image_honours_base_image_argument(workspace_image):
    """A site with a registry passes BASE_IMAGE; here the locally built base stands in."""
    tag = f"sde-workspace-test:{uuid.uuid4().hex[:8]}"
    env = {"BASE_IMAGE": "sde-base:bookworm", "IMAGE": tag}
    result = subprocess.run(
        ["bash", "workspace-images/build.sh"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **env},
    )
    try:
        assert result.returncode == 0, result.stderr
        inspect = docker("image", "inspect", tag, "-f", "{{json .Config.Labels}}")
        assert "org.sde.inputs" in json.loads(inspect.stdout)
    finally:
        docker("image", "rm", "-f", tag)


@pytest.fixture(scope="module")
def jupyter_server(workspace_image):
    """`jupyter server` from the image, published on loopback only."""
    token = secrets.token_hex(16)
    port = free_port()
    name = f"sde-test-jupyter-{uuid.uuid4().hex[:8]}"
    started = docker(
        "run",
        "-d",
        "--rm",
        "--name",
        name,
        "-p",
        f"127.0.0.1:{port}:8888",
        workspace_image,
        "jupyter",
        "lab",
        "--ip=0.0.0.0",
        "--port=8888",
        "--no-browser",
        f"--IdentityProvider.token={token}",
    )
    assert started.returncode == 0, started.stderr
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"token {token}"}
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if httpx.get(f"{base}/api/status", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                logs = docker("logs", name).stderr[-2000:]
                pytest.fail(f"jupyter server did not start: {logs}")
            time.sleep(0.3)
        yield base, headers
    finally:
        docker("rm", "-f", name)
        docker("network", "rm", name)


def test_workspace_image_files_handler_is_removed(jupyter_server):
    base, headers = jupyter_server
    put = httpx.put(
        f"{base}/api/contents/result.csv",
        headers=headers,
        json={"type": "file", "format": "text", "content": "a,b\n1,2\n"},
    )
    assert put.status_code in (200, 201), put.text
    # The file exists (the contents API shows it) but is not served for download.
    assert httpx.get(f"{base}/api/contents/result.csv", headers=headers).status_code == 200
    assert httpx.get(f"{base}/files/result.csv", headers=headers).status_code == 404


def test_workspace_image_lab_download_commands_are_disabled(jupyter_server):
    base, headers = jupyter_server
    page = httpx.get(f"{base}/lab", headers=headers, follow_redirects=True)
    assert page.status_code == 200
    start = page.text.index('id="jupyter-config-data"')
    config = json.loads(
        page.text[page.text.index(">", start) + 1 : page.text.index("</script>", start)]
    )
    disabled = config["disabledExtensions"]
    assert "@jupyterlab/filebrowser-extension:download" in disabled
    assert "@jupyterlab/docmanager-extension:download" in disabled
