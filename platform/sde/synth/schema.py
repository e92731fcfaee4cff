"""The source format contract, as data.

A SOURCE is a directory of UTF-8 CSV files, one per table in `TABLES`, each with
a header row naming exactly the declared columns in the declared order. Values:

- `int64`, `float64`: decimal text; `date`: ISO `YYYY-MM-DD`; `string`: any text
  (quoted by the CSV writer when needed).
- An empty field is NULL; only columns with `nullable=True` may be empty. Strings
  are quoted, so an empty string would be `""`; the generator writes none.
- Quoted values may contain line breaks (notes do): read with
  `newlines_in_values=True`; `csv_options()` gives the reader settings.
- The primary key is unique within its table; `person_id` in every table refers to
  `person.person_id`.

Column roles tell ingest what to do with each column:

- `PERSON_KEY`: the person identifier linking tables (pseudonymised by ingest).
- `DIRECT`: directly identifies someone (NHS number, name, address...): never leaves
  ingest as is; also the source of the scrubber's deny list.
- `QUASI`: identifies in combination (birth year, sex, ethnicity, postcode): generalised
  and checked for k-anonymity.
- `FREE_TEXT`: prose that may contain identifiers: scrubbed.
- `KEY`: the row key of its own table; `REF`: a row key of another table (the table is
  named by `references`), e.g. `visit_occurrence_id` in `condition_occurrence`. Both are
  identifiers: provisioning re-keys them per project, KEY and REF alike, so joins hold.
- `CODE`: a vocabulary code (an OMOP concept id): kept as is, researchers need it.
- `NONE`: clinical content.

Every column named like an identifier (`*_id`) is PERSON_KEY, KEY, REF or CODE (or
DIRECT, and dropped): ingest and provisioning refuse a `*_id` column marked neither way
(sde.deid.rekey), since an unmarked row id published as is links rows across projects.

What the generator planted in free text is recorded, one JSON object per line, in
`SOURCE/_truth/planted.jsonl` (see `PLANTED_FIELDS`). `_truth/` is not part of the
source: ingest ignores it; tests and benchmarks use it to measure recall.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv

ColumnType = Literal["int64", "float64", "string", "date"]


class Role(StrEnum):
    NONE = "none"
    KEY = "key"
    REF = "ref"
    CODE = "code"
    PERSON_KEY = "person_key"
    DIRECT = "direct"
    QUASI = "quasi"
    FREE_TEXT = "free_text"


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    nullable: bool = False
    role: Role = Role.NONE
    description: str = ""
    references: str = ""  # REF: the table whose row key this column holds


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    description: str = ""

    @property
    def file_name(self) -> str:
        return f"{self.name}.csv"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")

    def with_role(self, role: Role) -> list[str]:
        return [c.name for c in self.columns if c.role is role]

    @property
    def person_key(self) -> str | None:
        keys = self.with_role(Role.PERSON_KEY)
        return keys[0] if keys else None

    @property
    def direct_identifiers(self) -> list[str]:
        return self.with_role(Role.DIRECT)

    @property
    def quasi_identifiers(self) -> list[str]:
        return self.with_role(Role.QUASI)

    @property
    def free_text(self) -> list[str]:
        return self.with_role(Role.FREE_TEXT)

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema a reader should parse this CSV with (dates as date32)."""
        return pa.schema(
            [pa.field(c.name, ARROW_TYPES[c.type], nullable=c.nullable) for c in self.columns]
        )


def csv_options(table: Table) -> tuple[pacsv.ParseOptions, pacsv.ConvertOptions]:
    """pyarrow CSV reader settings that parse `table`'s file exactly as declared."""
    parse = pacsv.ParseOptions(newlines_in_values=True)
    convert = pacsv.ConvertOptions(
        column_types=table.arrow_schema(),
        include_columns=table.column_names,
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    return parse, convert


ARROW_TYPES: dict[str, pa.DataType] = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "date": pa.date32(),
}

_PK = Role.PERSON_KEY
_CODE = Role.CODE


