"""The JupyterHub configuration, built from the sde settings.

`jupyterhub_config.py` beside this module calls `configure(c)`; `sde hub
start` runs JupyterHub with it. Choices that matter for safety:

- the public proxy listens on loopback (`hub.ip`, `hub.port`), and so does the
  hub API; workspaces reach the API through the gate on the workspace bridge
  address (the managed service `api-gate`, sde.workspaces.gate), which forwards
  only what a workspace's server needs, and the host firewall drops packets for
  that address from any other interface;
- nobody holds the `admin` role; operators get `sde-operator`, which can list
  and stop servers but holds no `access:servers` (cannot enter a workspace);
- a workspace's own token holds only `access:servers!server` (and the airlock's
  `custom:airlock:requests` for that server: sde.airlock.app.auth): it cannot report
  its own activity, so idle culling goes by what the proxy sees, not by what
  kernel code claims;
- hub state (its SQLite database, cookie secret, proxy token) lives under
  `$SDE_HOME/hub`, readable by the owner only.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select

from sde.core.config import Settings, load_settings
from sde.core.errors import ConfigError
from sde.core.files import secret_file
from sde.hub.origins import OriginProxy, origins_for, redirect_handlers, redirect_route
from sde.hub.roles import (
    CULLER_SCOPES,
    CUSTOM_SCOPES,
    OPERATOR_ROLE,
    OPERATOR_SCOPES,
    SERVER_TOKEN_SCOPES,
    USER_SCOPES,
)
from sde.hub.store import Store

TEMPLATES = Path(__file__).with_name("templates")
CONFIG_FILE = Path(__file__).with_name("jupyterhub_config.py")


def hub_dir(settings: Settings) -> Path:
    path = settings.home / "hub"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def proxy_command() -> list[str]:
    """configurable-http-proxy from the project's own install (make install), else PATH."""
    here = Path(sys.prefix) / "chp" / "node_modules" / ".bin" / "configurable-http-proxy"
    found = str(here) if here.exists() else shutil.which("configurable-http-proxy")
    if not found:
        raise ConfigError("configurable-http-proxy is not installed: run `make install`")
    return [found]


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def workspace_network(settings: Settings) -> Any:
    """The workspace network (created with its firewall when missing), or None without Docker."""
    if not settings.hub.docker:
        return None
    from sde.workspaces import network

    return network.ensure_network(settings)


def api_address(settings: Settings, net: Any) -> str:
    """Where the hub API binds: `hub.api_ip`, else loopback; never the gate's bridge address."""
    from sde.workspaces import gate

    return gate.hub_ip(settings)


def service_env(settings: Settings) -> dict[str, str]:
    """The environment of sde's own managed services: the hub's sde settings."""
    env = {k: v for k, v in os.environ.items() if k.startswith("SDE_")}
    env["SDE_HOME"] = str(settings.home)
    if settings.config_file is not None:
        env["SDE_CONFIG"] = str(settings.config_file)
    return env


def operators(store: Store) -> list[str]:
    from sde.registry.enums import GlobalRoleName, PersonStatus
    from sde.registry.models import GlobalRole, Person

    with store.read() as s:
        return sorted(
            s.scalars(
                select(Person.username)
                .join(GlobalRole, GlobalRole.person_id == Person.id)
                .where(
                    GlobalRole.role == GlobalRoleName.OPERATOR,
                    Person.status == PersonStatus.ACTIVE,
                )
            )
        )


def projects_for(store: Store) -> Any:
    """Template helper: the person's projects and whether each may be opened now."""

    def projects(user: Any) -> list[dict[str, Any]]:
        from sde.registry.access import access_decision, projects_of

        if user is None:
            return []
        with store.read() as s:
            out = []
            for slug in projects_of(s, user.name):
                d = access_decision(s, user.name, slug)
                out.append({"slug": slug, "allowed": d.allowed, "reasons": d.reasons})
            return out

    return projects


def warm_pool_service(settings: Settings) -> dict[str, Any]:
    """The managed service that keeps the warm pool full (sde.workspaces.pool)."""
    from sde.workspaces import pool

    pool.prepare_host(settings)
    return {
        "name": "warm-pool",
        "command": [sys.executable, "-m", "sde.workspaces.pool"],
        "environment": service_env(settings),
    }


