"""k-anonymity figures and suppression on small DuckDB tables with known classes."""

from __future__ import annotations

import duckdb
import pytest

from sde.core.errors import SdeError
from sde.ingest import kanon

QIS = ["age_band", "sex", "district"]


def _table(rows: list[tuple[str, str, str]]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE p (age_band VARCHAR, sex VARCHAR, district VARCHAR)")
    con.executemany("INSERT INTO p VALUES (?, ?, ?)", rows)
    return con


def test_kanon_report_min_k_and_share_below_target():
    rows = [("40-44", "F", "LE1")] * 6 + [("40-44", "M", "LE1")] * 2 + [("90+", "F", "YO4")]
    report = kanon.report(_table(rows), "p", QIS, 5)
    assert report.records == 9
    assert report.classes == 3
    assert report.min_k == 1
    assert report.classes_below_k == 2
    assert report.records_below_k == 3
    assert report.share_below_k == pytest.approx(3 / 9)


def test_kanon_suppress_blanks_widest_then_removes_to_reach_k():
    rows = (
        [("40-44", "F", "LE1")] * 5
        + [("40-44", "F", "LE2")] * 2  # joins 3 others once the district is blanked
        + [("40-44", "F", "LE3")] * 3
        + [("90+", "M", "YO4")]  # alone whatever happens: removed
    )
    con = _table(rows)
    result = kanon.suppress(con, "p", QIS, 5)
    assert result.blanked_column == "district"
    assert result.blanked_records == 6
    assert result.removed_records == 1
    after = kanon.report(con, "p", QIS, 5)
    assert after.min_k >= 5
    assert after.records == 10
    assert after.records_below_k == 0


def test_kanon_unknown_quasi_identifier_is_named():
    with pytest.raises(SdeError, match="postcode_district"):
        kanon.report(_table([("1", "F", "A")]), "p", ["sex", "postcode_district"], 5)


def test_kanon_suppress_to_k_below_two_is_refused():
    with pytest.raises(SdeError, match="2 or more"):
        kanon.suppress(_table([("1", "F", "A")]), "p", QIS, 1)