def _c(
    name: str, type_: ColumnType, nullable: bool = False, role: Role = Role.NONE, doc: str = ""
) -> Column:
    return Column(name, type_, nullable, role, doc)


def _key(name: str, table: str) -> Column:
    return Column(name, "int64", False, Role.KEY, f"Row key of {table}.")


def _ref(name: str, table: str, nullable: bool = False) -> Column:
    return Column(name, "int64", nullable, Role.REF, f"Row key of {table} (joins to it).", table)


PERSON = Table(
    "person",
    (
        _c("person_id", "int64", role=_PK, doc="Source person identifier."),
        _c("gender_concept_id", "int64", role=_CODE, doc="OMOP gender: 8507 male, 8532 female."),
        _c("year_of_birth", "int64", role=Role.QUASI),
        _c("month_of_birth", "int64", role=Role.QUASI),
        _c(
            "day_of_birth",
            "int64",
            role=Role.DIRECT,
            doc="With year and month it is the full date of birth: treat as direct.",
        ),
        _c("race_concept_id", "int64", role=_CODE, doc="OMOP race concept (0 when not mappable)."),
        _c(
            "ethnicity_concept_id",
            "int64",
            role=_CODE,
            doc="OMOP ethnicity concept (0: not recorded).",
        ),
        _c("person_source_value", "string", role=Role.DIRECT, doc="Hospital number (MRN)."),
        _c("gender_source_value", "string", role=Role.QUASI, doc="M or F."),
        _c(
            "ethnicity_source_value",
            "string",
            role=Role.QUASI,
            doc="ONS 2021 high-level ethnic group (see ETHNIC_GROUPS).",
        ),
    ),
    ("person_id",),
    "One row per person.",
)

OBSERVATION_PERIOD = Table(
    "observation_period",
    (
        _key("observation_period_id", "observation_period"),
        _c("person_id", "int64", role=_PK),
        _c("observation_period_start_date", "date"),
        _c("observation_period_end_date", "date"),
        _c("period_type_concept_id", "int64", role=_CODE, doc="32817: EHR."),
    ),
    ("observation_period_id",),
    "Spans of time the person's records are complete.",
)

VISIT_OCCURRENCE = Table(
    "visit_occurrence",
    (
        _key("visit_occurrence_id", "visit_occurrence"),
        _c("person_id", "int64", role=_PK),
        _c(
            "visit_concept_id",
            "int64",
            role=_CODE,
            doc="9202 outpatient, 9201 inpatient, 9203 A&E.",
        ),
        _c("visit_start_date", "date"),
        _c("visit_end_date", "date"),
        _c("visit_type_concept_id", "int64", role=_CODE, doc="32817: EHR."),
        _c("visit_source_value", "string", doc="Source visit type label."),
    ),
    ("visit_occurrence_id",),
    "Encounters.",
)

CONDITION_OCCURRENCE = Table(
    "condition_occurrence",
    (
        _key("condition_occurrence_id", "condition_occurrence"),
        _c("person_id", "int64", role=_PK),
        _c("condition_concept_id", "int64", role=_CODE, doc="OMOP (SNOMED) standard concept."),
        _c("condition_start_date", "date"),
        _c("condition_end_date", "date", nullable=True),
        _c("condition_type_concept_id", "int64", role=_CODE, doc="32817: EHR."),
        _ref("visit_occurrence_id", "visit_occurrence", nullable=True),
        _c("condition_source_value", "string", doc="ICD-10 code as recorded."),
    ),
    ("condition_occurrence_id",),
    "Diagnoses.",
)

DRUG_EXPOSURE = Table(
    "drug_exposure",
    (
        _key("drug_exposure_id", "drug_exposure"),
        _c("person_id", "int64", role=_PK),
        _c("drug_concept_id", "int64", role=_CODE, doc="OMOP (RxNorm) standard concept."),
        _c("drug_exposure_start_date", "date"),
        _c("drug_exposure_end_date", "date"),
        _c("drug_type_concept_id", "int64", role=_CODE, doc="32817: EHR."),
        _c("quantity", "float64", nullable=True),
        _c("days_supply", "int64", nullable=True),
        _ref("visit_occurrence_id", "visit_occurrence", nullable=True),
        _c("drug_source_value", "string", doc="Product name as prescribed."),
    ),
    ("drug_exposure_id",),
    "Prescriptions.",
)

