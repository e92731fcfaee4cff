"""docker-compose.yml: the platform as containers, from `docker-compose up` to a query.

The hub runs from the sde-platform image on the host's engine with its state in
PostgreSQL (sde-postgres); `sde` commands run inside the hub container; a researcher
signs in with password and TOTP and queries the project's data in a workspace that
the warm pool served, as with the hub on the host. Stopping the deployment stops
the workspaces and the pool and leaves no mounts. The TLS proxy serves the hub and
Keycloak (on PostgreSQL, its own database and role) under the demo certificate it
made at first start.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import create_engine, text

from sde.audit import list_events
from sde.core.config import Settings, load_settings
from sde.hub import localhost
from sde.hub.client import HubClient
from tests.conftest import REPO, require_service
from tests.support.hub import free_port, free_subnet, remove_volumes

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PROJECT = "diabetes-outcomes"
# Quote, space and URL delimiters: the password never goes into a URL.
DB_PASSWORD = "it's a s3cret @/:#?"
KEYCLOAK_DB_PASSWORD = "keycloak's s3cret %s @/:"
COUNT_BY_SEX = "SELECT sex, count(*) FROM person GROUP BY sex ORDER BY sex"


@dataclass
class Deployment:
    env: dict[str, str]
    home: Path
    url: str
    demo_output: str = ""

    @property
    def settings(self) -> Settings:
        return load_settings({k: v for k, v in self.env.items() if k.startswith("SDE_")})

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker-compose", "-f", str(REPO / "docker-compose.yml"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def sde(self, *args: str) -> str:
        result = self.compose("exec", "-T", "hub", "sde", *args)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    def db_engine(self) -> Any:
        return create_engine(
            f"postgresql+psycopg://sde@127.0.0.1:{self.env['SDE_DB_PORT']}/sde",
            connect_args={"password": DB_PASSWORD},
        )

    def account(self, username: str) -> tuple[str, str]:
        """Password and TOTP secret of a demo account, as `sde demo` printed them."""
        found = re.search(
            rf"^\s+{username}\s.*\n\s+password (\S+)\s+TOTP secret (\S+)",
            self.demo_output,
            re.M,
        )
        assert found, self.demo_output[-2000:]
        return found.group(1), found.group(2)


def _mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == path or p.startswith(path + "/")]


@pytest.fixture(scope="module")
def deployment(
    platform_images: None, workspace_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    require_service("docker-compose", shutil.which("docker-compose") is not None, "Debian package")
    tag = uuid.uuid4().hex[:8]
    home = tmp_path_factory.mktemp("compose") / "home"
    hub_port = free_port()
    proxy_port = free_port()
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": f"sdetest{tag}",
        "SDE_DB_PASSWORD": DB_PASSWORD,
        "SDE_HOME": str(home),
        "SDE_DB_PORT": str(free_port()),
        "SDE_HUB_PORT": str(hub_port),
        "SDE_HUB_API_PORT": str(free_port()),
        "SDE_HUB_NAME": f"sdetest{tag}",
        "SDE_HUB_IMAGE": workspace_image,
        "SDE_WORKSPACES_NETWORK": f"sdetest-{tag}",
        "SDE_WORKSPACES_BRIDGE": f"sdet{tag}",
        "SDE_WORKSPACES_SUBNET": free_subnet(),
        "KEYCLOAK_DB_PASSWORD": KEYCLOAK_DB_PASSWORD,
        "KEYCLOAK_ADMIN_PASSWORD": "admin-" + uuid.uuid4().hex,
        "KEYCLOAK_HTTP_PORT": str(free_port()),
        "SDE_PROXY_PORT": str(proxy_port),
        "KEYCLOAK_PUBLIC_URL": f"https://auth.localhost:{proxy_port}",
    }
    pool_was_mounted = bool(_mounts_under("/run/sde"))
    d = Deployment(env, home, f"http://sde.localhost:{hub_port}")
    try:
        up = d.compose("up", "-d")
        assert up.returncode == 0, up.stderr[-3000:]
        _wait_for_login_page(d)
        yield d
    finally:
        down = d.compose("down", "-v", "--timeout", "60")
        settings = d.settings
        from sde.workspaces import pool
        from sde.workspaces.engine import docker_client
        from sde.workspaces.network import remove_network

        # What a failed test may have left; after a clean `down` there is nothing.
        pool.sweep(docker_client(), settings, unclaimed=True)
        remove_volumes(settings.hub.name)
        remove_network(settings)
        if not pool_was_mounted:
            for point in reversed(_mounts_under("/run/sde")):
                subprocess.run(["umount", point], check=False)
        assert down.returncode == 0, down.stderr[-2000:]


def _wait_for_login_page(d: Deployment, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if localhost.request("GET", f"{d.url}/hub/login", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    logs = d.compose("logs", "--tail=60").stdout
    pytest.fail(f"the hub did not serve its login page within {seconds} s:\n{logs[-4000:]}")


def test_compose_sde_commands_keep_state_in_postgres(deployment: Deployment) -> None:
    deployment.demo_output = deployment.sde("demo", "--persons", "300", "--no-hub")
    assert "sign in with username, password and code" in deployment.demo_output
    with deployment.db_engine().connect() as conn:
        people = conn.execute(text("SELECT username FROM people ORDER BY username")).scalars()
        assert "alice" in list(people)
    assert not (deployment.home / "sde.db").exists()
    shown = deployment.sde("config", "show")
    assert "postgresql+psycopg://sde@127.0.0.1" in shown and "s3cret" not in shown


def test_compose_researcher_signs_in_and_queries_project_data(deployment: Deployment) -> None:
    import sde.data

    assert deployment.demo_output, "runs after the registry is seeded"
    password, secret = deployment.account("alice")
    with HubClient(deployment.url) as c:
        assert c.login("alice", password, pyotp.TOTP(secret).now()).ok
        server = c.start_workspace(PROJECT)
        code = (
            "import json, sde.data\n"
            f"print(json.dumps(dict(sde.data.connect().sql({COUNT_BY_SEX!r}).fetchall())))"
        )
        counts = c.execute(server, code)
        c.stop_workspace(PROJECT)
    con = sde.data.connect(deployment.home / "projects" / PROJECT / "data")
    try:
        expected = dict(con.sql(COUNT_BY_SEX).fetchall())
    finally:
        con.close()
    assert sum(expected.values()) > 100
    assert dict(json.loads(counts)) == expected
    spawns = list(list_events(deployment.db_engine(), action="workspace.spawn"))
    assert [(e["actor"], e["project"]) for e in spawns] == [("user:alice", PROJECT)]
    # The warm pool served it: its mounts reached the engine through /run/sde.
    assert spawns[0]["details"]["warm"] is True


def _through_proxy(d: Deployment, host: str, path: str, ca: Path) -> httpx.Response:
    """GET https://HOST:PORT/PATH through the proxy, its certificate checked against `ca`."""
    port = int(d.env["SDE_PROXY_PORT"])
    # The name is sent (SNI, Host) and checked against the certificate; the connection
    # goes to loopback, where the proxy listens.
    transport = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=str(ca)))
    with httpx.Client(transport=transport, trust_env=False, timeout=10) as client:
        request = client.build_request("GET", f"https://127.0.0.1:{port}{path}")
        request.headers["Host"] = f"{host}:{port}"
        request.extensions["sni_hostname"] = host
        return client.send(request)


