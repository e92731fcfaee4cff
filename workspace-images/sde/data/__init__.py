"""The researcher's door to a project's data, inside a workspace.

    import sde.data
    con = sde.data.connect()          # read-only DuckDB over the project's files
    con.sql("SELECT sex, count(*) FROM person GROUP BY sex")
    sde.data.catalogue()              # tables and columns with their descriptions

The data directory is `$SDE_DATA_DIR` (default `/data`, mounted read-only): the
project's own Parquet files and `project.duckdb`, whose views name the files by
paths relative to that directory. Each granted dataset is a schema; all of them
are on the search path, so unqualified table names work when they are unique.

Depends on DuckDB only, so that workspace images need nothing else of sde.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

# The one name of the project's DuckDB file: provisioning writes it, the hub and a
# warm workspace look for it before serving. DuckDB is imported only to connect, so
# that they can read this name without paying for that import.
DATABASE = "project.duckdb"
DEFAULT_DIR = "/data"


class DataError(Exception):
    """The project's data is not there (not provisioned, or not mounted)."""


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    return Path(path or os.environ.get("SDE_DATA_DIR") or DEFAULT_DIR)


def connect(path: str | os.PathLike[str] | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection to the project's data."""
    folder = data_dir(path).resolve()
    db = folder / DATABASE
    if not db.is_file():
        raise DataError(
            f"no project data at {folder} ({DATABASE} missing): ask an operator to run "
            "`sde projects provision PROJECT`"
        )
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET file_search_path = ?", [str(folder)])
    schemas = [
        r[0]
        for r in con.execute(
            "SELECT schema_name FROM duckdb_schemas() WHERE database_name = current_database() "
            "AND NOT internal ORDER BY schema_name"
        ).fetchall()
    ]
    con.execute("SET search_path = ?", [",".join(["main", *schemas])])
    return con


def catalogue(
    con: duckdb.DuckDBPyConnection | None = None, path: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """One row per column: schema, table, column, type, description (table's own first)."""
    own = con is None
    con = con or connect(path)
    try:
        tables = {
            (s, t): c or ""
            for s, t, c in con.execute(
                "SELECT schema_name, view_name, comment FROM duckdb_views() "
                "WHERE NOT internal AND database_name = current_database()"
            ).fetchall()
        }
        rows: list[dict[str, Any]] = []
        for s, t, col, typ, comment in con.execute(
            "SELECT schema_name, table_name, column_name, data_type, comment FROM duckdb_columns() "
            "WHERE NOT internal AND database_name = current_database() "
            "ORDER BY schema_name, table_name, column_index"
        ).fetchall():
            if (s, t) not in tables:
                continue
            rows.append(
                {
                    "schema": s,
                    "table": t,
                    "table_description": tables[(s, t)],
                    "column": col,
                    "type": typ,
                    "description": comment or "",
                }
            )
        return rows
    finally:
        if own:
            con.close()


__all__ = ["DataError", "catalogue", "connect", "data_dir"]
