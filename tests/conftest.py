"""Shared fixtures.

`require_service` is the only way a test may bow out for a missing service:
locally it skips with the reason; with CI=true it fails, because CI must run
everything.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_service(name: str, available: bool, why: str = "") -> None:
    if available:
        return
    message = f"{name} is not available{': ' + why if why else ''}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(message)


# ---------------------------------------------------------------- state database

import shutil  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

from sqlalchemy import Engine, create_engine, text  # noqa: E402

from tests.support import postgres  # noqa: E402

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    """A PostgreSQL server private to this test run (Debian `postgresql` binaries)."""
    bindir = postgres.find_bindir()
    require_service("postgresql", bindir is not None, "install Debian's postgresql package")
    assert bindir is not None
    server = postgres.start(bindir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The socket of a ClamAV daemon private to this run, its signatures written by the
    test setup (tests/support/clamav.py: the EICAR test string)."""
    from tests.support import clamav

    binary = clamav.find_clamd()
    require_service("clamd", binary is not None, "install Debian's clamav-daemon package")
    assert binary is not None
    server = clamav.start(binary, tmp_path_factory.mktemp("clamd"))
    yield server.socket
    server.stop()


@pytest.fixture(scope="session")
def _migrated_templates() -> dict[str, str]:
    """One migrated database per backend, copied for each test (migrating is the slow part)."""
    return {}


def _template(
    backend: str, request: pytest.FixtureRequest, cache: dict[str, str], tmp_root: Path
) -> str:
    from sde.core.db import make_engine
    from sde.core.schema import ensure_schema

    if backend in cache:
        return cache[backend]
    if backend == "sqlite":
        path = tmp_root / "template.db"
        eng = make_engine(f"sqlite:///{path}")
        ensure_schema(eng)
        eng.dispose()
        cache[backend] = str(path)
    else:
        server = request.getfixturevalue("postgres_server")
        admin = create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE sde_template"))
        eng = make_engine(server.url("sde_template"))
        ensure_schema(eng)
        eng.dispose()
        admin.dispose()
        cache[backend] = "sde_template"
    return cache[backend]


@pytest.fixture(params=BACKENDS)
def db_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    _migrated_templates: dict[str, str],
) -> Iterator[str]:
    """URL of a fresh, migrated state database; each test runs on SQLite and PostgreSQL."""
    backend = request.param
    template = _template(
        backend, request, _migrated_templates, tmp_path_factory.mktemp("db-template")
    )
    if backend == "sqlite":
        path = tmp_path / "sde.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {template}"))
    yield server.url(name)
    from sde.core import db as core_db

    for url in [u for u in core_db._engines if u.endswith(f"/{name}")]:
        core_db._engines.pop(url).dispose()
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    from sde.core.db import make_engine

    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sde_home(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An SDE_HOME for CLI tests, its database on the backend under test."""
    from sde.cli import context

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SDE_HOME", str(home))
    monkeypatch.setenv("SDE_DATABASE_URL", db_url)
    monkeypatch.setenv("SDE_ACTOR", "test:operator")
    context.reset()
    yield home
    context.reset()


# ---------------------------------------------------------------- data pipeline


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic SOURCE (sde.synth), generated once; copy it before changing it."""
    from sde.synth.write import synthesize

    out = tmp_path_factory.mktemp("synth") / "source"
    synthesize(150, out, seed=7)
    return out


@pytest.fixture
def data_settings(tmp_path: Path, db_url: str) -> object:
    """Settings with SDE_HOME under tmp_path and the state database under test."""
    from sde.core.config import load_settings

    home = tmp_path / "sde-home"
    home.mkdir()
    # No Docker engine behind these settings: tests that need one say so.
    return load_settings(
        env={"SDE_HOME": str(home), "SDE_DATABASE_URL": db_url, "SDE_HUB_DOCKER": "false"}
    )


# ---------------------------------------------------------------- docker

import subprocess  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORKSPACE_IMAGE = "sde-workspace:latest"


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """A running Docker engine (installed and started by infra/scripts/ensure-docker.sh)."""
    result = subprocess.run(
        ["bash", str(REPO / "infra/scripts/ensure-docker.sh")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    require_service("docker", result.returncode == 0, result.stderr.strip()[-500:])
    return "unix:///var/run/docker.sock"


def _build_images(what: str, script: str) -> None:
    """Run one of `make images`' build scripts (a no-op when the images are current)."""
    result = subprocess.run(
        ["bash", str(REPO / script)], capture_output=True, text=True, timeout=1800
    )
    require_service(
        what, result.returncode == 0, f"{script} failed: {result.stderr.strip()[-800:]}"
    )


@pytest.fixture(scope="session")
def workspace_image(docker_engine: str) -> str:
    """The researcher workspace image."""
    _build_images("workspace image", "workspace-images/build.sh")
    return WORKSPACE_IMAGE


@pytest.fixture(scope="session")
def platform_images(docker_engine: str) -> None:
    """sde-platform, sde-postgres, sde-keycloak and sde-proxy: the images of docker-compose.yml."""
    _build_images("platform images", "infra/images/build.sh")


# ---------------------------------------------------------------- keycloak


from tests.support import keycloak as kc  # noqa: E402


@pytest.fixture(scope="session")
def keycloak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kc.KeycloakInstance]:
    """A real Keycloak on loopback with the sde realm imported (tests/support/keycloak.py)."""
    try:
        instance = kc.start(tmp_path_factory.mktemp("keycloak") / "home")
    except kc.Unavailable as exc:
        require_service("keycloak", False, str(exc))
        raise
    yield instance
    instance.stop()
