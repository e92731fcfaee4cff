"""Every workspace on a web origin of its own; the hub and its services on others.

A browser lets a page read only what its own origin serves. Were the workspaces
served on the hub's origin (JupyterHub's default), a page served from one
workspace (by code that took over its port, say) would read the hub's pages of
whoever opens it, take their XSRF token and mint hub tokens with their rights.
So, with the hub at `hub.public_url` (e.g. http://sde.localhost:8000):

- the hub's pages stay on that host;
- each workspace, person x project, is served only on a host of its own,
  `w-<id>.<hub host>`, where `<id>` is the pair's keyed id (sde.workspaces.names,
  the one its container and work volume are named by): distinct for every pair,
  and telling nobody who works on what;
- each hub service (the airlock) on `<name>--service.<hub host>`.

JupyterHub itself knows only one host per *user* (its `subdomain_hook` sees the
user's name, not the server's). Here that user host is the hub's own host, and
the pieces below move each named server to its own host:

- `WorkspaceSpawner` gives the proxy the workspace host as the route
  (`proxy_spec`), and `OriginProxy` removes that route again at stop;
- every URL JupyterHub hands out for a workspace still names the hub's host
  (`/user/NAME/PROJECT/...`, including the OAuth callback it registered); one
  proxy route on the hub's host (`/user/`) sends those requests to
  `OriginRedirect`, which redirects them to the workspace's own host, path and
  query unchanged. The workspace's OAuth cookie is then set on that host only.

Browsers resolve every `*.localhost` name to loopback (RFC 6761), so the demo
needs no DNS; a site needs a wildcard DNS name and certificate for `*.HOST`
(docs/deployment.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from jupyterhub.proxy import ConfigurableHTTPProxy
from jupyterhub.utils import subdomain_hook_idna, url_path_join
from tornado import web

from sde.core.config import Settings
from sde.workspaces import names

REDIRECT_PREFIX = "sde-origin"
# Workspace hosts start with this; a person's or a service's host never does.
WORKSPACE_LABEL = "w-"


def public_url(settings: Settings) -> str:
    """The hub's public URL, scheme://host[:port] (its shape checked by load_settings)."""
    url = settings.hub.public_url or f"http://sde.localhost:{settings.hub.port}"
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class Origins:
    """Where the hub, its services and each workspace are served."""

    settings: Settings
    public_url: str

    @property
    def domain(self) -> str:
        return str(urlsplit(self.public_url).hostname)

    def workspace_host(self, user: str, server: str) -> str:
        """The workspace's host name: distinct for every (user, server) pair."""
        return f"{WORKSPACE_LABEL}{names.workspace_id(self.settings, user, server)}.{self.domain}"

    def workspace_url(self, user: str, server: str) -> str:
        """scheme://host[:port] of the workspace."""
        parts = urlsplit(self.public_url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{self.workspace_host(user, server)}{port}"

    def workspace_spec(self, user: str, server: str, base_path: str) -> str:
        """The proxy route of the workspace whose URL path is `base_path`."""
        return url_path_join(self.workspace_host(user, server), base_path, "/")

    def subdomain_hook(self, name: str, domain: str, kind: str) -> str:
        """JupyterHub's host of a user (the hub's own host: see above) or a service."""
        if kind == "user":
            return domain
        return str(subdomain_hook_idna(name, domain, kind))


def origins_for(settings: Settings) -> Origins:
    return Origins(settings, public_url(settings))


class OriginRedirect(web.RequestHandler):
    """/user/NAME/SERVER/... on the hub's host -> the same on the workspace's host.

    Stateless and unauthenticated on purpose: it says nothing but where a
    workspace would be, and that workspace's server asks for sign-in itself.
    Requests for a user with no server name go to the hub's page for them.
    """

    def initialize(self, origins: Origins) -> None:
        self.origins = origins

    def get(self, user: str, server: str | None, rest: str | None) -> None:
        # Everything after /hub/sde-origin, exactly as the browser sent it.
        uri = self.request.uri or ""
        tail = uri.split(f"/{REDIRECT_PREFIX}", 1)[1]
        if not server:
            self.redirect(url_path_join(self.origins.public_url, "hub", tail))
            return
        host = self.origins.workspace_url(unquote(user), unquote(server))
        self.redirect(host + tail)

    head = get


def redirect_handlers(origins: Origins) -> list[tuple[str, type, dict[str, Any]]]:
    """For `JupyterHub.extra_handlers` (mounted under /hub/)."""
    pattern = rf"/{REDIRECT_PREFIX}/user/([^/]+)(?:/([^/?]+))?(/.*)?"
    return [(pattern, OriginRedirect, {"origins": origins})]


def redirect_route(origins: Origins, hub_url: str) -> dict[str, str]:
    """For `Proxy.extra_routes`: /user/ on the hub's host goes to `OriginRedirect`."""
    target = url_path_join(hub_url.rstrip("/"), "hub", REDIRECT_PREFIX)
    return {f"{origins.domain}/user/": target}


class OriginProxy(ConfigurableHTTPProxy):
    """configurable-http-proxy, removing each workspace's route by its own host."""

    async def delete_user(self, user: Any, server_name: str = "") -> None:
        spawner = user.spawners[server_name]
        self.log.info("Removing %s from proxy (%s)", spawner._log_name, spawner.proxy_spec)
        await self.delete_route(spawner.proxy_spec)
