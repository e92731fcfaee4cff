"""Starting JupyterHub with the sde configuration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping

import httpx

from sde.core.config import Settings
from sde.core.errors import SdeError
from sde.hub import localhost
from sde.hub.config import CONFIG_FILE, hub_dir
from sde.hub.origins import public_url


def hub_command() -> list[str]:
    return [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG_FILE)]


def hub_url(settings: Settings) -> str:
    """Where browsers open the hub (its public URL; the proxy listens on hub.ip)."""
    return public_url(settings) + "/"


def hub_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The hub process environment: the caller's, with SDE_HOME made explicit."""
    env = dict(os.environ if base is None else base)
    env["SDE_HOME"] = str(settings.home)
    if settings.config_file is not None:
        env["SDE_CONFIG"] = str(settings.config_file)
    return env


def exec_hub(settings: Settings) -> None:
    """Replace this process with JupyterHub (foreground; Ctrl-C stops it)."""
    cwd = hub_dir(settings)
    print(f"sde hub: {hub_url(settings)}", flush=True)
    os.chdir(cwd)
    # A shell without job control starts background commands with SIGINT ignored,
    # and ignored signals survive exec: the hub's services would then ignore the
    # interrupt the hub sends them at shutdown.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    cmd = hub_command()
    os.execve(cmd[0], cmd, hub_env(settings))


class HubProcess:
    """JupyterHub running in a child process (tests, benchmark); stops with its workspaces."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.url = hub_url(settings).rstrip("/")
        self.log_path = hub_dir(settings) / "jupyterhub.log"
        self._env = hub_env(settings, env)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> HubProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 (kept open as long as the hub runs)
        self._proc = subprocess.Popen(
            hub_command(),
            cwd=hub_dir(self.settings),
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SdeError(f"jupyterhub exited: {self.log_tail()}")
            try:
                if localhost.request("GET", f"{self.url}/hub/api/", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SdeError(f"jupyterhub did not answer within {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 60.0) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        # SIGTERM lets the hub stop its workspaces and proxy (cleanup_servers).
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def __enter__(self) -> HubProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
