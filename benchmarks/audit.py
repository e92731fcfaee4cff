"""Audit log throughput: append (one transaction per event, and batched) and verify,
on SQLite and PostgreSQL, beside the floor: hashing the same bytes with hashlib alone.

    .venv/bin/python benchmarks/audit.py [--quick] [--events N] [--backends sqlite,postgresql]

Target: verify within 3x of the floor. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sde.audit import CheckpointSigner, EventIn, append_many, checkpoint, record, verify  # noqa: E402
from sde.core.db import make_engine, transaction  # noqa: E402
from sde.core.schema import ensure_schema  # noqa: E402
from tests.support import postgres  # noqa: E402

TARGET = 3.0
BATCH = 10_000


def events(start: int, n: int) -> list[EventIn]:
    return [
        EventIn(
            f"user{i % 97}",
            "dataset.read",
            f"dataset:omop@{i % 5}",
            f"project-{i % 13}",
            {"rows": i, "columns": ["person_id", "year_of_birth"]},
        )
        for i in range(start, start + n)
    ]


def bench_backend(engine: Engine, n: int, single: int, workdir: Path) -> dict[str, float]:
    ensure_schema(engine)
    t = time.perf_counter()
    for ev in events(0, single):
        with transaction(engine) as s:
            record(
                s,
                actor=ev.actor,
                action=ev.action,
                target=ev.target,
                project=ev.project,
                details=ev.details,
            )
    single_s = time.perf_counter() - t

    t = time.perf_counter()
    done = single
    while done < n:
        size = min(BATCH, n - done)
        with transaction(engine) as s:
            append_many(s, events(done, size))
        done += size
    batched_s = time.perf_counter() - t

    signer = CheckpointSigner(workdir / "key")
    witness = workdir / "witness.jsonl"
    checkpoint(engine, signer, witness)

    t = time.perf_counter()
    report = verify(engine, signer, witness)
    verify_s = time.perf_counter() - t
    assert report.ok and report.events == n, report.summary()

    # The floor: the same bytes, already in memory, hashed with hashlib alone.
    with engine.connect() as conn:
        msgs = [
            b.encode() for (b,) in conn.execute(text("SELECT body FROM audit_events ORDER BY seq"))
        ]
    sha256 = hashlib.sha256
    t = time.perf_counter()
    for m in msgs:
        sha256(m).hexdigest()
    floor_s = time.perf_counter() - t
    return {
        "append_single_per_s": single / single_s,
        "append_batched_per_s": (n - single) / batched_s,
        "verify_s": verify_s,
        "verify_per_s": n / verify_s,
        "floor_s": floor_s,
        "ratio": verify_s / floor_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run (under a minute)")
    parser.add_argument("--events", type=int, default=None, help="events in the chain")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    n = args.events or (20_000 if args.quick else 1_000_000)
    single = min(n // 10, 500 if args.quick else 5_000)

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="sde-bench-audit-") as tmp:
        root = Path(tmp)
        for backend in args.backends.split(","):
            workdir = root / backend
            workdir.mkdir()
            server = None
            if backend == "sqlite":
                engine = make_engine(f"sqlite:///{workdir / 'audit.db'}")
            else:
                bindir = postgres.find_bindir()
                if bindir is None:
                    sys.exit("postgresql binaries not found: run `make install`")
                server = postgres.start(bindir)
                admin = create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.execute(text("CREATE DATABASE bench"))
                admin.dispose()
                engine = make_engine(server.url("bench"))
            try:
                results[backend] = bench_backend(engine, n, single, workdir)
            finally:
                engine.dispose()
                if server is not None:
                    server.stop()
            r = results[backend]
            print(
                f"{backend:10s} events={n:>9,}  append 1/txn {r['append_single_per_s']:>9,.0f}/s"
                f"  batched {r['append_batched_per_s']:>9,.0f}/s  verify {r['verify_s']:.2f}s"
                f" ({r['verify_per_s']:,.0f}/s)  floor {r['floor_s']:.2f}s"
                f"  ratio {r['ratio']:.2f}x (target <= {TARGET}x)"
            )
    summary: dict[str, object] = {"events": n, "target": TARGET}
    for backend, r in results.items():
        for key, value in r.items():
            summary[f"{backend}_{key}"] = round(value, 3)
    summary["ratio"] = round(max(r["ratio"] for r in results.values()), 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
