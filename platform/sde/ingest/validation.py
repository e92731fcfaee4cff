"""Content checks on a staged source: every finding names file, row and column.

Checks run as set-wise DuckDB queries (counts over whole tables); only when one
fails does a second query find the first offending row, so a clean source pays
for one pass per check. Identifier values are never echoed in a message.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from sde.deid.generalise import EMAIL_RE, NHS_LIKE_RE, POSTCODE_RE, nhs_number_invalid_sql
from sde.ingest.source import Problem, SourceFile, one
from sde.synth.schema import Role, Table

PERSON_TABLE = "person"
IDENTIFIERS_TABLE = "identifiers"
NHS_COLUMN = "nhs_number"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def first_row(con: duckdb.DuckDBPyConnection, table: Table, condition: str) -> int | None:
    """1-based data row of the first row of src_<table> matching `condition` (file order)."""
    row = one(
        con.execute(
            f"SELECT rn FROM (SELECT row_number() OVER () AS rn, * FROM src_{table.name}) "
            f"WHERE {condition} ORDER BY rn LIMIT 1"
        )
    )
    return int(row[0]) if row else None


def first_duplicate(con: duckdb.DuckDBPyConnection, table: Table, columns: str) -> int | None:
    """Row of the first repeat (second occurrence) of a value of `columns`."""
    row = one(
        con.execute(
            f"SELECT min(rn) FROM (SELECT rn, "
            f"row_number() OVER (PARTITION BY {columns} ORDER BY rn) AS occurrence "
            f"FROM (SELECT row_number() OVER () AS rn, * FROM src_{table.name})) "
            f"WHERE occurrence > 1"
        )
    )
    return int(row[0]) if row and row[0] is not None else None


def _repeated_keys(con: duckdb.DuckDBPyConnection, table: Table, pk: str, total: int) -> int:
    """Rows whose primary key repeats an earlier row's (keys are known to be non-NULL).

    Sources are usually written in key order: keys that rise strictly from row to row
    are distinct, which one streaming pass proves. Otherwise count distinct keys.
    """
    if len(table.primary_key) == 1 and table.column(table.primary_key[0]).type == "int64":
        falls = one(
            con.execute(
                f"SELECT count(*) FROM (SELECT {pk} - lag({pk}) OVER () AS step "
                f"FROM src_{table.name}) WHERE step <= 0"
            )
        )
        if falls is not None and falls[0] == 0:
            return 0
    key = pk if len(table.primary_key) == 1 else f"({pk})"
    distinct = one(con.execute(f"SELECT count(DISTINCT {key}) FROM src_{table.name}"))
    return total - int(distinct[0]) if distinct else 0


@dataclass
class Profile:
    rows: int
    nulls: dict[str, int]
    in_nhs_range: set[str]  # numeric columns holding values in the NHS numbers' range


def _profile(
    con: duckdb.DuckDBPyConnection, sf: SourceFile, bounds: tuple[int, int] | None
) -> Profile:
    """Figures for every set-wise check, in as few passes as the data allows.

    Counts, non-NULL counts, minima and maxima come from Parquet (and DuckDB) column
    statistics without reading the data; only text columns (their distinct values, kept
    in `_profile_<table>`) and numeric columns whose range meets the NHS numbers' range
    are then read."""
    table = sf.table
    required = [c.name for c in table.columns if not c.nullable]
    scanned = _scanned_columns(table) if table.name != IDENTIFIERS_TABLE else []
    numeric = [c for c, t in scanned if t != "string"] if bounds is not None else []
    parts = ["count(*)"] + [f"count({_q(c)})" for c in required]
    parts += [f"min({_q(c)}), max({_q(c)})" for c in numeric]
    figures = one(con.execute(f"SELECT {', '.join(parts)} FROM src_{table.name}"))
    assert figures is not None
    rows = int(figures[0])
    nulls = {
        c: rows - int(n) for c, n in zip(required, figures[1 : 1 + len(required)], strict=True)
    }
    extremes = figures[1 + len(required) :]
    candidates = []
    if bounds is not None:
        lo, hi = bounds
        for i, col in enumerate(numeric):
            low, high = extremes[2 * i], extremes[2 * i + 1]
            if low is not None and high is not None and high >= lo and low <= hi:
                candidates.append(col)
    second = [
        f"list(DISTINCT {_q(c)}) AS {_q('distinct:' + c)}" for c, t in scanned if t == "string"
    ]
    if bounds is not None:
        lo, hi = bounds
        second += [
            f"count(*) FILTER (WHERE {_q(c)} BETWEEN {lo} AND {hi}) AS {_q('range:' + c)}"
            for c in candidates
        ]
    in_range: set[str] = set()
    if second:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _profile_{table.name} AS SELECT {', '.join(second)} "
            f"FROM src_{table.name}"
        )
        if candidates:
            counts = one(
                con.execute(
                    "SELECT "
                    + ", ".join(_q("range:" + c) for c in candidates)
                    + f" FROM _profile_{table.name}"
                )
            )
            in_range = {c for c, n in zip(candidates, counts or (), strict=True) if n}
    return Profile(rows, nulls, in_range)


def check_rows(con: duckdb.DuckDBPyConnection, sf: SourceFile, prof: Profile) -> list[Problem]:
    table = sf.table
    name = sf.path.name
    required = [c.name for c in table.columns if not c.nullable]
    pk = ", ".join(_q(c) for c in table.primary_key)
    figures = (prof.rows, *(prof.nulls[c] for c in required))
    total, *nulls = figures
    if total == 0:
        return [Problem(name, "has no data rows")]
    problems: list[Problem] = []
    for col, n in zip(required, nulls, strict=True):
        if n:
            row = first_row(con, table, f"{_q(col)} IS NULL")
            problems.append(Problem(name, f"empty value in a required column ({n} rows)", col, row))
    if problems:
        return problems
    repeats = _repeated_keys(con, table, pk, int(total))
    if repeats > 0:
        problems.append(
            Problem(
                name,
                f"duplicate {', '.join(table.primary_key)} ({repeats} repeated rows)",
                ", ".join(table.primary_key),
                first_duplicate(con, table, pk),
            )
        )
    return problems


def check_links(con: duckdb.DuckDBPyConnection, files: dict[str, SourceFile]) -> list[Problem]:
    """person_id everywhere refers to person; every person has one identifiers row."""
    problems = []
    for tname, sf in files.items():
        key = sf.table.person_key
        if tname == PERSON_TABLE or key is None:
            continue
        cond = f"{_q(key)} IS NOT NULL AND {_q(key)} NOT IN (SELECT person_id FROM src_person)"
        n = one(
            con.execute(
                f"SELECT count(*) FROM src_{tname} t ANTI JOIN src_person p "
                f"ON p.person_id = t.{_q(key)} WHERE t.{_q(key)} IS NOT NULL"
            )
        )
        if n and n[0]:
            problems.append(
                Problem(
                    sf.path.name,
                    f"{key} not found in person.csv ({n[0]} rows)",
                    key,
                    first_row(con, sf.table, cond),
                )
            )
    if IDENTIFIERS_TABLE in files and PERSON_TABLE in files:
        cond = "person_id NOT IN (SELECT person_id FROM src_identifiers)"
        n = one(con.execute(f"SELECT count(*) FROM src_person WHERE {cond}"))
        if n and n[0]:
            problems.append(
                Problem(
                    files[PERSON_TABLE].path.name,
                    f"person has no row in identifiers (needed for the opt-out check; {n[0]} rows)",
                    "person_id",
                    first_row(con, files[PERSON_TABLE].table, cond),
                )
            )
    return problems


def check_nhs_numbers(con: duckdb.DuckDBPyConnection, sf: SourceFile) -> list[Problem]:
    cond = nhs_number_invalid_sql(_q(NHS_COLUMN))
    n = one(con.execute(f"SELECT count(*) FROM src_{sf.table.name} WHERE {cond}"))
    problems = []
    if n and n[0]:
        problems.append(
            Problem(
                sf.path.name,
                f"not a valid NHS number (10 digits, mod-11 check; {n[0]} rows)",
                NHS_COLUMN,
                first_row(con, sf.table, cond),
            )
        )
    dupes = one(
        con.execute(
            f"SELECT count(*) FROM (SELECT {NHS_COLUMN} FROM src_{sf.table.name} "
            f"GROUP BY ALL HAVING count(*) > 1)"
        )
    )
    if dupes and dupes[0]:
        problems.append(
            Problem(
                sf.path.name,
                "the same NHS number belongs to two person_ids",
                NHS_COLUMN,
                first_duplicate(con, sf.table, NHS_COLUMN),
            )
        )
    return problems


def _scanned_columns(table: Table) -> list[tuple[str, str]]:
    """Columns that must not carry identifiers: neither identifiers nor free text nor keys."""
    skip = {Role.DIRECT, Role.FREE_TEXT, Role.PERSON_KEY, Role.KEY}
    return [(c.name, c.type) for c in table.columns if c.role not in skip and c.type != "date"]


def check_stray_identifiers(
    con: duckdb.DuckDBPyConnection,
    files: dict[str, SourceFile],
    profiles: dict[str, Profile],
) -> list[Problem]:
    """An NHS number, email or full postcode where only clinical content belongs.

    Scans the distinct values of each column (cheap: most are coded). A bare
    10-digit number in a numeric column counts only when it is one of the source's
    own NHS numbers, since random numbers pass the mod-11 check 1 time in 11.
    """
    has_ids = IDENTIFIERS_TABLE in files
    problems = []
    for tname, sf in files.items():
        if tname == IDENTIFIERS_TABLE:
            continue
        columns = _scanned_columns(sf.table)
        in_range = profiles[tname].in_nhs_range
        for col, ctype in columns:
            qc = _q(col)
            if ctype != "string" and col not in in_range:
                continue
            if ctype == "string":
                digits = f"regexp_replace(regexp_extract({qc}, '{NHS_LIKE_RE}'), '[ -]', '', 'g')"
                checks = [
                    (
                        "an NHS number",
                        f"regexp_matches({qc}, '{NHS_LIKE_RE}') AND NOT "
                        + nhs_number_invalid_sql(digits),
                    ),
                    ("an email address", f"regexp_matches({qc}, '{EMAIL_RE}')"),
                    ("a full postcode", f"regexp_matches(upper({qc}), '{POSTCODE_RE}')"),
                ]
            elif has_ids:
                checks = [
                    (
                        "one of the source's NHS numbers",
                        f"CAST({qc} AS BIGINT) IN (SELECT n FROM _nhs_values)"
                        if ctype == "int64"
                        else f"{qc} = round({qc}) AND {qc} BETWEEN 1e9 AND 1e10 AND "
                        f"CAST({qc} AS BIGINT) IN (SELECT n FROM _nhs_values)",
                    )
                ]
            else:
                checks = []
            if not checks:
                continue
            select = ", ".join(f"bool_or({cond})" for _, cond in checks)
            values = (
                f"(SELECT unnest({_q('distinct:' + col)}) AS {qc} FROM _profile_{tname})"
                if ctype == "string"
                else f"(SELECT DISTINCT {qc} FROM src_{tname} WHERE {qc} IS NOT NULL)"
            )
            hits = one(con.execute(f"SELECT {select} FROM {values} AS v({qc})"))
            assert hits is not None
            for (what, cond), hit in zip(checks, hits, strict=True):
                if hit:
                    problems.append(
                        Problem(
                            sf.path.name,
                            f"contains what looks like {what}; identifiers belong in "
                            "identifiers.csv only",
                            col,
                            first_row(con, sf.table, f"{qc} IS NOT NULL AND {cond}"),
                        )
                    )
    return problems


def check_all(con: duckdb.DuckDBPyConnection, files: dict[str, SourceFile]) -> list[Problem]:
    """Every content check, over tables that staged cleanly."""
    bounds = None
    if IDENTIFIERS_TABLE in files:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _nhs_values AS SELECT DISTINCT "
            "TRY_CAST(nhs_number AS BIGINT) AS n FROM src_identifiers WHERE n IS NOT NULL"
        )
        found = one(con.execute("SELECT min(n), max(n) FROM _nhs_values"))
        if found and found[0] is not None:
            bounds = (int(found[0]), int(found[1]))
    problems: list[Problem] = []
    profiles: dict[str, Profile] = {}
    for name, sf in files.items():
        profiles[name] = _profile(con, sf, bounds)
        problems += check_rows(con, sf, profiles[name])
    if problems:
        return problems
    problems += check_links(con, files)
    if IDENTIFIERS_TABLE in files:
        problems += check_nhs_numbers(con, files[IDENTIFIERS_TABLE])
    problems += check_stray_identifiers(con, files, profiles)
    return problems