MEASUREMENT = Table(
    "measurement",
    (
        _key("measurement_id", "measurement"),
        _c("person_id", "int64", role=_PK),
        _c("measurement_concept_id", "int64", role=_CODE, doc="OMOP (LOINC) standard concept."),
        _c("measurement_date", "date"),
        _c("measurement_type_concept_id", "int64", role=_CODE, doc="32817: EHR."),
        _c("value_as_number", "float64", nullable=True),
        _c("unit_source_value", "string", nullable=True),
        _c("range_low", "float64", nullable=True),
        _c("range_high", "float64", nullable=True),
        _ref("visit_occurrence_id", "visit_occurrence", nullable=True),
        _c("measurement_source_value", "string", doc="Test name as recorded."),
    ),
    ("measurement_id",),
    "Lab results and observations with a value.",
)

IDENTIFIERS = Table(
    "identifiers",
    (
        _c("person_id", "int64", role=_PK),
        _c("nhs_number", "string", role=Role.DIRECT, doc="10 digits, valid mod-11, unique."),
        _c("given_name", "string", role=Role.DIRECT),
        _c("family_name", "string", role=Role.DIRECT),
        _c("date_of_birth", "date", role=Role.DIRECT),
        _c(
            "postcode",
            "string",
            role=Role.DIRECT,
            doc="Full UK postcode 'OUT IN'; its outward code (district) is a quasi-identifier.",
        ),
        _c("address", "string", role=Role.DIRECT, doc="House number and street, town."),
        _c("phone", "string", role=Role.DIRECT, doc="UK phone number as recorded."),
        _c("email", "string", nullable=True, role=Role.DIRECT),
    ),
    ("person_id",),
    "Direct identifiers, one row per person (never released; feeds the scrubber's deny list).",
)

NOTES = Table(
    "notes",
    (
        _key("note_id", "notes"),
        _c("person_id", "int64", role=_PK),
        _c("note_date", "date"),
        _c("note_text", "string", role=Role.FREE_TEXT, doc="Free-text clinical note."),
    ),
    ("note_id",),
    "Free-text clinical notes (contain identifiers: scrubbed by ingest).",
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        PERSON,
        OBSERVATION_PERIOD,
        VISIT_OCCURRENCE,
        CONDITION_OCCURRENCE,
        DRUG_EXPOSURE,
        MEASUREMENT,
        IDENTIFIERS,
        NOTES,
    )
}

# The column of `identifiers` whose outward code is the postcode-district quasi-identifier.
POSTCODE_COLUMN = ("identifiers", "postcode")

# ONS Census 2021 high-level ethnic groups (England and Wales), as recorded in
# person.ethnicity_source_value.
ETHNIC_GROUPS: tuple[str, ...] = (
    "Asian, Asian British or Asian Welsh",
    "Black, Black British, Black Welsh, Caribbean or African",
    "Mixed or Multiple ethnic groups",
    "White",
    "Other ethnic group",
)

# --------------------------------------------------------------------- planted truth

TRUTH_DIR = "_truth"
PLANTED_FILE = "planted.jsonl"

# Entity types of planted identifiers; the scrubber replaces each with `[TYPE]`.
ENTITY_TYPES: tuple[str, ...] = (
    "NHS_NUMBER",
    "PERSON",
    "DATE",
    "POSTCODE",
    "PHONE",
    "EMAIL",
    "ADDRESS",
    "NINO",
)

# One JSON object per line of planted.jsonl, for example
# {"table": "notes", "key": {"note_id": 7}, "column": "note_text", "person_id": 3,
#  "entity": "NHS_NUMBER", "text": "943 476 5919", "start": 41, "end": 53}
# `text == row[column][start:end]` exactly (offsets in Python str characters).
PLANTED_FIELDS: tuple[str, ...] = (
    "table",
    "key",
    "column",
    "person_id",
    "entity",
    "text",
    "start",
    "end",
)
