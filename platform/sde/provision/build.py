"""`sde projects provision`: materialise exactly what a project is granted.

For each grant (project x dataset version x columns) the granted columns of the
granted tables are copied from the dataset version into the project's own
Parquet files, with these changes: person ids become project pseudonyms
(HMAC(project key, dataset pseudonym)), every row key and reference to one is
re-keyed per project (sde.deid.rekey; a dataset with an id-like column its schema
marks neither as identifier nor as code is refused before anything is written), and
opted-out people are removed unless the project is exempt. Keys never leave this
process. A DuckDB file `project.duckdb` holds views over those files (relative paths,
one schema per dataset) with the dataset's table and column descriptions as comments.

The build's `manifest.json` is what workspaces see at `/data`: it names no operator
and shows opt-out counts below `data.small_count_threshold` as "<N". The exact
figures and the actor are in the `project.provision` audit event and the result.

Layout under `projects_dir/PROJECT/`: `builds/<id>/` holds complete builds; `data`
is a symlink to the current one, replaced atomically (rename of a new symlink),
so a reader sees the old data or the new, never a mix. The previous build, and any
build a running workspace has mounted, is kept; other ones are removed. One run
per project at a time (a lock file; a second run fails at once).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sde.audit import record, sign_head, write_operation
from sde.core.config import Settings
from sde.core.db import transaction
from sde.core.errors import Conflict, SdeError
from sde.data import DATABASE
from sde.deid import pseudonyms as ps
from sde.deid import rekey
from sde.ingest import manifest, optout
from sde.ingest.pipeline import LINKAGE, PARQUET
from sde.ingest.publish import build_dir, discard, freeze
from sde.ingest.source import one
from sde.registry import service
from sde.registry.policies import PROVISIONABLE_PROJECT_STATES

FORMAT = "sde-project-data/1"

ProgressHook = Callable[[str, int | None], Callable[[int], None]]


@dataclass
class GrantSpec:
    dataset: str
    version: int
    path: Path
    manifest_hash: str
    columns: list[str]
    schema: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)
    marks: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> column -> keyspace


@dataclass
class ProvisionResult:
    project: str
    data_dir: Path
    build: Path
    manifest_hash: str
    manifest: dict[str, Any]
    seconds: float
    tables: dict[str, int] = field(default_factory=dict)


def data_dir(settings: Settings, slug: str) -> Path:
    return settings.projects_dir / slug / "data"


def expand(columns: list[str], tables: dict[str, Any]) -> dict[str, list[str]]:
    """Grant entries ("table.column", "table.*") -> table -> columns in published order."""
    wanted: dict[str, set[str]] = {}
    for entry in columns:
        table, col = entry.split(".", 1)
        if table not in tables:
            raise SdeError(f"grant names table {table!r}, which the dataset version lacks")
        names = [c["name"] for c in tables[table]["columns"]]
        if col != "*" and col not in names:
            raise SdeError(f"grant names column {entry!r}, which the dataset version lacks")
        wanted.setdefault(table, set()).update(names if col == "*" else [col])
    return {
        t: [c["name"] for c in tables[t]["columns"] if c["name"] in cols]
        for t, cols in wanted.items()
    }


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _read_grants(session: Any, slug: str) -> tuple[list[GrantSpec], bool, str | None, Any]:
    project = service.get_project(session, slug)
    if project.status not in PROVISIONABLE_PROJECT_STATES:
        raise Conflict(
            f"project {slug} is {project.status}: only approved or active projects are provisioned"
        )
    specs = [
        GrantSpec(
            g.dataset_version.dataset_name,
            g.dataset_version.version,
            Path(g.dataset_version.path),
            g.dataset_version.manifest_hash,
            list(g.columns),
        )
        for g in sorted(
            project.grants,
            key=lambda g: (g.dataset_version.dataset_name, g.dataset_version.version),
        )
    ]
    exemption = optout.is_exempt(session, slug)
    entry = optout.current_list(session)
    return specs, exemption is not None, exemption.reason if exemption else None, entry


def provision(
    settings: Settings,
    engine: Engine,
    slug: str,
    actor: str,
    progress: ProgressHook | None = None,
) -> ProvisionResult:
    """Build PROJECT's data from its grants and swap it in; audited.

    One run per project at a time: a second run fails at once, before it writes
    anything, instead of racing the first one's swap and pruning.
    """
    with ExitStack() as held:
        return _provision(settings, engine, slug, actor, progress, held)


@contextmanager
def _exclusive(path: Path, slug: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict(
                f"project {slug} is being provisioned by another run; try again when it ends"
            ) from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _provision(
    settings: Settings,
    engine: Engine,
    slug: str,
    actor: str,
    progress: ProgressHook | None,
    held: ExitStack,
) -> ProvisionResult:
    started = time.perf_counter()
    hook = progress or (lambda _l, _t: lambda _n: None)
    with transaction(engine) as session:
        specs, exempt, exempt_reason, entry = _read_grants(session, slug)
        optout_version = entry.version if entry is not None and not exempt else None
        hashes = optout.read_hashes(entry) if entry is not None and not exempt else None
    if not specs:
        raise SdeError(
            f"project {slug} has no dataset grants: grant some with `sde datasets grant` first"
        )
    versions_per_dataset: dict[str, int] = {}
    for spec in specs:
        versions_per_dataset[spec.dataset] = versions_per_dataset.get(spec.dataset, 0) + 1
    for spec in specs:
        several = versions_per_dataset[spec.dataset] > 1
        spec.schema = f"{spec.dataset}_v{spec.version}" if several else spec.dataset
        # Before anything is written: the manifest is the one registered, and every
        # id-like column of every table is marked identifier or code.
        spec.manifest = manifest.read(spec.path, spec.manifest_hash)
        spec.marks = {
            table: rekey.marking(table, meta["columns"])
            for table, meta in spec.manifest["tables"].items()
        }
    threshold = settings.data.small_count_threshold

    root = settings.projects_dir / slug
    root.mkdir(parents=True, exist_ok=True)
    # Held until provision() returns: build, swap and pruning of this run only.
    held.enter_context(_exclusive(root / ".provision.lock", slug))
    secret = ps.load_or_create_secret(settings.pseudonym_key_path)
    pkey = ps.project_key(secret, slug)
    del secret
    builds = root / "builds"
    build = build_dir(builds, "build")
    try:
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        if hashes is not None:
            con.register("optout_list", hashes)
        datasets: list[dict[str, Any]] = []
        files: dict[str, dict[str, Any]] = {}
        for spec in specs:
            datasets.append(_materialise(con, spec, pkey, hashes is not None, build, hook))
        con.close()
        _write_database(build, specs, datasets)
        for path in sorted(p for p in build.rglob("*") if p.is_file()):
            files[str(path.relative_to(build))] = manifest.file_entry(path)
        doc = {
            "format": FORMAT,
            "project": slug,
            "created_at": datetime.now(UTC).isoformat(),
            "created_by": actor,
            "datasets": datasets,
            "files": files,
            "optout": {
                "exempt": exempt,
                "exempt_reason": exempt_reason,
                "list_version": optout_version,
                "removed_persons": {
                    f"{d['dataset']}@{d['version']}": d["removed_optout"] for d in datasets
                },
            },
            "pseudonyms": "HMAC-SHA256(project key, decimal dataset pseudonym), first 63 bits",
            "row_keys": "a keyed permutation of the 64-bit integers per table's key space "
            "(4-round Feistel, AES-256 round function; key HMAC(project key, "
            "'sde/rows/<dataset>/<table>'))",
        }
        manifest_hash = manifest.write(build, workspace_copy(doc, threshold))
        freeze(build)
        final = builds / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{manifest_hash[:12]}"
        os.rename(build, final)
    except BaseException:
        discard(build)
        raise
    previous = _previous(root)
    try:
        _swap(settings, engine, slug, actor, root, final, manifest_hash, doc)
    except BaseException:
        discard(final)
        raise
    _prune(settings, builds, keep={final.name, *previous})
    rows = {f"{d['schema']}.{t}": v["rows"] for d in datasets for t, v in d["tables"].items()}
    return ProvisionResult(
        slug,
        data_dir(settings, slug),
        final,
        manifest_hash,
        doc,
        time.perf_counter() - started,
        rows,
    )


def workspace_copy(doc: dict[str, Any], threshold: int) -> dict[str, Any]:
    """The manifest as researchers see it: no operator identity, no small counts.

    A count of opted-out people below the threshold could single them out (compared
    with a later build, or with what a researcher knows); the exact figure is for
    operators and auditors only.
    """
    seen = {k: v for k, v in doc.items() if k != "created_by"}
    removed = doc["optout"]["removed_persons"]
    seen["optout"] = {
        **doc["optout"],
        "removed_persons": {
            k: n if n >= threshold else f"<{threshold}" for k, n in removed.items()
        },
    }
    return seen


def _column_sql(column: str, keyspace: str | None, functions: dict[str, str]) -> str:
    """A granted column as the project gets it: as is, its project pseudonym, or re-keyed."""
    if keyspace is None:
        return f"t.{_q(column)}"
    if keyspace == rekey.PERSON:
        return f"k.pid AS {_q(column)}"
    return f"{functions[keyspace]}(t.{_q(column)}) AS {_q(column)}"


def _materialise(
    con: duckdb.DuckDBPyConnection,
    spec: GrantSpec,
    pkey: bytes,
    apply_optout: bool,
    build: Path,
    hook: ProgressHook,
) -> dict[str, Any]:
    manifest.verify_files(spec.path, spec.manifest)
    tables = spec.manifest["tables"]
    granted = expand(spec.columns, tables)
    linkage = spec.path / LINKAGE
    people = f"read_parquet({_lit(str(linkage))})"
    anti = " ANTI JOIN optout_list USING (nhs_hash)" if apply_optout else ""
    view = _q(f"pmap_{spec.schema}")
    # In-memory connection: the key is only in this statement's text.
    con.execute(
        f"CREATE TEMP TABLE {view} AS SELECT person_id AS id, "
        f"{ps.pseudonym_sql(pkey, 'person_id')} AS pid FROM {people}{anti}"
    )
    ps.check_unique(con, view, "pid")
    total = one(con.execute(f"SELECT count(*) FROM {people}"))
    kept = one(con.execute(f"SELECT count(*) FROM {view}"))
    removed = (int(total[0]) if total else 0) - (int(kept[0]) if kept else 0)
    out_dir = build / spec.schema
    out_dir.mkdir()
    # One SQL function per row key space this grant touches, so that a table's key and
    # every reference to it map alike (joins inside the project hold).
    functions: dict[str, str] = {}
    for table, cols in granted.items():
        for c in cols:
            keyspace = spec.marks[table].get(c)
            if keyspace not in (None, rekey.PERSON) and keyspace not in functions:
                functions[keyspace] = f"rekey_{len(functions)}"
                rekey.register(con, functions[keyspace], ps.row_key(pkey, spec.dataset, keyspace))
    done: dict[str, Any] = {}
    advance = hook(f"Provisioning {spec.dataset}@{spec.version}", len(granted))
    for table, cols in granted.items():
        meta = tables[table]
        marks = spec.marks[table]
        person_key = next((c for c, ks in marks.items() if ks == rekey.PERSON), None)
        src = _lit(str(spec.path / meta["file"]))
        select = ", ".join(_column_sql(c, marks.get(c), functions) for c in cols)
        if person_key:
            query = (
                f"SELECT {select} FROM read_parquet({src}) t "
                f"JOIN {view} k ON k.id = t.{_q(person_key)}"
            )
        else:
            query = f"SELECT {select} FROM read_parquet({src}) t"
        target = out_dir / f"{table}.parquet"
        row = one(con.execute(f"COPY ({query}) TO {_lit(str(target))} {PARQUET}"))
        done[table] = {
            "file": f"{spec.schema}/{table}.parquet",
            "rows": int(row[0]) if row else 0,
            "description": meta.get("description", ""),
            "columns": [c for c in meta["columns"] if c["name"] in cols],
        }
        advance(1)
    con.execute(f"DROP TABLE {view}")
    for name in functions.values():
        con.remove_function(name)
    return {
        "dataset": spec.dataset,
        "version": spec.version,
        "schema": spec.schema,
        "manifest_sha256": spec.manifest_hash,
        "granted": spec.columns,
        "tables": done,
        "removed_optout": removed,
    }


def _write_database(build: Path, specs: list[GrantSpec], datasets: list[dict[str, Any]]) -> None:
    """Views over the project's files (paths relative to the data directory), with comments."""
    db = duckdb.connect(str(build / DATABASE))
    try:
        # DuckDB checks the files when a view is created: resolve them from the build.
        db.execute("SET file_search_path = ?", [str(build)])
        for spec, info in zip(specs, datasets, strict=True):
            schema = _q(spec.schema)
            db.execute(f"CREATE SCHEMA {schema}")
            for table, t in info["tables"].items():
                name = f"{schema}.{_q(table)}"
                db.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_lit(t['file'])})")
                comment = f"{t['description']} ({spec.dataset}@{spec.version})"
                db.execute(f"COMMENT ON VIEW {name} IS {_lit(comment)}")
                for c in t["columns"]:
                    if c.get("description"):
                        db.execute(
                            f"COMMENT ON COLUMN {name}.{_q(c['name'])} IS {_lit(c['description'])}"
                        )
        db.execute("CHECKPOINT")
    finally:
        db.close()
    # Views are bound at query time; SDE_DATA_DIR resolves the relative paths.
    wal = build / f"{DATABASE}.wal"
    if wal.exists():
        wal.unlink()


