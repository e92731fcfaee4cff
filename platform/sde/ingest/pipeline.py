"""`sde ingest`: validate a source, de-identify it, publish a new immutable dataset version.

DuckDB does the heavy lifting (typed CSV parsing, joins, Parquet writing); Python
computes keyed hashes over the distinct person ids only, which DuckDB then joins
in. Nothing is published unless every check passes: output is built in a hidden
directory and renamed into place in the registry transaction (sde.ingest.publish).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine

from sde.core.config import Settings
from sde.core.db import transaction
from sde.core.errors import SdeError
from sde.core.files import sha256_file
from sde.deid import pseudonyms as ps
from sde.ingest import kanon, manifest, optout, plan, publish, validation
from sde.ingest.source import (
    Problem,
    SourceFile,
    SourceInvalid,
    check_header,
    check_parquet_schema,
    locate,
    one,
    stage,
)
from sde.registry import validate
from sde.registry.enums import Classification
from sde.synth.schema import POSTCODE_COLUMN, TABLES

FORMAT = "sde-dataset-manifest/1"
PARQUET = "(FORMAT parquet, COMPRESSION zstd)"
FREE_TEXT_BATCH = 2_000
LINKAGE = "_linkage/optout.parquet"

ProgressHook = Callable[[str, int | None], Callable[[int], None]]


@dataclass
class IngestOptions:
    suppress_to_k: int | None = None
    date_shift_days: int = 0
    reference_year: int | None = None  # for age bands; default: the current year
    free_text: str = "scrub"  # or "drop"
    description: str = ""
    classification: str = Classification.PSEUDONYMISED
    memory_limit: str = "4GB"
    threads: int | None = None


@dataclass
class IngestResult:
    dataset: str
    version: int
    path: Path
    manifest_hash: str
    manifest: dict[str, Any]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def _no_progress(_label: str, _total: int | None) -> Callable[[int], None]:
    return lambda _n: None


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - started


def _check_options(options: IngestOptions) -> None:
    if options.free_text not in ("scrub", "drop"):
        raise SdeError(f"free text must be 'scrub' or 'drop', not {options.free_text!r}")
    if options.date_shift_days < 0 or options.date_shift_days > 3650:
        raise SdeError("--date-shift-days must be between 0 and 3650")
    if options.suppress_to_k is not None and options.suppress_to_k < 2:
        raise SdeError(f"--suppress-to-k must be 2 or more, not {options.suppress_to_k}")


def ingest(
    settings: Settings,
    engine: Engine,
    source: Path,
    dataset: str,
    actor: str,
    options: IngestOptions | None = None,
    progress: ProgressHook | None = None,
) -> IngestResult:
    """Validate `source` and publish it as the next version of `dataset`."""
    options = options or IngestOptions()
    _check_options(options)
    dataset = validate.dataset_name(dataset)
    progress = progress or _no_progress
    started = time.perf_counter()
    timings: dict[str, float] = {}

    files, problems = locate(Path(source))
    if problems:
        raise SourceInvalid(problems)
    secret = ps.load_or_create_secret(settings.pseudonym_key_path)
    version = publish.next_version(engine, dataset)
    parent = settings.datasets_dir / dataset
    work = publish.build_dir(parent, "work")
    build = publish.build_dir(parent, "build")
    try:
        con = duckdb.connect(str(work / "stage.duckdb"))
        con.execute(f"SET memory_limit = '{options.memory_limit}'")
        con.execute("SET enable_progress_bar = false")
        con.execute(f"SET temp_directory = '{work / 'spill'}'")
        if options.threads:
            con.execute(f"SET threads = {int(options.threads)}")
        with _timed(timings, "validate"):
            source_entry = _stage_and_validate(con, files, progress)
        # Row order mattered for naming rows in problems; published files need none.
        con.execute("SET preserve_insertion_order = false")
        with transaction(engine) as session:
            entry = optout.current_list(session)
            optout_version = entry.version if entry else None
            optout_table = optout.read_hashes(entry) if entry else None
        ctx = _Context(settings, con, build, secret, dataset, options, progress, timings)
        built = ctx.run(optout_version, optout_table)
        con.close()
        now = datetime.now(UTC)
        doc = {
            "format": FORMAT,
            "dataset": dataset,
            "version": version,
            "created_at": now.isoformat(),
            "created_by": actor,
            "source": source_entry,
            **built,
        }
        manifest_hash = manifest.write(build, doc)
        details = {
            "rows": {t: v["rows"] for t, v in doc["tables"].items()},
            "optout_list_version": optout_version,
            "optout_removed": doc["persons"]["removed_optout"],
            "min_k": doc["k_anonymity"]["after"]["min_k"],
        }
        tables = {t: [c["name"] for c in v["columns"]] for t, v in doc["tables"].items()}
        with _timed(timings, "publish"):
            path = publish.publish_version(
                settings,
                engine,
                actor,
                build=build,
                dataset=dataset,
                version=version,
                manifest_hash=manifest_hash,
                tables=tables,
                details=details,
                description=options.description,
                classification=options.classification,
            )
    except BaseException:
        publish.discard(build)
        raise
    finally:
        publish.discard(work)
    return IngestResult(
        dataset, version, path, manifest_hash, doc, time.perf_counter() - started, timings
    )


def _stage_and_validate(
    con: duckdb.DuckDBPyConnection, files: dict[str, SourceFile], progress: ProgressHook
) -> dict[str, Any]:
    problems: list[Problem] = []
    for sf in files.values():
        problems += check_header(sf) if sf.format == "csv" else check_parquet_schema(con, sf)
    if problems:
        raise SourceInvalid(problems)
    advance = progress("Reading and checking source", len(files))
    rejected = set()
    for name, sf in files.items():
        found = stage(con, sf)
        if found:
            rejected.add(name)
        problems += found
        advance(1)
    clean = {n: sf for n, sf in files.items() if n not in rejected}
    if problems:
        # Row-level checks on tables that did parse still help the person fixing the file.
        problems += validation.check_all(con, clean) if len(clean) == len(files) else []
        raise SourceInvalid(problems)
    problems = validation.check_all(con, files)
    if problems:
        raise SourceInvalid(problems)
    entries = {}
    for name, sf in files.items():
        rows = one(con.execute(f"SELECT count(*) FROM src_{name}"))
        entries[sf.path.name] = {
            "table": name,
            "format": sf.format,
            "sha256": sha256_file(sf.path),
            "bytes": sf.bytes,
            "rows": int(rows[0]) if rows else 0,
        }
    return {"files": entries}


class _Context:
    """One ingest run after validation: person mapping, tables, free text, figures."""

    def __init__(
        self,
        settings: Settings,
        con: duckdb.DuckDBPyConnection,
        build: Path,
        secret: bytes,
        dataset: str,
        options: IngestOptions,
        progress: ProgressHook,
        timings: dict[str, float],
    ) -> None:
        self.settings = settings
        self.con = con
        self.build = build
        self.secret = secret
        self.dataset = dataset
        self.options = options
        self.progress = progress
        self.timings = timings
        self.reference_year = options.reference_year or datetime.now(UTC).year
        self.shift = options.date_shift_days > 0
        self.plan = plan.build(self.reference_year, self.shift, options.free_text)
        self.transformations: list[dict[str, Any]] = []
        self.files: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------ persons

    def _persons(self, optout_table: pa.Table | None) -> tuple[int, int]:
        """Build `person_out` (published person columns plus private helpers)."""
        con = self.con
        # Keyed hashes run inside DuckDB (see sde.deid.pseudonyms): TEMP tables live
        # in memory, so neither hashes nor keys reach the work database file.
        nhs_hash = ps.hmac_hex_sql(ps.optout_key(self.secret), "nhs_number")
        con.execute(
            f"CREATE TEMP TABLE nhs AS SELECT person_id AS id, {nhs_hash} AS nhs_hash "
            "FROM src_identifiers"
        )
        if optout_table is not None:
            con.register("optout_list", optout_table)
            where = (
                "WHERE person_id NOT IN (SELECT id FROM nhs SEMI JOIN optout_list USING (nhs_hash))"
            )
        else:
            where = ""
        source_persons = one(con.execute("SELECT count(*) FROM src_person"))
        pseudo = ps.pseudonym_sql(ps.dataset_key(self.secret, self.dataset), "person_id")
        shift = (
            ", "
            + ps.day_shift_sql(
                ps.dateshift_key(self.secret, self.dataset),
                "person_id",
                self.options.date_shift_days,
            )
            + " AS day_shift"
            if self.shift
            else ""
        )
        con.execute(
            f"CREATE TEMP TABLE pmap AS SELECT person_id AS id, {pseudo} AS person_id{shift} "
            f"FROM src_person {where}"
        )
        ps.check_unique(con, "pmap", "person_id")
        kept = one(con.execute("SELECT count(*) FROM pmap"))
        cols = ", ".join(f'{c.sql} AS "{c.name}"' for c in self.plan["person"].columns)
        extra = ", k.day_shift AS _day_shift" if self.shift else ""
        con.execute(
            f"""CREATE TEMP TABLE person_out AS
            SELECT k.id AS _src, nhs.nhs_hash AS _nhs_hash{extra}, {cols}
            FROM src_person t JOIN pmap k ON k.id = t.person_id
            LEFT JOIN src_{POSTCODE_COLUMN[0]} i ON i.person_id = t.person_id
            LEFT JOIN nhs ON nhs.id = t.person_id"""
        )
        con.execute("DROP TABLE pmap")
        total = int(source_persons[0]) if source_persons else 0
        return total, total - (int(kept[0]) if kept else 0)

    # ------------------------------------------------------------ run

    def run(self, optout_version: int | None, optout_table: pa.Table | None) -> dict[str, Any]:
        con, timings = self.con, self.timings
        advance = self.progress("De-identifying persons", None)
        with _timed(timings, "persons"):
            source_persons, removed = self._persons(optout_table)
        advance(1)
        self.transformations.append(
            {
                "step": "optout",
                "list_version": optout_version,
                "removed_persons": removed,
                "match": "HMAC-SHA256(opt-out key, NHS number)",
            }
        )
        qis = list(self.settings.data.quasi_identifiers)
        target = self.settings.data.k_anonymity_target
        with _timed(timings, "k_anonymity"):
            before = kanon.report(con, "person_out", qis, target)
            suppression = None
            if self.options.suppress_to_k:
                suppression = kanon.suppress(con, "person_out", qis, self.options.suppress_to_k)
                self.transformations.append({"step": "k_suppression", **suppression.as_dict()})
            after = kanon.report(con, "person_out", qis, target) if suppression else before
        shift = ", _day_shift AS day_shift" if self.shift else ""
        con.execute(f"CREATE TEMP TABLE k AS SELECT _src AS id, person_id{shift} FROM person_out")
        published = one(con.execute("SELECT count(*) FROM k"))

        self.transformations.append(
            {
                "step": "pseudonymise",
                "column": "person_id",
                "method": "HMAC-SHA256(dataset key, decimal person_id), first 63 bits",
                "key_fingerprint": ps.fingerprint(ps.dataset_key(self.secret, self.dataset)),
                "stable_across_versions": True,
            }
        )
        if self.shift:
            self.transformations.append(
                {
                    "step": "date_shift",
                    "max_days": self.options.date_shift_days,
                    "method": "one offset per person in [-max, max] without 0, from "
                    "HMAC-SHA256(date-shift key, person_id); intervals within a person kept",
                }
            )

        tables: dict[str, dict[str, Any]] = {}
        scrub_counts: dict[str, int] = {}
        scrub_meta: dict[str, Any] = {}
        for name, out in self.plan.items():
            for col, why in out.dropped.items():
                self.transformations.append(
                    {"step": "drop", "table": name, "column": col, "reason": why}
                )
            for c in out.columns:
                if c.treatment == "generalised":
                    self.transformations.append(
                        {"step": "generalise", "table": name, "column": c.name, "rule": c.sql}
                    )
            with _timed(timings, f"table:{name}"):
                if out.free_text:
                    rows, counts, meta = self._write_free_text(out)
                    for k_, v in counts.items():
                        scrub_counts[k_] = scrub_counts.get(k_, 0) + v
                    scrub_meta = meta
                else:
                    rows = self._write_table(out)
            tables[name] = {
                "file": f"{name}.parquet",
                "rows": rows,
                "description": out.description,
                "columns": [c.described() for c in out.columns],
            }
        for name in TABLES:
            if name not in self.plan:
                self.transformations.append(
                    {"step": "drop_table", "table": name, "reason": "direct identifiers only"}
                )
        self._write_linkage()
        with _timed(timings, "hash_outputs"):
            files = {}
            for path in sorted(self.build.rglob("*.parquet")):
                rel = str(path.relative_to(self.build))
                files[rel] = manifest.file_entry(path)
        return {
            "reference_year": self.reference_year,
            "tables": tables,
            "files": files,
            "private_files": {
                LINKAGE: "dataset pseudonym -> keyed NHS-number hash, for opt-outs "
                "at provisioning; never provisioned"
            },
            "transformations": self.transformations,
            "persons": {
                "source": source_persons,
                "removed_optout": removed,
                "removed_k_suppression": suppression.removed_records if suppression else 0,
                "published": int(published[0]) if published else 0,
            },
            "optout": {"list_version": optout_version, "removed_persons": removed},
            "k_anonymity": {
                "before": before.as_dict(),
                "after": after.as_dict(),
                "suppression": suppression.as_dict() if suppression else None,
            },
            "free_text": {"mode": self.options.free_text, "entities": scrub_counts, **scrub_meta},
        }

    # ------------------------------------------------------------ writers

    def _select(self, out: plan.OutTable) -> str:
        cols = ", ".join(f'{c.sql} AS "{c.name}"' for c in out.columns)
        if out.name == "person":
            return "SELECT " + ", ".join(f'"{c.name}"' for c in out.columns) + " FROM person_out"
        if out.person_key:
            return f'SELECT {cols} FROM src_{out.name} t JOIN k ON k.id = t."{out.person_key}"'
        return f"SELECT {cols} FROM src_{out.name} t"

    def _write_table(self, out: plan.OutTable) -> int:
        advance = self.progress(f"Writing {out.name}", None)
        target = str(self.build / f"{out.name}.parquet")
        row = one(self.con.execute(f"COPY ({self._select(out)}) TO '{target}' {PARQUET}"))
        advance(1)
        return int(row[0]) if row else 0

    def _deny_terms(self) -> list[tuple[str, str]]:
        """Every identifier of the source in its usual spellings: the scrubber's deny list."""
        from sde.deid.scrub import identifier_terms

        terms: list[tuple[str, str]] = []
        reader = self.con.sql("SELECT * FROM src_identifiers").to_arrow_reader(50_000)
        for batch in reader:
            for row in batch.to_pylist():
                terms += identifier_terms(row)
        for (mrn,) in self.con.execute("SELECT person_source_value FROM src_person").fetchall():
            if mrn:
                terms.append((mrn, "MRN"))
        return terms

    def _write_free_text(self, out: plan.OutTable) -> tuple[int, dict[str, int], dict[str, Any]]:
        from sde.deid.scrub import Scrubber

        with _timed(self.timings, "deny_list"):
            terms = self._deny_terms()
            scrubber = Scrubber(terms)
        total = one(
            self.con.execute(
                f'SELECT count(*) FROM src_{out.name} t JOIN k ON k.id = t."{out.person_key}"'
            )
        )
        advance = self.progress(f"Scrubbing {out.name}", int(total[0]) if total else None)
        reader = self.con.sql(self._select(out)).to_arrow_reader(FREE_TEXT_BATCH)
        schema = reader.schema
        counts: dict[str, int] = {}
        rows = 0
        with pq.ParquetWriter(
            self.build / f"{out.name}.parquet", schema, compression="zstd"
        ) as writer:
            for batch in reader:
                arrays = list(batch.columns)
                for col in out.free_text:
                    i = schema.get_field_index(col)
                    values = arrays[i].to_pylist()
                    cleaned, found = scrubber.scrub_many([v or "" for v in values])
                    arrays[i] = pa.array(
                        [None if v is None else c for v, c in zip(values, cleaned, strict=True)],
                        pa.string(),
                    )
                    for entity, n in found.items():
                        counts[entity] = counts.get(entity, 0) + int(n)
                writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
                rows += batch.num_rows
                advance(batch.num_rows)
        self.transformations.append(
            {
                "step": "scrub_free_text",
                "table": out.name,
                "columns": out.free_text,
                "method": "presidio UK recognizers plus a deny list of the source's own "
                "identifiers; each finding replaced by [TYPE]",
                "deny_terms": len(terms),
            }
        )
        return rows, counts, {"deny_terms": len(terms)}

    def _write_linkage(self) -> None:
        folder = self.build / "_linkage"
        folder.mkdir()
        self.con.execute(
            f"COPY (SELECT person_id, _nhs_hash AS nhs_hash FROM person_out) "
            f"TO '{folder / 'optout.parquet'}' {PARQUET}"
        )
