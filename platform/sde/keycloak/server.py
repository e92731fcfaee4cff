"""A Keycloak server from the keycloak-quarkus-dist zip, for tests and development.

The zip (fetched once per machine by infra/keycloak/fetch.sh) is unpacked into a
cache beside it and built once (`kc.sh build`, the slow, per-option-set step; a
marker file records the options it was built with). Each `start` then runs
`kc.sh start --optimized` (10-25 s instead of about 50 s for `start-dev`) from a
hard-linked copy of the built tree, so parallel test sessions share the cache but
not Keycloak's data directory. Everything listens on loopback only, and
`--cache=local` keeps Keycloak 26.7 from opening its cluster ports on every
interface.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sde.keycloak.errors import KeycloakError

# The dev-mem database lives and dies with the process: what a test session wants.
BUILD_OPTIONS = ("--db=dev-mem", "--health-enabled=true")
# Temurin is the JDK Keycloak recommends; Debian's OpenJDK 17 runs it too.
JAVA_HOMES = ("/usr/lib/jvm/temurin-25-jdk-amd64", "/usr/lib/jvm/java-17-openjdk-amd64")
READY_SECONDS = 180.0
BUILT_MARKER = ".sde-built"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on `path`: one process unpacks and builds, the others wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def java_home() -> str | None:
    """SDE_KEYCLOAK_JAVA_HOME, else the first JDK of JAVA_HOMES present, else PATH's java."""
    chosen = os.environ.get("SDE_KEYCLOAK_JAVA_HOME")
    if chosen:
        return chosen
    for candidate in JAVA_HOMES:
        if Path(candidate, "bin", "java").is_file():
            return candidate
    return None


def _unpack(zip_path: Path, into: Path) -> Path:
    """Unpack the distribution beside a temporary name and rename it into place.

    zipfile drops the permission bits, so they are restored from each entry
    (kc.sh and the launcher must stay executable).
    """
    with zipfile.ZipFile(zip_path) as archive:
        top = archive.namelist()[0].split("/", 1)[0]
        dist = into / top
        if dist.is_dir():
            return dist
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=into))
        try:
            for info in archive.infolist():
                target = Path(archive.extract(info, staging))
                mode = info.external_attr >> 16 & 0o777
                if mode:
                    target.chmod(mode)
            (staging / top).rename(dist)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dist


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KC_")}
    home = java_home()
    if home:
        env["JAVA_HOME"] = home
    env.update(extra or {})
    return env


def prepare(zip_path: Path) -> Path:
    """The unpacked, built distribution next to `zip_path` (unpacked and built at most once)."""
    cache = zip_path.parent
    with _locked(cache / ".lock"):
        dist = _unpack(zip_path, cache)
        marker = dist / BUILT_MARKER
        wanted = " ".join(BUILD_OPTIONS)
        if not marker.is_file() or marker.read_text() != wanted:
            result = subprocess.run(
                [str(dist / "bin" / "kc.sh"), "build", *BUILD_OPTIONS],
                env=_env(),
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if result.returncode != 0:
                tail = (result.stdout + result.stderr).strip()[-1500:]
                raise KeycloakError(f"kc.sh build failed: {tail}")
            marker.write_text(wanted)
    return dist


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class KeycloakServer:
    """A running Keycloak: its base URL, the bootstrap admin, and how to stop it."""

    url: str
    management_url: str
    admin_username: str
    admin_password: str
    home: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the whole process group (kc.sh's shell and the JVM under it)."""
        if self._stopped:
            return
        self._stopped = True
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        shutil.rmtree(self.home, ignore_errors=True)


def _wait_ready(server: KeycloakServer, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    # No proxy and no CA bundle for a loopback probe (REQUESTS_CA_BUNDLE et al.).
    with httpx.Client(trust_env=False, timeout=2) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                tail = server.log_tail()
                server.stop()  # removes this run's copy
                raise KeycloakError(f"Keycloak exited with {server.process.returncode}: {tail}")
            try:
                if client.get(f"{server.management_url}/health/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    tail = server.log_tail()
    server.stop()
    raise KeycloakError(f"Keycloak was not ready within {seconds:.0f} s: {tail}")


def start(
    dist: Path,
    admin_username: str,
    admin_password: str,
    ready_seconds: float = READY_SECONDS,
) -> KeycloakServer:
    """Start the built `dist` on free loopback ports; returns once /health/ready answers."""
    home = Path(tempfile.mkdtemp(prefix="sde-keycloak-", dir=dist.parent))
    run = home / "keycloak"
    # Hard links: the 200 MB tree costs nothing, and Keycloak's data/ is this run's own.
    shutil.copytree(dist, run, copy_function=os.link, ignore=shutil.ignore_patterns("data"))
    port, management = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = home / "keycloak.log"
    command = [
        str(run / "bin" / "kc.sh"),
        "start",
        "--optimized",
        "--cache=local",
        "--http-enabled=true",
        "--http-host=127.0.0.1",
        f"--http-port={port}",
        f"--http-management-port={management}",
        f"--hostname={url}",
    ]
    env = _env(
        {
            "KC_BOOTSTRAP_ADMIN_USERNAME": admin_username,
            "KC_BOOTSTRAP_ADMIN_PASSWORD": admin_password,
        }
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = KeycloakServer(
        url=url,
        management_url=f"http://127.0.0.1:{management}",
        admin_username=admin_username,
        admin_password=admin_password,
        home=home,
        process=process,
        log_path=log_path,
    )
    _wait_ready(server, ready_seconds)
    return server
