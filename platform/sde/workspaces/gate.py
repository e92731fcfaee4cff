"""The hub API gate: what a workspace reaches of the hub, and the firewall's watch.

The hub API itself listens on loopback only (the public proxy and the host reach it
there). On the workspace bridge address, at the hub API port, this gate listens
instead and forwards to the hub only the requests a workspace's
`jupyterhub-singleuser` makes; everything else gets 404 without reaching the hub.
So kernel code cannot use the hub's login page (to lock accounts with wrong
passwords), OAuth authorize, spawn or other browser pages, nor any other API path,
whatever its token would allow. Workspaces get the gate's address as their
JUPYTERHUB_API_URL, so nothing changes for them.

What `jupyterhub-singleuser` (JupyterHub 6) calls on its API URL:
- `GET /hub/api` at start (`check_hub_version`: is the hub there, which version);
- `POST /hub/api/oauth2/token` when a person opens the workspace (the OAuth code
  exchange; the browser's own `oauth2/authorize` goes through the public proxy);
- `GET /hub/api/user` to identify a token or OAuth cookie (`HubAuth.user_for_token`).
The in-workspace library (`sde.data`) calls nothing. Activity reports
(`/users/NAME/activity`) are not forwarded: the idle culler goes by what the proxy
sees, not by what a workspace says about itself.

The gate runs as the hub's managed service `api-gate` (JupyterHub restarts it when
it dies and waits for it at start), as root like the hub. The same process watches
the host firewall (`sde.workspaces.firewall.Guard`): every
`workspaces.access_check_seconds` it checks that sde's chains are intact and their
jumps come first in INPUT and FORWARD, and when Docker or anyone has changed that
it puts them back, logs it and records the audited action
`workspaces.firewall.repaired`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
import threading
from typing import Any

from tornado import httpclient, httpserver, web

from sde.core.config import Settings
from sde.core.services import run_service
from sde.workspaces import firewall, network

log = logging.getLogger("sde.workspaces.gate")

SERVICE = "api-gate"
HUB_IP = "127.0.0.1"
# (method, exact raw path): nothing is normalised, so `..` or %-escapes never match.
ALLOWED: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("GET", re.compile(r"/hub/api/?")),
    ("POST", re.compile(r"/hub/api/oauth2/token")),
    ("GET", re.compile(r"/hub/api/user")),
)
MAX_BODY = 64 * 1024
# Set by the gate from the connection, never passed on from the workspace: the hub
# trusts these (xheaders) for the client's address and scheme.
FORWARDING_HEADERS = {"x-forwarded-for", "x-real-ip", "x-forwarded-proto", "x-scheme", "forwarded"}
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


def allowed(method: str, path: str) -> bool:
    return any(method == m and pattern.fullmatch(path) for m, pattern in ALLOWED)


def hub_ip(settings: Settings) -> str:
    """Where the hub API itself listens: `hub.api_ip`, else loopback; never the bridge."""
    return settings.hub.api_ip or HUB_IP


def hub_url(settings: Settings) -> str:
    return f"http://{hub_ip(settings)}:{settings.hub.api_port}"


def gate_url(settings: Settings) -> str:
    """The gate's address, which workspaces are given as the hub's."""
    return f"http://{network.gateway_of(settings.workspaces)}:{settings.hub.api_port}"


class GateHandler(web.RequestHandler):
    """Forwards an allowed request to the hub as it came; 404 for anything else."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def initialize(self, upstream: str, client: httpclient.AsyncHTTPClient) -> None:
        self.upstream = upstream
        self.client = client

    async def _forward(self) -> None:
        req = self.request
        if not allowed(req.method or "", req.path):
            self.set_status(404)
            self.finish({"status": 404, "message": "Not Found"})
            return
        headers = {
            k: v
            for k, v in req.headers.get_all()
            if k.lower() not in HOP_BY_HOP and k.lower() not in FORWARDING_HEADERS
        }
        headers["X-Forwarded-For"] = str(req.remote_ip)
        body = req.body if req.method == "POST" else None
        try:
            reply = await self.client.fetch(
                self.upstream + req.uri,
                method=req.method,
                headers=headers,
                body=body,
                follow_redirects=False,
                decompress_response=False,
                raise_error=False,
                request_timeout=60,
            )
        except (OSError, httpclient.HTTPClientError) as exc:
            log.warning("hub API unreachable for %s %s: %s", req.method, req.path, exc)
            self.set_status(502)
            self.finish({"status": 502, "message": "hub unreachable"})
            return
        self.set_status(reply.code, reply.reason)
        self.clear_header("Content-Type")
        for k, v in reply.headers.get_all():
            if k.lower() not in HOP_BY_HOP:
                self.add_header(k, v)
        self.finish(reply.body or b"")

    async def get(self) -> None:
        await self._forward()

    async def post(self) -> None:
        await self._forward()

    async def head(self) -> None:
        await self._forward()

    async def put(self) -> None:
        await self._forward()

    async def patch(self) -> None:
        await self._forward()

    async def delete(self) -> None:
        await self._forward()

    async def options(self) -> None:
        await self._forward()

    def check_xsrf_cookie(self) -> None:
        """The hub checks what it needs; the gate holds no session of its own."""


