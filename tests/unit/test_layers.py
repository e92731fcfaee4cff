"""The `sde` namespace imports downwards only, and no modules import each other.

Every module of every component folder (`*/sde/**.py`) is parsed with `ast`, the
imports inside functions included: they run too, and one inside a function is how
a cycle hides. Each module belongs to a layer (`LAYERS`, drawn in
docs/architecture.md); a module may import its own portion and the layers below
its own, never a layer above nor a peer beside it. Imports under `TYPE_CHECKING`
never run: they count for the direction, not for cycles.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"

# Bottom first. Portions in one layer are peers and do not import each other.
# "cli" is `sde.cli` and every portion's `cli` module: the commands, over everything.
LAYERS: list[tuple[str, ...]] = [
    ("data", "outputs"),
    ("core", "warmstart"),
    ("audit",),
    ("registry",),
    ("deid", "synth"),
    ("ingest",),
    ("workspaces",),
    ("provision",),
    ("airlock",),
    ("keycloak",),
    ("hub",),
    ("demo",),
    ("cli",),
]
# What each layer is, for the drawing in docs/architecture.md.
ROLES = {
    "data": "the researchers' library; in the workspace image too",
    "outputs": "the researchers' airlock client (workspace image)",
    "core": "settings, database, schema collection, errors, files",
    "warmstart": "the workspace image's server preloader",
    "audit": "the audit log, write operations, the commit guard",
    "registry": "people, projects, datasets, grants, access_decision",
    "deid": "pseudonyms, generalisation, free-text scrubbing",
    "synth": "synthetic source data",
    "ingest": "validate, de-identify, publish dataset versions; opt-outs",
    "workspaces": "containers, hardening, network, firewall, warm pool, work volumes",
    "provision": "each project's read-only data",
    "airlock": "requests, review, snapshots, checks, release records",
    "keycloak": "the identity provider: test server, realm as code, registry sync",
    "hub": "JupyterHub: configuration, sign-in, spawner",
    "demo": "the demonstration platform behind `sde demo`",
    "cli": "`sde.cli` and each portion's `cli` module (the `sde.cli` entry points)",
}
# They run inside the workspace image, where no other portion is installed.
IMAGE = {"data", "outputs", "warmstart"}


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    typing_only: bool


def modules(root: Path = ROOT) -> dict[str, Path]:
    """sde module name -> file, over every component folder."""
    found: dict[str, Path] = {}
    for path in sorted(root.glob("*/sde/**/*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts[1:])
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _typing_only(tree: ast.Module) -> set[int]:
    """Ids of the import nodes under `if TYPE_CHECKING:`."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    return ids


def imports(found: dict[str, Path]) -> list[Import]:
    """Every import of an sde module, resolved to the most specific module that exists."""
    out: list[Import] = []
    for name, path in found.items():
        tree = ast.parse(path.read_text(), str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        typing = _typing_only(tree)
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in found else base
                    for alias in node.names
                ]
            for target in targets:
                while target and target not in found:
                    target = target.rpartition(".")[0]
                if target.startswith("sde.") and target != name:
                    out.append(Import(name, target, node.lineno, id(node) in typing))
    return out


def unit(module: str) -> str:
    """The portion a module counts as: its own, or "cli" for the commands."""
    parts = module.split(".")
    return "cli" if "cli" in parts[1:3] else parts[1]


def layer(module: str) -> int:
    portion = unit(module)
    for rank, peers in enumerate(LAYERS):
        if portion in peers:
            return rank
    raise AssertionError(f"{module}: portion {portion!r} has no layer in LAYERS")


def upward(edges: list[Import]) -> list[str]:
    """Each import of a layer above the importer's, or of a peer beside it."""
    bad = []
    for edge in edges:
        if unit(edge.source) == unit(edge.target):
            continue
        if layer(edge.target) >= layer(edge.source):
            where = "a peer" if layer(edge.target) == layer(edge.source) else "above"
            bad.append(
                f"{edge.source}:{edge.line} ({unit(edge.source)}) imports {edge.target} "
                f"({unit(edge.target)}, {where})"
            )
    return bad


def cycles(edges: list[Import]) -> list[list[str]]:
    """Groups of modules that import each other (strongly connected), at run time."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if not edge.typing_only:
            graph.setdefault(edge.source, set()).add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layers_markdown() -> str:
    """The drawing of LAYERS in docs/architecture.md, top first (imports point down)."""
    rows = ["| layer | portion | what it is |", "|---|---|---|"]
    for rank in range(len(LAYERS) - 1, -1, -1):
        rows += [f"| {rank} | `{p}` | {ROLES[p]} |" for p in LAYERS[rank]]
    return "\n".join(rows) + "\n"


EDGES = imports(modules())


def test_layers_every_portion_placed():
    portions = {unit(name) for name in modules()}
    placed = {p for peers in LAYERS for p in peers}
    assert portions - placed == set(), "give each new portion a layer in LAYERS"
    assert placed - portions == set(), "a layer names a portion that no longer exists"
    assert set(ROLES) == placed


def test_layers_imports_point_down():
    assert upward(EDGES) == []


def test_layers_no_import_cycles():
    assert cycles(EDGES) == []


def test_layers_image_imports_only_the_image():
    outside = [e for e in EDGES if unit(e.source) in IMAGE and unit(e.target) not in IMAGE]
    assert outside == []


def test_layers_checks_imports_inside_functions():
    # The checker sees what it must: the hub configuration imports the spawner
    # inside configure(), and the registry's migrations import the audit schema.
    seen = {(e.source, e.target) for e in EDGES}
    assert ("sde.hub.config", "sde.hub.spawner") in seen
    assert ("sde.registry.migrations", "sde.audit.schema") in seen


def test_layers_architecture_doc_current():
    assert layers_markdown() in DOC.read_text(), (
        "docs/architecture.md: paste tests/unit/test_layers.py's layers_markdown()"
    )