def _wait_healthy(d: Deployment, service: str, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    status = ""
    while time.monotonic() < deadline:
        ids = d.compose("ps", "-q", service).stdout.split()
        if ids:
            status = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Health.Status}}", ids[0]],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            if status == "healthy":
                return
        time.sleep(2)
    logs = d.compose("logs", "--tail=60", service).stdout
    pytest.fail(f"{service} not healthy within {seconds} s ({status}):\n{logs[-4000:]}")


def test_compose_proxy_serves_hub_and_keycloak_over_tls(
    deployment: Deployment, tmp_path: Path
) -> None:
    _wait_healthy(deployment, "keycloak")
    ca = tmp_path / "demo-ca.crt"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cert = deployment.compose("exec", "-T", "proxy", "cat", "/etc/sde-tls/tls.crt")
        if cert.returncode == 0 and "BEGIN CERTIFICATE" in cert.stdout:
            break
        time.sleep(1)
    ca.write_text(cert.stdout)
    port = deployment.env["SDE_PROXY_PORT"]
    # Keycloak on its own host, its URLs the public ones (KC_HOSTNAME, proxy headers).
    found = _through_proxy(
        deployment, "auth.localhost", "/realms/master/.well-known/openid-configuration", ca
    )
    assert found.status_code == 200, found.text[:500]
    assert found.json()["issuer"] == f"https://auth.localhost:{port}/realms/master"
    # Its admin console and API are not on the public entry.
    assert (
        _through_proxy(deployment, "auth.localhost", "/admin/master/console/", ca).status_code
        == 404
    )
    # The hub and a workspace host, through the same certificate (*.sde.localhost).
    login = _through_proxy(deployment, "sde.localhost", "/hub/login", ca)
    assert login.status_code == 200 and "password" in login.text.lower()
    sub = _through_proxy(deployment, "w-0123.sde.localhost", "/hub/login", ca)
    assert sub.status_code in (200, 302, 404)  # the hub's proxy answered, over TLS
    # Keycloak's database is its own, with its own role, in the deployment's PostgreSQL.
    with deployment.db_engine().connect() as conn:
        owner = conn.execute(
            text("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'keycloak'")
        ).scalar()
    assert owner == "keycloak"
    # Plain HTTP only on the host's loopback.
    published = deployment.compose("port", "keycloak", "8080").stdout.strip()
    assert published == f"127.0.0.1:{deployment.env['KEYCLOAK_HTTP_PORT']}"


def test_compose_stop_removes_workspaces_pool_and_mounts(deployment: Deployment) -> None:
    import docker

    from sde.workspaces import pool

    name = deployment.env["SDE_HUB_NAME"]
    client = docker.from_env()
    labelled = {"label": f"org.sde.installation={name}"}
    pool.wait_ready(deployment.settings)
    assert client.containers.list(filters=labelled), "the pool keeps a warm workspace"
    assert _mounts_under(f"/run/sde/{name}")
    stop = deployment.compose("stop", "--timeout", "60", "hub")
    assert stop.returncode == 0, stop.stderr[-2000:]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and client.containers.list(all=True, filters=labelled):
        time.sleep(0.5)
    assert client.containers.list(all=True, filters=labelled) == []
    assert _mounts_under(f"/run/sde/{name}") == []


def test_compose_db_first_start_without_password_is_refused(platform_images: None) -> None:
    result = subprocess.run(
        ["docker", "run", "--rm", "sde-postgres:latest"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "set SDE_DB_PASSWORD" in result.stderr
