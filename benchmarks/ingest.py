"""Structured ingest and project queries, each beside its floor, in one run.

    .venv/bin/python benchmarks/ingest.py [--quick] [--persons N] [--source DIR]

1. Ingest: `sde ingest` of a Parquet source (validation, opt-out check, pseudonyms,
   generalisation, k-anonymity, Parquet zstd output, manifest with hashes, registry
   publication) with free text dropped -- the structured part; free-text scrubbing
   is benchmarked in benchmarks/scrub.py. Floor: a plain DuckDB Parquet-to-Parquet
   copy (zstd) of the same source tables (the note text column excluded, since the
   structured ingest drops it). Target: within 2x.
2. Query: a typical aggregate (a measurement's mean by age band and sex, a join of
   measurement and person) through a provisioned project's views (`sde.data.connect`)
   vs the same query on the same Parquet files named directly. Target: within 1.1x.

Setup (untimed): `sde synth` into a CSV source, converted once to Parquet with the
contract's types. Default 1,000,000 persons; --quick uses 20,000 (under a minute).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sde.core.config import load_settings  # noqa: E402
from sde.core.db import make_engine, transaction  # noqa: E402
from sde.core.schema import ensure_schema  # noqa: E402
from sde.data import connect  # noqa: E402
from sde.ingest.pipeline import IngestOptions, ingest  # noqa: E402
from sde.ingest.source import DUCKDB_TYPES  # noqa: E402
from sde.provision.build import provision  # noqa: E402
from sde.registry import service  # noqa: E402
from sde.synth.schema import TABLES, Role  # noqa: E402
from sde.synth.write import synthesize  # noqa: E402

INGEST_TARGET = 2.0
QUERY_TARGET = 1.1
ACTOR = "benchmark"


def make_source(persons: int, work: Path) -> Path:
    csv_dir = work / "csv"
    t = time.perf_counter()
    synthesize(persons, csv_dir, seed=11)
    out = work / "parquet"
    out.mkdir()
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    for table in TABLES.values():
        types = ", ".join(f"'{c.name}': '{DUCKDB_TYPES[c.type]}'" for c in table.columns)
        con.execute(
            f"COPY (SELECT * FROM read_csv('{csv_dir / table.file_name}', header=true, "
            f"auto_detect=false, columns={{{types}}})) TO '{out / (table.name + '.parquet')}' "
            "(FORMAT parquet, COMPRESSION zstd)"
        )
    con.close()
    shutil.rmtree(csv_dir)
    print(f"setup: {persons:,} persons synthesised and converted in {time.perf_counter() - t:.1f}s")
    return out


def floor_copy(source: Path, out: Path) -> float:
    out.mkdir()
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    t = time.perf_counter()
    for table in TABLES.values():
        cols = ", ".join(f'"{c.name}"' for c in table.columns if c.role is not Role.FREE_TEXT)
        con.execute(
            f"COPY (SELECT {cols} FROM read_parquet('{source / (table.name + '.parquet')}')) "
            f"TO '{out / (table.name + '.parquet')}' (FORMAT parquet, COMPRESSION zstd)"
        )
    elapsed = time.perf_counter() - t
    con.close()
    return elapsed


QUERY = """
SELECT p.age_band, p.sex, count(*) AS n, avg(m.value_as_number) AS mean_value
FROM {measurement} m JOIN {person} p USING (person_id)
WHERE m.measurement_concept_id = {concept}
GROUP BY ALL ORDER BY ALL
"""


def time_query(run: object, sql: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(sql).fetchall()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 persons (under a minute).")
    parser.add_argument("--persons", type=int, default=None, help="Persons (default 1,000,000).")
    parser.add_argument("--repeats", type=int, default=None, help="Query repeats (median).")
    parser.add_argument("--source", type=Path, default=None, help="Reuse a Parquet source.")
    args = parser.parse_args()
    persons = args.persons or (20_000 if args.quick else 1_000_000)

    work = Path(tempfile.mkdtemp(prefix="sde-bench-ingest-"))
    try:
        source = args.source or make_source(persons, work)
        home = work / "home"
        home.mkdir()
        settings = load_settings(env={"SDE_HOME": str(home)})
        engine = make_engine(settings.database_url)
        ensure_schema(engine)

        floor_s = floor_copy(source, work / "floor")
        result = ingest(
            settings,
            engine,
            source,
            "bench",
            ACTOR,
            IngestOptions(free_text="drop", reference_year=2025),
        )
        ours_s = result.seconds
        # The floor a second time, after ours, so that neither side alone has a warm cache.
        shutil.rmtree(work / "floor")
        floor_s = min(floor_s, floor_copy(source, work / "floor"))
        ratio = ours_s / floor_s
        rows = sum(t["rows"] for t in result.manifest["tables"].values())
        print(
            f"ingest   ours {ours_s:7.2f}s  floor {floor_s:7.2f}s  ratio {ratio:.2f}x "
            f"(target {INGEST_TARGET}x)  {rows:,} rows published"
        )
        steps = ", ".join(f"{k} {v:.2f}s" for k, v in sorted(result.timings.items()))
        print(f"         steps: {steps}")

        today = date.today()
        with transaction(engine) as s:
            service.create_project(
                s,
                ACTOR,
                slug="bench",
                title="Benchmark",
                start_date=today - timedelta(days=1),
                end_date=today + timedelta(days=30),
            )
            service.approve_project(
                s, ACTOR, "bench", approval_ref="B", signed_off_by="B", signed_off_on=today
            )
            service.activate_project(s, ACTOR, "bench")
            service.grant_access(
                s,
                ACTOR,
                slug="bench",
                dataset="bench",
                version=None,
                columns=["person.*", "measurement.*"],
            )
        t = time.perf_counter()
        prov = provision(settings, engine, "bench", ACTOR)
        provision_s = time.perf_counter() - t
        data = prov.data_dir.resolve()
        con = connect(data)
        concept = con.execute(
            "SELECT measurement_concept_id FROM measurement GROUP BY 1 ORDER BY count(*) DESC "
            "LIMIT 1"
        ).fetchall()[0][0]
        views_sql = QUERY.format(measurement="measurement", person="person", concept=concept)
        raw = duckdb.connect()
        raw.execute("SET enable_progress_bar = false")
        raw_sql = QUERY.format(
            measurement=f"read_parquet('{data / 'bench' / 'measurement.parquet'}')",
            person=f"read_parquet('{data / 'bench' / 'person.parquet'}')",
            concept=concept,
        )
        assert con.execute(views_sql).fetchall() == raw.execute(raw_sql).fetchall()
        # Interleave the two so that drift on a shared machine hits both alike.
        views_t, raw_t = [], []
        # Small queries need more runs for a stable median.
        repeats = args.repeats or (31 if persons < 200_000 else 7)
        for _ in range(repeats):
            views_t.append(time_query(con.sql, views_sql, 1))
            raw_t.append(time_query(raw.sql, raw_sql, 1))
        views_s, raw_s = statistics.median(views_t), statistics.median(raw_t)
        qratio = views_s / raw_s
        print(
            f"query    views {views_s * 1000:7.1f}ms  raw parquet {raw_s * 1000:7.1f}ms  "
            f"ratio {qratio:.2f}x (target {QUERY_TARGET}x)"
        )
        print(f"provision of person + measurement: {provision_s:.2f}s")
        con.close()
        raw.close()
        print(
            json.dumps(
                {
                    "persons": persons,
                    "rows": rows,
                    "ours_s": round(ours_s, 3),
                    "floor_s": round(floor_s, 3),
                    "ratio": round(ratio, 3),
                    "target": INGEST_TARGET,
                    "query_views_s": round(views_s, 5),
                    "query_raw_s": round(raw_s, 5),
                    "query_ratio": round(qratio, 3),
                    "query_target": QUERY_TARGET,
                    "provision_s": round(provision_s, 3),
                    "cpus": os.cpu_count(),
                }
            )
        )
    finally:
        for root, dirs, _files in os.walk(work):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o700)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