def configure(c: Any, settings: Settings | None = None) -> None:
    """Fill JupyterHub's config object `c` from the sde settings."""
    from sde.hub.authenticator import SdeAuthenticator
    from sde.hub.spawner import WorkspaceSpawner

    settings = settings or load_settings()
    store = Store(settings)
    store.ensure_schema()
    from sde.workspaces.hardening import publish_jupyter_config

    publish_jupyter_config(settings)
    state = hub_dir(settings)
    hub = settings.hub

    c.JupyterHub.bind_url = f"http://{hub.ip}:{hub.port}/"
    # Each workspace on an origin of its own, the hub and its services on others
    # (sde.hub.origins).
    site = origins_for(settings)
    c.JupyterHub.subdomain_host = site.public_url
    c.JupyterHub.subdomain_hook = site.subdomain_hook
    c.JupyterHub.proxy_class = OriginProxy
    c.JupyterHub.extra_handlers = redirect_handlers(site)
    net = workspace_network(settings)
    api_ip = api_address(settings, net)
    c.JupyterHub.hub_bind_url = f"http://{api_ip}:{hub.api_port}"
    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    c.JupyterHub.template_paths = [str(TEMPLATES)]
    c.JupyterHub.template_vars = {"sde_projects": projects_for(store)}
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = 0
    c.JupyterHub.default_url = "/hub/home"
    c.JupyterHub.authenticate_prometheus = True

    c.ConfigurableHTTPProxy.command = proxy_command()
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{hub.proxy_api_port or free_port()}"
    c.ConfigurableHTTPProxy.auth_token = secret_file(
        state / "proxy-token", secrets.token_hex(32).encode()
    ).decode()
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
    c.ConfigurableHTTPProxy.extra_routes = redirect_route(site, c.JupyterHub.hub_bind_url)

    if hub.authenticator == "keycloak":
        from sde.hub import keycloak_auth

        keycloak_auth.configure(c, settings)
    else:
        c.JupyterHub.authenticator_class = hub.authenticator_class or SdeAuthenticator
    c.JupyterHub.cookie_max_age_days = hub.session_hours / 24
    # The account is asked again this often (and before every spawn); API tokens are
    # refused too while it does not hold (SdeAuthenticator.refresh_user).
    c.Authenticator.auth_refresh_age = settings.workspaces.access_check_seconds
    c.Authenticator.refresh_pre_spawn = True
    c.Authenticator.auth_refresh_strict = True
    c.Authenticator.admin_users = set()
    c.SdeAuthenticator.max_failures = hub.max_failures
    c.SdeAuthenticator.lockout_seconds = hub.lockout_seconds
    c.SdeAuthenticator.totp_key_path = str(settings.totp_key_path)

    c.JupyterHub.load_roles = [
        {"name": "user", "scopes": USER_SCOPES},
        {
            "name": OPERATOR_ROLE,
            "description": "Operators: see and stop workspaces, never enter them.",
            "scopes": OPERATOR_SCOPES,
            "users": operators(store),
        },
        {"name": "sde-idle-culler", "scopes": CULLER_SCOPES, "services": ["idle-culler"]},
    ]
    c.JupyterHub.services = [
        {
            "name": "idle-culler",
            "command": [
                sys.executable,
                "-m",
                "jupyterhub_idle_culler",
                f"--timeout={hub.idle_timeout}",
                f"--cull-every={max(60, hub.idle_timeout // 6)}",
            ],
        }
    ]
    # What the culler reads is the proxy's record of each route's last request,
    # copied into the hub this often (workspaces cannot report their own).
    c.JupyterHub.last_activity_interval = hub.activity_seconds

    if net is not None:
        from sde.workspaces import workvolumes
        from sde.workspaces.engine import docker_client

        # Work volume mounts a crash left behind, with no workspace using them.
        workvolumes.sweep(docker_client(), settings)
    if net is not None:
        from sde.workspaces import gate

        # First: the hub waits for it before it runs (and restarts it should it die).
        c.JupyterHub.services.insert(0, gate.service(settings, service_env(settings)))
    if net is not None and settings.workspaces.warm_pool:
        c.JupyterHub.services.append(warm_pool_service(settings))
    if settings.keycloak.url:
        from sde.keycloak import service as keycloak_sync

        # Keycloak follows the registry: a sync at start, then every access check.
        c.JupyterHub.services.append(keycloak_sync.service(settings, service_env(settings)))
    from sde.airlock.app import server as airlock

    # The airlock (pages and API) on the bridge address at workspaces.airlock_port.
    c.JupyterHub.services.append(airlock.hub_service(settings, service_env(settings)))
    c.JupyterHub.custom_scopes = CUSTOM_SCOPES

    c.JupyterHub.spawner_class = WorkspaceSpawner
    c.Spawner.server_token_scopes = SERVER_TOKEN_SCOPES
    c.Spawner.default_url = "/lab"
    # No Jupyter configuration from the home directory: a researcher cannot undo
    # the workspace's own settings (e.g. bring the download commands back).
    c.Spawner.disable_user_config = True
    # Each poll also asks the registry whether access still holds (WorkspaceSpawner.poll).
    c.Spawner.poll_interval = settings.workspaces.access_check_seconds
    c.Spawner.start_timeout = 180
    c.Spawner.http_timeout = 120
    c.WorkspaceSpawner.projects_dir = str(settings.projects_dir)
    # Container hardening, limits and mounts are set per workspace by the spawner
    # (sde.workspaces.hardening.workspace_options); here what all share.
    c.DockerSpawner.image = hub.image
    c.DockerSpawner.prefix = hub.name
    c.DockerSpawner.pull_policy = "never"
    c.DockerSpawner.remove = True
    if net is not None:
        from sde.workspaces import gate

        # Workspaces reach the hub API only through the gate on the bridge address.
        c.DockerSpawner.hub_connect_url = gate.gate_url(settings)
    if net is not None:
        c.DockerSpawner.network_name = net.name
        c.DockerSpawner.use_internal_ip = True
