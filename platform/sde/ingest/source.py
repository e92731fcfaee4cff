"""Locating a SOURCE directory's files and loading them into DuckDB with the contract's types.

A source holds one file per table of `sde.synth.schema.TABLES`: `NAME.csv` (the
contract's UTF-8 CSV) or `NAME.parquet` (the same columns, typed). CSV files are
parsed once, with explicit types, into DuckDB tables (`src_NAME`); rows that do not
parse are kept aside in DuckDB's reject tables so that validation can name every
bad line. Parquet files are read in place through views that cast to the contract
types.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from sde.core.errors import NotFound, SdeError
from sde.synth.schema import TABLES, TRUTH_DIR, Table

DUCKDB_TYPES = {"int64": "BIGINT", "float64": "DOUBLE", "string": "VARCHAR", "date": "DATE"}
# Parquet physical types that hold a contract type without loss.
COMPATIBLE = {
    "BIGINT": {"BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UINTEGER", "USMALLINT", "UTINYINT"},
    "DOUBLE": {"DOUBLE", "FLOAT", "BIGINT", "INTEGER", "SMALLINT"},
    "VARCHAR": {"VARCHAR"},
    "DATE": {"DATE"},
}


def one(result: duckdb.DuckDBPyConnection) -> tuple[Any, ...] | None:
    """The first row of a result, consuming it all (DuckDB refuses new work on a connection
    while a result is only partly fetched)."""
    rows = result.fetchall()
    return rows[0] if rows else None


@dataclass
class Problem:
    """One thing wrong with the source, located as precisely as the check allows."""

    file: str
    message: str
    column: str | None = None
    row: int | None = None  # data row, 1-based, header not counted
    line: int | None = None  # physical line of a CSV file (the header is line 1)

    def where(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(f"line {self.line}")
        elif self.row is not None:
            parts.append(f"row {self.row}")
        if self.column:
            parts.append(f"column {self.column}")
        return " ".join(parts)

    def __str__(self) -> str:
        return f"{self.where()}: {self.message}"


class SourceInvalid(SdeError):
    """The source breaks the contract; `problems` lists every finding."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"source rejected, nothing published: {problems[0]}{more}")


@dataclass
class SourceFile:
    table: Table
    path: Path
    format: str  # "csv" or "parquet"
    sha256: str = ""
    bytes: int = 0


def locate(source: Path) -> tuple[dict[str, SourceFile], list[Problem]]:
    """Find each table's file; missing, doubled, unexpected and empty files are problems."""
    source = Path(source)
    if not source.is_dir():
        raise NotFound(f"source {source} is not a directory")
    found: dict[str, SourceFile] = {}
    problems: list[Problem] = []
    expected = {f"{name}.{ext}": name for name in TABLES for ext in ("csv", "parquet")}
    for entry in sorted(source.iterdir()):
        if entry.name == TRUTH_DIR or entry.name.startswith("."):
            continue
        name = expected.get(entry.name)
        if name is None or not entry.is_file():
            problems.append(
                Problem(entry.name, "unexpected file: not a table of the source format")
            )
            continue
        if name in found:
            problems.append(Problem(entry.name, f"table {name} is given twice (CSV and Parquet)"))
            continue
        size = entry.stat().st_size
        fmt = entry.suffix.lstrip(".")
        if size == 0:
            problems.append(Problem(entry.name, "file is empty (zero bytes)"))
        found[name] = SourceFile(TABLES[name], entry, fmt, bytes=size)
    for name, table in TABLES.items():
        if name not in found:
            problems.append(Problem(table.file_name, "file is missing"))
    return found, problems


def check_header(sf: SourceFile) -> list[Problem]:
    """Compare a CSV header with the contract: every missing, extra or misplaced column."""
    with open(sf.path, "rb") as fh:
        first = fh.readline()
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [Problem(sf.path.name, "header is not UTF-8 text", line=1)]
    header = next(csv.reader(io.StringIO(text)), [])
    expected = sf.table.column_names
    problems = [
        Problem(sf.path.name, "required column is missing", column=c, line=1)
        for c in expected
        if c not in header
    ]
    problems += [
        Problem(sf.path.name, "unexpected column", column=c, line=1)
        for c in header
        if c not in expected
    ]
    if not problems and header != expected:
        problems.append(
            Problem(
                sf.path.name, f"columns are out of order: expected {', '.join(expected)}", line=1
            )
        )
    return problems


def check_parquet_schema(con: duckdb.DuckDBPyConnection, sf: SourceFile) -> list[Problem]:
    try:
        rows = con.execute(
            "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(?))",
            [str(sf.path)],
        ).fetchall()
    except duckdb.Error as exc:
        return [Problem(sf.path.name, f"not a readable Parquet file: {_first_line(exc)}")]
    actual = dict(rows)
    problems = []
    for col in sf.table.columns:
        want = DUCKDB_TYPES[col.type]
        if col.name not in actual:
            problems.append(Problem(sf.path.name, "required column is missing", column=col.name))
        elif actual[col.name] not in COMPATIBLE[want]:
            problems.append(
                Problem(
                    sf.path.name,
                    f"wrong type {actual[col.name]}, expected {want}",
                    column=col.name,
                )
            )
    problems += [
        Problem(sf.path.name, "unexpected column", column=c)
        for c in actual
        if c not in sf.table.column_names
    ]
    return problems


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def stage(con: duckdb.DuckDBPyConnection, sf: SourceFile) -> list[Problem]:
    """Make `src_<table>` available in DuckDB; rows that fail to parse become problems."""
    table = sf.table
    name = f"src_{table.name}"
    if sf.format == "parquet":
        casts = ", ".join(
            f'CAST("{c.name}" AS {DUCKDB_TYPES[c.type]}) AS "{c.name}"' for c in table.columns
        )
        con.execute(
            f"CREATE OR REPLACE VIEW {name} AS SELECT {casts} FROM read_parquet('{_sql_path(sf)}')"
        )
        return []
    types = ", ".join(f"'{c.name}': '{DUCKDB_TYPES[c.type]}'" for c in table.columns)
    rejects = f"rej_{table.name}"
    try:
        con.execute(
            f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM read_csv('{_sql_path(sf)}', "
            f"header=true, auto_detect=false, delim=',', quote='\"', escape='\"', "
            f"columns={{{types}}}, dateformat='%Y-%m-%d', "
            f"store_rejects=true, rejects_table='{rejects}', rejects_scan='{rejects}_scan')"
        )
    except duckdb.Error as exc:
        return [Problem(sf.path.name, f"cannot be read as CSV: {_first_line(exc)}")]
    found = con.execute(
        f"SELECT line, column_name, error_type, error_message FROM {rejects} ORDER BY line LIMIT 50"
    ).fetchall()
    problems = []
    for line, column, error_type, message in found:
        if str(error_type) == "INVALID ENCODING":
            text = "not UTF-8 text"
        elif str(error_type) == "CAST":
            col = table.column(column) if column in table.column_names else None
            text = f"expected {col.type if col else 'a value'}: {_cast_detail(message)}"
        else:
            text = _first_line(Exception(message))
        problems.append(Problem(sf.path.name, text, column=column or None, line=int(line)))
    return problems


def _cast_detail(message: str) -> str:
    # DuckDB: 'Error when converting column "c". Could not convert string "x" to 'DATE''
    marker = "Could not convert"
    return message[message.index(marker) :].strip() if marker in message else message.strip()


def _sql_path(sf: SourceFile) -> str:
    return str(sf.path).replace("'", "''")
