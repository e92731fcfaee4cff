"""Generalisation rules and opt-out list parsing (no state database needed)."""

from __future__ import annotations

import duckdb
import pytest

from sde.core.errors import SdeError
from sde.deid.generalise import (
    age_band_sql,
    nhs_number_invalid_sql,
    nhs_number_valid,
    outward_code_sql,
)
from sde.ingest.optout import parse_file
from sde.ingest.plan import build

VALID = ["9434765919", "4010232137", "4823555961"]
INVALID = ["9434765918", "123456789", "94347659190", "abcdefghij", "4010232138"]


@pytest.mark.parametrize("value", VALID)
def test_ingest_rules_valid_nhs_numbers_pass_python_and_sql(value):
    assert nhs_number_valid(value)
    assert duckdb.sql(f"SELECT {nhs_number_invalid_sql(repr(value))}").fetchall() == [(False,)]


@pytest.mark.parametrize("value", INVALID)
def test_ingest_rules_invalid_nhs_numbers_fail_python_and_sql(value):
    assert not nhs_number_valid(value)
    assert duckdb.sql(f"SELECT {nhs_number_invalid_sql(repr(value))}").fetchall() == [(True,)]


@pytest.mark.parametrize(
    ("year", "band"), [(1983, "40-44"), (2025, "0-4"), (1930, "90+"), (1936, "85-89")]
)
def test_ingest_rules_age_band_of_year_of_birth(year, band):
    assert duckdb.sql(f"SELECT {age_band_sql(str(year), 2025)}").fetchall() == [(band,)]


@pytest.mark.parametrize(
    ("postcode", "district"),
    [("LE1 7WW", "LE1"), ("sw1a 1aa", "SW1A"), ("BT203AH", "BT20"), ("G18 3JR", "G18")],
)
def test_ingest_rules_outward_code(postcode, district):
    assert duckdb.sql(f"SELECT {outward_code_sql(repr(postcode))}").fetchall() == [(district,)]


def test_ingest_rules_plan_drops_direct_identifiers_and_identifiers_table():
    tables = build(2025, date_shift=False, free_text="scrub")
    assert "identifiers" not in tables
    person = {c.name for c in tables["person"].columns}
    assert {"age_band", "sex", "postcode_district", "ethnicity", "year_of_birth"} <= person
    assert not {"day_of_birth", "month_of_birth", "person_source_value"} & person
    assert tables["notes"].free_text == ["note_text"]


def test_ingest_rules_plan_free_text_drop():
    tables = build(2025, date_shift=True, free_text="drop")
    assert "note_text" not in {c.name for c in tables["notes"].columns}
    shifted = [c.name for c in tables["visit_occurrence"].columns if c.treatment == "shifted"]
    assert shifted == ["visit_start_date", "visit_end_date"]


def test_ingest_rules_optout_file_hashes_only(tmp_path):
    f = tmp_path / "optout.csv"
    f.write_text("nhs_number\n943 476 5919\n4010232137\n9434765919\n")
    parsed = parse_file(f, b"k" * 32)
    assert len(parsed.hashes) == 2
    assert all(len(h) == 64 and "9434765919" not in h for h in parsed.hashes)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "zero bytes"),
        (b"9434765919\n9434765918\n", "line 2: not a valid NHS number"),
        (b"9434765919\n\xff\xfe\n", "line 2: not UTF-8"),
    ],
)
def test_ingest_rules_optout_bad_file_is_refused(tmp_path, content, message):
    f = tmp_path / "optout.txt"
    f.write_bytes(content)
    with pytest.raises(SdeError, match=message):
        parse_file(f, b"k" * 32)


def test_ingest_rules_plan_marks_every_id_column_as_identifier_or_code():
    tables = build(2025, date_shift=False, free_text="scrub")
    marks = {(t, c.name): (c.identifier, c.keyspace) for t, o in tables.items() for c in o.columns}
    assert marks[("person", "person_id")] == ("person", "person")
    assert marks[("measurement", "measurement_id")] == ("row", "measurement")
    assert marks[("condition_occurrence", "visit_occurrence_id")] == ("row", "visit_occurrence")
    assert marks[("notes", "note_id")] == ("row", "notes")
    assert marks[("condition_occurrence", "condition_concept_id")] == ("code", "")
    unmarked = [k for k, (kind, _) in marks.items() if k[1].endswith("_id") and not kind]
    assert unmarked == []
    # Every reference names a table that publishes that row key.
    keyspaces = {ks for kind, ks in marks.values() if kind == "row"}
    own = {t for (t, _), (kind, ks) in marks.items() if kind == "row" and ks == t}
    assert keyspaces == own


def test_ingest_rules_unmarked_id_column_is_refused():
    from dataclasses import replace

    from sde.deid.rekey import UnmarkedIdentifier
    from sde.ingest.plan import plan_table
    from sde.synth.schema import MEASUREMENT, Column

    extra = replace(MEASUREMENT, columns=(*MEASUREMENT.columns, Column("provider_id", "int64")))
    with pytest.raises(UnmarkedIdentifier, match=r"measurement\.provider_id"):
        plan_table(extra, 2025, date_shift=False, free_text="scrub")
