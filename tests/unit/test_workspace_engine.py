"""One way to reach the Docker engine: `sde.workspaces.engine`.

A client made anywhere else (`docker.from_env()`, `docker.DockerClient(...)`) would
report an engine that is down its own way, and a listing of its own would trip over
containers removed meanwhile; every component's modules are parsed to find one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sde.core.errors import SdeError
from sde.workspaces.engine import docker_client

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ("platform", "accreditation", "airlock", "workspace-images")
ENGINE = Path("platform/sde/workspaces/engine.py")
CLIENT_MAKERS = {"from_env", "DockerClient", "APIClient"}
HELPERS = {"docker_client", "list_containers"}


def _offences(path: Path, tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CLIENT_MAKERS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "docker"
        ):
            found.append(f"{path}:{node.lineno}: docker.{node.func.attr}()")
        if (
            isinstance(node, ast.ImportFrom)
            and node.module != "sde.workspaces.engine"
            and HELPERS & {alias.name for alias in node.names}
        ):
            found.append(f"{path}:{node.lineno}: helper imported from {node.module}")
    return found


def test_docker_clients_made_only_in_the_engine_module():
    offences = []
    for component in COMPONENTS:
        for path in sorted((ROOT / component).glob("sde/**/*.py")):
            relative = path.relative_to(ROOT)
            if relative != ENGINE:
                offences += _offences(relative, ast.parse(path.read_text()))
    assert offences == []


def test_docker_clients_check_finds_a_client_made_elsewhere():
    # The check above, on code that breaks the rule both ways.
    source = (
        "import docker\n"
        "from sde.workspaces.network import docker_client\n"
        "client = docker.from_env()\n"
    )
    assert _offences(Path("x.py"), ast.parse(source)) == [
        "x.py:2: helper imported from sde.workspaces.network",
        "x.py:3: docker.from_env()",
    ]


def test_docker_client_unreachable_engine_is_one_line_error(monkeypatch, tmp_path):
    # A socket path that does not exist: nothing listens, nothing leaves the machine.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    with pytest.raises(SdeError, match=r"^the Docker engine is not reachable .*ensure-docker\.sh$"):
        docker_client()
