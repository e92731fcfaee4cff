"""Project data for workspace tests: what `sde projects provision` puts in place."""

from __future__ import annotations

from tests.support.hub import HubSite

# (sex, count) of the rows written below; a workspace query must find the same.
EXPECTED_COUNTS = {"F": 60, "M": 40}


def provision_project(site: HubSite, slug: str) -> None:
    """Materialise a small `person` table for `slug` under projects_dir/slug/data."""
    import duckdb

    data = site.settings.projects_dir / slug / "data"
    data.mkdir(parents=True, exist_ok=True)
    rows = [(i, "F" if i < 60 else "M", f"{20 + i % 5 * 10}-{29 + i % 5 * 10}") for i in range(100)]
    con = duckdb.connect(str(data / "project.duckdb"))
    con.execute("CREATE TABLE person(person_id INTEGER, sex VARCHAR, age_band VARCHAR)")
    con.executemany("INSERT INTO person VALUES (?, ?, ?)", rows)
    con.execute(f"COPY person TO '{data / 'person.parquet'}' (FORMAT parquet)")
    con.close()
    for path in data.rglob("*"):
        path.chmod(0o644)
    data.chmod(0o755)
