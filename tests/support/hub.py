"""A real JupyterHub on free loopback ports, over a registry built for the test."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyotp
from sqlalchemy import Engine

from sde.core.config import Settings, load_settings
from sde.core.db import make_engine, transaction
from sde.core.schema import ensure_schema
from sde.hub import credentials
from sde.hub.launch import HubProcess
from tests.support.registry import ACTOR

PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HubSite:
    home: Path
    env: dict[str, str]
    settings: Settings
    engine: Engine
    hub: HubProcess | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    used_steps: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        assert self.hub is not None
        return self.hub.url

    def set_password(self, username: str, password: str = PASSWORD) -> None:
        with transaction(self.engine) as s:
            credentials.set_password(s, ACTOR, username, password)

    def enrol(self, username: str, password: str = PASSWORD) -> str:
        """Give `username` a password and an enrolled authenticator; returns the TOTP secret."""
        self.set_password(username, password)
        secret = credentials.generate_totp_secret()
        cipher = credentials.totp_cipher(self.settings.totp_key_path)
        with transaction(self.engine) as s:
            credentials.enrol_totp(s, ACTOR, username, secret, cipher)
        self.secrets[username] = secret
        return secret

    def code(self, username: str) -> str:
        """A code the hub has not seen accepted yet (each is accepted once).

        The hub allows one step of drift, so the next step's code serves when the
        current one is used; past that, wait for the clock.
        """
        totp = pyotp.TOTP(self.secrets[username])
        while True:
            now = time.time()
            step = int(now // 30)
            last = self.used_steps.get(username, -1)
            for candidate in (step, step + 1):
                if candidate > last:
                    self.used_steps[username] = candidate
                    return totp.at(candidate * 30)
            time.sleep((step + 1) * 30 - now + 0.05)


def site_env(home: Path, docker: bool, **extra: str) -> dict[str, str]:
    env = {
        "SDE_HOME": str(home),
        "SDE_DATABASE_URL": f"sqlite:///{home / 'sde.db'}",
        "SDE_HUB_PORT": str(free_port()),
        "SDE_HUB_API_PORT": str(free_port()),
        "SDE_HUB_DOCKER": "true" if docker else "false",
        # Containers and volumes of this test's hub only (and removed afterwards).
        "SDE_HUB_NAME": f"sdetest{uuid.uuid4().hex[:8]}",
        "SDE_HUB_MAX_FAILURES": "3",
        "SDE_HUB_LOCKOUT_SECONDS": "600",
    }
    if docker:
        # A workspace network (bridge, subnet, firewall chains) of this test's own.
        tag = env["SDE_HUB_NAME"][-8:]
        env["SDE_WORKSPACES_NETWORK"] = f"sdetest-{tag}"
        env["SDE_WORKSPACES_BRIDGE"] = f"sdet{tag[:8]}"
        env["SDE_WORKSPACES_SUBNET"] = free_subnet()
    else:
        env["SDE_HUB_API_IP"] = "127.0.0.1"
        # The airlock service then listens on loopback: a port of this hub's own.
        env["SDE_WORKSPACES_AIRLOCK_PORT"] = str(free_port())
    env.update(extra)
    return env


def free_subnet() -> str:
    """A /24 in 10.214.0.0/16 that no Docker network uses yet."""
    import random

    import docker

    used = {
        cfg.get("Subnet")
        for net in docker.from_env().networks.list()
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []
    }
    for third in random.sample(range(256), 256):
        subnet = f"10.214.{third}.0/24"
        if subnet not in used:
            return subnet
    raise RuntimeError("no free test subnet in 10.214.0.0/16")


def make_site(home: Path, docker: bool = False, **extra: str) -> HubSite:
    home.mkdir(parents=True, exist_ok=True)
    env = site_env(home, docker, **extra)
    settings = load_settings(env)
    engine = make_engine(settings.database_url)
    ensure_schema(engine)
    return HubSite(home=home, env=env, settings=settings, engine=engine)


@contextmanager
def running(site: HubSite) -> Iterator[HubSite]:
    import os

    site.hub = HubProcess(site.settings, env={**os.environ, **site.env})
    site.hub.start()
    try:
        if site.settings.hub.docker and site.settings.workspaces.warm_pool:
            # Every test spawn then takes the warm path; tests of the cold path set
            # SDE_WORKSPACES_WARM_POOL=0.
            from sde.workspaces.pool import wait_ready

            wait_ready(site.settings)
        yield site
    finally:
        site.hub.stop()
        site.engine.dispose()
        if site.settings.hub.docker:
            from sde.workspaces import pool, workvolumes
            from sde.workspaces.engine import docker_client
            from sde.workspaces.network import remove_network

            pool.sweep(docker_client(), site.settings, unclaimed=True)
            pool.teardown_host(site.settings)
            workvolumes.sweep(docker_client(), site.settings)
            with contextlib.suppress(OSError):
                workvolumes.work_root(site.settings).rmdir()
                pool.pool_root(site.settings).rmdir()
            remove_volumes(site.settings.hub.name)
            remove_network(site.settings)


def remove_volumes(installation: str) -> None:
    import docker

    client = docker.from_env()
    for volume in client.volumes.list(filters={"name": f"{installation}-work-"}):
        volume.remove(force=True)