def _previous(root: Path) -> set[str]:
    link = root / "data"
    return {os.readlink(link).rsplit("/", 1)[-1]} if link.is_symlink() else set()


def _swap(
    settings: Settings,
    engine: Engine,
    slug: str,
    actor: str,
    root: Path,
    final: Path,
    manifest_hash: str,
    doc: dict[str, Any],
) -> None:
    """Point `data` at the new build inside the audit transaction (undone if it fails)."""
    link = root / "data"
    old = os.readlink(link) if link.is_symlink() else None
    if link.exists() and not link.is_symlink():
        raise Conflict(f"{link} exists and is not a provisioning symlink: move it away first")
    tmp = root / f".data-{final.name}"
    relative = os.path.relpath(final, root)
    swapped = False
    try:
        with transaction(engine) as session:
            record_provision(session, actor, slug, manifest_hash, final.name, doc)
            if tmp.is_symlink():
                tmp.unlink()
            os.symlink(relative, tmp)
            os.replace(tmp, link)
            swapped = True
    except BaseException:
        if tmp.is_symlink():
            tmp.unlink()
        if swapped:
            if old is None:
                link.unlink()
            else:
                os.symlink(old, tmp)
                os.replace(tmp, link)
        raise
    # Signed only now: a failing checkpoint must not undo a swap that committed.
    sign_head(engine, settings)


