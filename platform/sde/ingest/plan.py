"""What ingest publishes for each source table, derived from the contract's column roles.

- PERSON_KEY: replaced by the dataset pseudonym (same column name, BIGINT).
- DIRECT: dropped. A table left with nothing but its person key (identifiers) is not
  published at all; its values feed the free-text deny list and the opt-out check.
- QUASI: generalised by an explicit rule below; a quasi-identifier without a rule
  stops ingest (fail closed).
- FREE_TEXT: scrubbed (or dropped with free_text="drop").
- date columns: shifted per person when date shifting is on.
- KEY, REF, CODE and NONE: kept as they are.

Each published column also says whether it is an identifier (`identifier`: person,
row with its `keyspace`, or code; sde.deid.rekey): provisioning re-keys person and
row keys per project. A published `*_id` column marked neither way stops ingest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sde.core.errors import SdeError
from sde.deid import rekey
from sde.deid.generalise import AGE_BAND_TOP, AGE_BAND_WIDTH, age_band_sql, outward_code_sql
from sde.synth.schema import POSTCODE_COLUMN, TABLES, Role, Table


@dataclass(frozen=True)
class OutColumn:
    name: str
    type: str  # DuckDB type of the published column
    sql: str  # expression over the source row `t` and the person mapping `k`
    description: str
    treatment: str  # kept, pseudonymised, generalised, scrubbed, shifted, derived
    identifier: str = ""  # person, row or code (sde.deid.rekey); "" for content
    keyspace: str = ""  # person, or the table whose row key this is

    def described(self) -> dict[str, str]:
        """The column as a manifest lists it."""
        entry = {
            "name": self.name,
            "type": self.type,
            "description": self.description,
            "treatment": self.treatment,
        }
        if self.identifier:
            entry["identifier"] = self.identifier
        if self.keyspace:
            entry["keyspace"] = self.keyspace
        return entry


@dataclass(frozen=True)
class OutTable:
    name: str
    description: str
    columns: list[OutColumn]
    person_key: str | None
    free_text: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # column -> why


DUCK = {"int64": "BIGINT", "float64": "DOUBLE", "string": "VARCHAR", "date": "DATE"}


def _quasi_rules(reference_year: int) -> dict[tuple[str, str], list[OutColumn] | str]:
    """(table, column) -> published columns, or the reason it is dropped."""
    return {
        ("person", "year_of_birth"): [
            OutColumn("year_of_birth", "BIGINT", "t.year_of_birth", "Year of birth.", "kept"),
            OutColumn(
                "age_band",
                "VARCHAR",
                age_band_sql("t.year_of_birth", reference_year),
                f"{AGE_BAND_WIDTH}-year age band of the age reached in {reference_year} "
                f"('{AGE_BAND_TOP}+' at the top).",
                "generalised",
            ),
        ],
        ("person", "month_of_birth"): "date of birth generalised to year of birth",
        ("person", "gender_source_value"): [
            OutColumn("sex", "VARCHAR", "t.gender_source_value", "Sex as recorded: M or F.", "kept")
        ],
        ("person", "ethnicity_source_value"): [
            OutColumn(
                "ethnicity",
                "VARCHAR",
                "t.ethnicity_source_value",
                "ONS 2021 high-level ethnic group.",
                "kept",
            )
        ],
    }


POSTCODE_DISTRICT = OutColumn(
    "postcode_district",
    "VARCHAR",
    outward_code_sql(f'i."{POSTCODE_COLUMN[1]}"'),
    "Outward code (postcode district) of the person's postcode; NULL where suppressed.",
    "generalised",
)


def build(reference_year: int, date_shift: bool, free_text: str) -> dict[str, OutTable]:
    """The published form of every source table that publishes anything."""
    out: dict[str, OutTable] = {}
    for table in TABLES.values():
        published = plan_table(table, reference_year, date_shift, free_text)
        if published is not None:
            out[table.name] = published
    return out


_MARKS = {
    Role.KEY: rekey.ROW,
    Role.REF: rekey.ROW,
    Role.CODE: rekey.CODE,
}


def plan_table(
    table: Table, reference_year: int, date_shift: bool, free_text: str
) -> OutTable | None:
    """The published form of one source table (None when nothing of it is published)."""
    rules = _quasi_rules(reference_year)
    cols: list[OutColumn] = []
    dropped: dict[str, str] = {}
    texts: list[str] = []
    for c in table.columns:
        if c.role is Role.PERSON_KEY:
            cols.append(
                OutColumn(
                    c.name,
                    "BIGINT",
                    "k.person_id",
                    "Pseudonymous person identifier (keyed HMAC-SHA256).",
                    "pseudonymised",
                    rekey.PERSON,
                    rekey.PERSON,
                )
            )
        elif c.role is Role.DIRECT:
            dropped[c.name] = "direct identifier"
        elif c.role is Role.QUASI:
            rule = rules.get((table.name, c.name))
            if rule is None:
                raise SdeError(
                    f"{table.name}.{c.name} is a quasi-identifier without a generalisation rule"
                )
            if isinstance(rule, str):
                dropped[c.name] = rule
            else:
                cols.extend(rule)
        elif c.role is Role.FREE_TEXT:
            if free_text == "drop":
                dropped[c.name] = "free text dropped (free_text=drop)"
            else:
                texts.append(c.name)
                cols.append(
                    OutColumn(
                        c.name,
                        "VARCHAR",
                        f't."{c.name}"',
                        (c.description or "Free text.") + " Identifiers replaced by [TYPE] tags.",
                        "scrubbed",
                    )
                )
        elif c.type == "date" and date_shift:
            cols.append(
                OutColumn(
                    c.name,
                    "DATE",
                    f't."{c.name}" + k.day_shift',
                    (c.description + " " if c.description else "")
                    + "Shifted by the person's own offset (intervals kept).",
                    "shifted",
                )
            )
        else:
            mark = _MARKS.get(c.role, "")
            keyspace = (c.references or table.name) if mark == rekey.ROW else ""
            cols.append(
                OutColumn(
                    c.name, DUCK[c.type], f't."{c.name}"', c.description, "kept", mark, keyspace
                )
            )
    if table.name == "person":
        cols.append(POSTCODE_DISTRICT)
    if all(col.treatment == "pseudonymised" for col in cols):
        return None
    rekey.marking(table.name, [col.described() for col in cols])  # fail closed on `*_id`
    return OutTable(table.name, table.description, cols, table.person_key, texts, dropped)
