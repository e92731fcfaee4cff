"""Generalisation rules for quasi-identifiers, as DuckDB SQL expressions and Python checks.

Each rule is the single definition used by ingest; the manifest names them so that
a reader knows exactly what was done.
"""

from __future__ import annotations

import re

AGE_BAND_WIDTH = 5
# Everyone this old or older shares one top band: a few very old people would
# otherwise each form a class of their own.
AGE_BAND_TOP = 90

_NHS_RE = re.compile(r"^\d{10}$")


def nhs_number_valid(value: str) -> bool:
    """10 digits whose mod-11 check digit is right (NHS Data Dictionary)."""
    if not _NHS_RE.match(value):
        return False
    total = sum(int(d) * w for d, w in zip(value[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(value[9])


def normalise_nhs_number(value: str) -> str:
    """Digits only: '943 476 5919' and '943-476-5919' are the same number."""
    return re.sub(r"[\s-]", "", value.strip())


def nhs_number_invalid_sql(col: str) -> str:
    """True when `col` (VARCHAR) is not a valid NHS number; NULL counts as invalid."""
    digits = [f"TRY_CAST(substr({col}, {i + 1}, 1) AS INTEGER)" for i in range(10)]
    weighted = " + ".join(f"{d} * {10 - i}" for i, d in enumerate(digits[:9]))
    check = f"(11 - (({weighted}) % 11)) % 11"
    return (
        f"({col} IS NULL OR NOT regexp_full_match({col}, '[0-9]{{10}}') "
        f"OR ({check}) = 10 OR ({check}) <> {digits[9]})"
    )


def age_band_sql(year_col: str, reference_year: int) -> str:
    """5-year band of the age reached in `reference_year`, e.g. '40-44'; top band '90+'."""
    age = f"({reference_year} - {year_col})"
    low = f"(least({age}, {AGE_BAND_TOP}) // {AGE_BAND_WIDTH}) * {AGE_BAND_WIDTH}"
    return (
        f"CASE WHEN {year_col} IS NULL THEN NULL "
        f"WHEN {age} >= {AGE_BAND_TOP} THEN '{AGE_BAND_TOP}+' "
        f"WHEN {age} < 0 THEN 'unknown' "
        f"ELSE CAST({low} AS VARCHAR) || '-' || CAST({low} + {AGE_BAND_WIDTH - 1} AS VARCHAR) END"
    )


def outward_code_sql(postcode_col: str) -> str:
    """The outward code (postcode district) of a full UK postcode: 'LE1 7WW' -> 'LE1'."""
    squeezed = f"upper(replace({postcode_col}, ' ', ''))"
    # The inward code is always the last three characters.
    return f"CASE WHEN length({squeezed}) >= 5 THEN left({squeezed}, length({squeezed}) - 3) END"


POSTCODE_RE = r"\b[A-Z]{1,2}[0-9][0-9A-Z]? ?[0-9][A-Z]{2}\b"
EMAIL_RE = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
NHS_LIKE_RE = r"\b[0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{4}\b"
