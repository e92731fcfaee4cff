"""Write a synthetic SOURCE directory chunk by chunk, atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.csv as pacsv

from sde.core.errors import SdeError
from sde.synth.generate import CHUNK_PERSONS, MAX_PERSONS, Counters, generate_chunk
from sde.synth.schema import PLANTED_FILE, TABLES, TRUTH_DIR


@dataclass
class Summary:
    persons: int
    rows: dict[str, int]
    planted: int
    seconds: float

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SdeError(f"output directory {out} is an existing file")
    if out.exists() and any(out.iterdir()):
        raise SdeError(f"output directory {out} already exists and is not empty")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise SdeError(f"parent directory {parent} does not exist")


def synthesize(
    persons: int,
    out: Path,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    chunk_persons: int = CHUNK_PERSONS,
) -> Summary:
    """Generate `persons` people into the new directory `out` (nothing is left on failure)."""
    if persons <= 0:
        raise SdeError(f"--persons must be a positive number, not {persons}")
    if persons > MAX_PERSONS:
        raise SdeError(f"--persons must be at most {MAX_PERSONS:,}, not {persons:,}")
    if seed < 0:
        raise SdeError(f"--seed must be zero or positive, not {seed}")
    out = Path(out)
    check_target(out)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        summary = _write(persons, tmp, seed, progress, chunk_persons)
        if out.exists():
            out.rmdir()  # empty (checked above); rename cannot replace a directory
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary.seconds = time.perf_counter() - started
    return summary


def _write(
    persons: int,
    tmp: Path,
    seed: int,
    progress: Callable[[int], None] | None,
    chunk_persons: int,
) -> Summary:
    (tmp / TRUTH_DIR).mkdir()
    options = pacsv.WriteOptions(include_header=True, quoting_style="needed")
    writers = {
        name: pacsv.CSVWriter(tmp / table.file_name, table.arrow_schema(), write_options=options)
        for name, table in TABLES.items()
    }
    rows = dict.fromkeys(TABLES, 0)
    planted = 0
    counters = Counters()
    try:
        with open(tmp / TRUTH_DIR / PLANTED_FILE, "w", encoding="utf-8", newline="\n") as truth:
            for chunk_index, first in enumerate(range(0, persons, chunk_persons)):
                n = min(chunk_persons, persons - first)
                chunk = generate_chunk(seed, chunk_index, first, n, counters)
                for name, table in chunk.tables.items():
                    writers[name].write_table(table)
                    rows[name] += table.num_rows
                if chunk.planted:
                    truth.write("\n".join(chunk.planted) + "\n")
                planted += len(chunk.planted)
                if progress:
                    progress(n)
    finally:
        for writer in writers.values():
            writer.close()
    return Summary(persons, rows, planted, 0.0)
