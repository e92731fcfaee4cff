"""k-anonymity over a quasi-identifier set, and suppression to reach a target k.

An equivalence class is a set of people sharing every quasi-identifier value
(NULL counts as a value of its own: a blanked postcode district is a class
"unknown district"). k is the size of the smallest class.

Suppression (`suppress`) is local first, then by record: people in classes
smaller than k lose the quasi-identifier with the most distinct values (usually
the postcode district), which merges them into larger classes; those still in a
class smaller than k are removed from the release, with all their rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import duckdb

from sde.core.errors import SdeError
from sde.ingest.source import one


@dataclass(frozen=True)
class KReport:
    quasi_identifiers: list[str]
    target_k: int
    records: int
    classes: int
    min_k: int
    classes_below_k: int
    records_below_k: int

    @property
    def share_below_k(self) -> float:
        return self.records_below_k / self.records if self.records else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "share_below_k": round(self.share_below_k, 6)}


@dataclass(frozen=True)
class Suppression:
    target_k: int
    blanked_column: str | None
    blanked_records: int
    removed_records: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cols(qis: list[str]) -> str:
    return ", ".join(f'"{q}"' for q in qis)


def check_columns(con: duckdb.DuckDBPyConnection, table: str, qis: list[str]) -> None:
    if not qis:
        raise SdeError("the quasi-identifier set is empty (settings data.quasi_identifiers)")
    have = {r[0] for r in con.execute(f"SELECT column_name FROM (DESCRIBE {table})").fetchall()}
    missing = [q for q in qis if q not in have]
    if missing:
        raise SdeError(
            f"quasi-identifier(s) {', '.join(missing)} are not columns of the person table "
            f"(available: {', '.join(sorted(have))})"
        )


def report(con: duckdb.DuckDBPyConnection, table: str, qis: list[str], target_k: int) -> KReport:
    """k-anonymity figures of `table` over `qis`."""
    check_columns(con, table, qis)
    row = one(
        con.execute(
            f"""
        WITH classes AS (SELECT count(*) AS n FROM {table} GROUP BY {_cols(qis)})
        SELECT coalesce(sum(n), 0), count(*), coalesce(min(n), 0),
               count(*) FILTER (WHERE n < $k), coalesce(sum(n) FILTER (WHERE n < $k), 0)
        FROM classes
        """,
            {"k": target_k},
        )
    )
    assert row is not None
    return KReport(
        list(qis), target_k, int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4])
    )


def _small(table: str, qis: list[str]) -> str:
    """Rows of `table` in classes smaller than $k (their rowid)."""
    return (
        f"SELECT rowid FROM (SELECT rowid, count(*) OVER (PARTITION BY {_cols(qis)}) AS n "
        f"FROM {table}) WHERE n < $k"
    )


def suppress(con: duckdb.DuckDBPyConnection, table: str, qis: list[str], k: int) -> Suppression:
    """Blank one quasi-identifier, then remove records, until every class has k or more."""
    if k < 2:
        raise SdeError(f"--suppress-to-k must be 2 or more, not {k}")
    check_columns(con, table, qis)
    counts = one(
        con.execute("SELECT " + ", ".join(f'count(DISTINCT "{q}")' for q in qis) + f" FROM {table}")
    )
    assert counts is not None
    widest = qis[max(range(len(qis)), key=lambda i: counts[i])]
    blanked = one(
        con.execute(
            f'UPDATE {table} SET "{widest}" = NULL WHERE rowid IN ({_small(table, qis)}) '
            f'AND "{widest}" IS NOT NULL',
            {"k": k},
        )
    )
    removed = con.execute(f"DELETE FROM {table} WHERE rowid IN ({_small(table, qis)})", {"k": k})
    removed_row = one(removed)
    return Suppression(
        k,
        widest,
        int(blanked[0]) if blanked else 0,
        int(removed_row[0]) if removed_row else 0,
    )