@write_operation("project.provision")
def record_provision(
    session: Session,
    actor: str,
    slug: str,
    manifest_hash: str,
    build: str,
    doc: dict[str, Any],
) -> None:
    """The build a project's `data` now points at, with the exact figures of `doc`
    (its full manifest: the workspace's copy rounds small counts)."""
    record(
        session,
        actor=actor,
        target=f"project:{slug}",
        project=slug,
        details={
            "manifest_sha256": manifest_hash,
            "build": build,
            "datasets": [
                {
                    "dataset": f"{d['dataset']}@{d['version']}",
                    "manifest_sha256": d["manifest_sha256"],
                    "rows": {t: v["rows"] for t, v in d["tables"].items()},
                }
                for d in doc["datasets"]
            ],
            "optout": doc["optout"],
        },
    )


def _prune(settings: Settings, builds: Path, keep: set[str]) -> None:
    in_use = builds_in_use(settings, builds)
    if in_use is None:
        return  # cannot tell which builds running workspaces have: keep them all
    for entry in builds.iterdir():
        if entry.name not in keep | in_use and not entry.name.startswith("."):
            discard(entry)


def builds_in_use(settings: Settings, builds: Path) -> set[str] | None:
    """Builds mounted by running workspaces (cold or warm); None when Docker cannot say.

    A workspace mounts the build its project's `data` link named when it started
    and keeps it for its life, however often the project is re-provisioned.
    """
    from sde.workspaces import pool

    found: dict[tuple[int, int], str] = {}
    for entry in builds.iterdir():
        st = entry.stat()
        found[st.st_dev, st.st_ino] = entry.name
    used: set[str] = set()
    # Warm workspaces: the build is bound onto their slot's data directory on the host.
    slots = pool.slots_root(settings)
    for slot in slots.iterdir() if slots.is_dir() else []:
        with contextlib.suppress(OSError):
            st = (slot / "data").stat()
            if (st.st_dev, st.st_ino) in found:
                used.add(found[st.st_dev, st.st_ino])
    if not settings.hub.docker:
        return used
    # Cold workspaces: Docker bind mounts of a build directory.
    try:
        from sde.workspaces.engine import docker_client, list_containers

        containers = list_containers(docker_client())
    except Exception:
        return None
    prefix = str(builds.resolve()) + os.sep
    for container in containers:
        for mount in container.attrs.get("Mounts") or []:
            source = str(mount.get("Source", ""))
            if source.startswith(prefix):
                used.add(source[len(prefix) :].split(os.sep, 1)[0])
    return used
