"""HTTP and websocket clients that resolve `*.localhost` to loopback, as browsers do.

The hub and every workspace have host names of their own under the hub's host
(sde.hub.origins); the demo's is `sde.localhost`. RFC 6761 says such names are
loopback and browsers resolve them so themselves, but the system resolver of a
plain Debian host does not (no nss-myhostname). The hub's own clients (the
tests, the benchmark, `HubProcess` waiting for the hub) therefore resolve them
here; every other name goes to the system resolver as usual.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

LOOPBACK = "127.0.0.1"


def connect_host(host: str) -> str:
    """The address to connect to for `host`: loopback for localhost names."""
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return LOOPBACK
    return host


class _Backend(httpcore.SyncBackend):
    def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        return super().connect_tcp(connect_host(host), port, *args, **kwargs)


def transport(**kwargs: Any) -> httpx.HTTPTransport:
    t = httpx.HTTPTransport(**kwargs)
    # httpx (0.28) takes no network backend of its own; its pool does. The TLS
    # server name stays the URL's host, so certificates are checked as usual.
    t._pool._network_backend = _Backend()
    return t


def client(**kwargs: Any) -> httpx.Client:
    return httpx.Client(transport=transport(), **kwargs)


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    with client() as c:
        return c.request(method, url, **kwargs)


def ws_connect(url: str, **kwargs: Any) -> Any:
    """websockets' sync `connect`, over a socket to the resolved address."""
    from websockets.sync.client import connect

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    host = str(parts.hostname)
    if connect_host(host) != host:
        timeout = kwargs.get("open_timeout", 10)
        kwargs["sock"] = socket.create_connection((connect_host(host), port), timeout=timeout)
    return connect(url, **kwargs)