def make_app(settings: Settings) -> web.Application:
    client = httpclient.AsyncHTTPClient()
    return web.Application(
        [(r".*", GateHandler, {"upstream": hub_url(settings), "client": client})],
        xsrf_cookies=False,
    )


def record_repair(settings: Settings, bridge: str, problems: list[str]) -> None:
    """The audited action for one repair (a checkpoint is signed after it commits)."""
    from sde.audit import audited_transaction
    from sde.core.db import get_engine
    from sde.workspaces.events import record_firewall_repair

    with audited_transaction(get_engine(settings), settings) as s:
        record_firewall_repair(s, bridge, problems)


def check_firewall(settings: Settings, guard: firewall.Guard) -> list[str]:
    """One poll: repair when anything is off, and say so in the log and the audit log."""
    problems = guard.repair()
    if problems:
        log.warning("firewall of %s repaired: %s", guard.rules.bridge, "; ".join(problems))
        record_repair(settings, guard.rules.bridge, problems)
    return problems


def watch_docker(wake: Any) -> None:
    """Call `wake` at every network event of the engine, and again when it comes back.

    Docker moves its DOCKER-USER jump to the top of FORWARD whenever it creates a
    network and rebuilds its chains when it restarts: checking then, not only at the
    next poll, keeps the time sde's rules are not first short.
    """
    import time

    from sde.workspaces.engine import docker_client

    while True:
        try:
            wake()
            client = docker_client()
            for _ in client.events(decode=True, filters={"type": "network"}):
                wake()
        except Exception as exc:  # the engine restarting: try again shortly
            log.debug("docker events: %s", exc)
        time.sleep(2)


async def run(settings: Settings) -> None:
    """Listen on the bridge address until the hub goes; watch the firewall meanwhile."""
    gateway = network.gateway_of(settings.workspaces)
    server = httpserver.HTTPServer(
        make_app(settings),
        max_body_size=MAX_BODY,
        max_buffer_size=MAX_BODY,
        idle_connection_timeout=60,
    )
    server.listen(settings.hub.api_port, address=gateway)
    log.info("forwarding %s to %s", gate_url(settings), hub_url(settings))
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    if settings.workspaces.firewall:
        guard = firewall.Guard(network.firewall_rules(settings))
        threading.Thread(
            target=watch_docker, args=(lambda: loop.call_soon_threadsafe(wake.set),), daemon=True
        ).start()
    parent = os.getppid()
    next_check = 0.0
    # A hub killed outright would leave the gate holding its port for ever: go with it.
    while os.getppid() == parent:
        if settings.workspaces.firewall and (wake.is_set() or loop.time() >= next_check):
            wake.clear()
            next_check = loop.time() + settings.workspaces.access_check_seconds
            try:
                await asyncio.to_thread(check_firewall, settings, guard)
            except Exception as exc:  # iptables busy, database restarting: next poll
                log.warning("firewall check failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=1.0)
    log.info("the hub is gone: stopping")
    server.stop()


def serve(settings: Settings) -> None:
    logging.basicConfig(
        level=logging.INFO, format=f"[%(levelname)1.1s %(asctime)s {SERVICE}] %(message)s"
    )
    asyncio.run(run(settings))


def service(settings: Settings, env: dict[str, Any]) -> dict[str, Any]:
    """The managed-service entry for JupyterHub: the hub waits for it at start."""
    return {
        "name": SERVICE,
        "command": [sys.executable, "-m", "sde.workspaces.gate"],
        "environment": env,
        # With a URL the hub waits for the gate to answer before it runs, and exits
        # if it does not; the proxy route it also gets leads to the gate's 404s.
        "url": gate_url(settings),
    }


def main() -> None:
    run_service(serve)


if __name__ == "__main__":
    main()
