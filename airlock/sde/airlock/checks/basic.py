"""The basic checks: is the file what its name says, small enough, a well-formed table.

They catch before submission what checkers most often reject for reasons a
machine can see (unsupported types, unparseable or oversized tables); the
disclosure checks of the next issue plug in beside them (`sde.airlock.checks`).
Each returns a passing finding when the file is fine, so the researcher sees
what was checked, not only what failed.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from sde.airlock.checks import CheckStatus, Finding, check
from sde.airlock.snapshots import MAGIC_BYTES, archive_kind
from sde.core.config import Settings
from sde.core.validators import parse_size

TEXT_TYPES = {"csv", "tsv", "txt", "log", "md", "json", "py", "r", "sql"}  # code comes in
IMAGE_MAGIC = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpg": (b"\xff\xd8\xff",),
    "jpeg": (b"\xff\xd8\xff",),
}
# Script in an SVG would run when a checker's page shows it inline.
_SVG_ACTIVE = re.compile(rb"<script|\bon[a-z]+\s*=|javascript:|<foreignObject", re.I)
MAX_LOCATIONS = 20  # a finding names at most this many places (a broken file has thousands)


def extension(name: str) -> str:
    leaf = name.rsplit("/", 1)[-1]
    return leaf.rsplit(".", 1)[1].lower() if "." in leaf else ""


def _utf8_problem(data: bytes) -> str | None:
    nul = data.find(b"\x00")
    if nul >= 0:
        return f"has a NUL byte at offset {nul}: binary, not text"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"is not UTF-8 text (byte {exc.start})"
    return None


@check("file_type", reads=("airlock.file_types",))
def file_type(path: Path, name: str, settings: Settings) -> list[Finding]:
    """The name's type is allowed and the content is of that type (by magic bytes)."""
    ext = extension(name)
    allowed = [t.lower() for t in settings.airlock.file_types]
    if ext not in allowed:
        shown = f".{ext}" if ext else "no extension"
        return [
            Finding(
                "file_type",
                CheckStatus.FAIL,
                f"type {shown} is not one the airlock takes ({', '.join(allowed)})",
            )
        ]
    with open(path, "rb") as fh:
        head = fh.read(MAGIC_BYTES)
    kind = archive_kind(head)
    if kind:
        return [Finding("file_type", CheckStatus.FAIL, f"the content is a {kind} archive")]
    problem: str | None = None
    if ext in IMAGE_MAGIC:
        if not head.startswith(IMAGE_MAGIC[ext]):
            problem = f"named .{ext} but the content is not a {ext.upper()} image"
    elif ext == "svg" or ext in TEXT_TYPES:
        data = path.read_bytes()
        problem = _utf8_problem(data)
        if problem:
            problem = f"named .{ext} but {problem}"
        elif ext == "json":
            try:
                json.loads(data)
            except ValueError as exc:
                problem = f"not valid JSON: {exc}"
        elif ext == "svg":
            if b"<svg" not in data[:4096].lower():
                problem = "named .svg but has no <svg> element"
            elif _SVG_ACTIVE.search(data):
                problem = "the SVG holds script or event handlers"
    if problem:
        return [Finding("file_type", CheckStatus.FAIL, problem)]
    return [Finding("file_type", CheckStatus.PASS, f"a .{ext} file whose content matches")]


@check("size", reads=("airlock.max_file_size",))
def size(path: Path, name: str, settings: Settings) -> list[Finding]:
    """At most airlock.max_file_size bytes."""
    found = path.stat().st_size
    limit = settings.airlock.max_file_size
    if found > parse_size(limit):
        return [Finding("size", CheckStatus.FAIL, f"{found} bytes, over the limit of {limit}")]
    return [Finding("size", CheckStatus.PASS, f"{found} bytes, within {limit}")]


@check("table_shape", reads=("airlock.max_csv_rows",))
def table_shape(path: Path, name: str, settings: Settings) -> list[Finding]:
    """A CSV/TSV parses, every row has the header's columns, at most airlock.max_csv_rows rows."""
    ext = extension(name)
    if ext not in {"csv", "tsv"}:
        return []
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [Finding("table_shape", CheckStatus.FAIL, f"not UTF-8 text (byte {exc.start})")]
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter="\t" if ext == "tsv" else ",", strict=True
    )
    header: list[str] | None = None
    ragged: list[str] = []
    ragged_count = 0
    rows = 0
    try:
        for record in reader:
            if header is None:
                header = record
                continue
            if not record:
                continue  # a blank line is not a row
            rows += 1
            if len(record) != len(header):
                ragged_count += 1
                if len(ragged) < MAX_LOCATIONS:
                    ragged.append(f"line {reader.line_num}")
    except csv.Error as exc:
        return [
            Finding(
                "table_shape",
                CheckStatus.FAIL,
                f"does not parse as {ext.upper()}: {exc}",
                [f"line {reader.line_num}"],
            )
        ]
    if header is None:
        return [Finding("table_shape", CheckStatus.FAIL, "an empty table (no header row)")]
    findings = []
    if ragged_count:
        findings.append(
            Finding(
                "table_shape",
                CheckStatus.FAIL,
                f"{ragged_count} row(s) do not have the header's {len(header)} columns",
                ragged,
            )
        )
    limit = settings.airlock.max_csv_rows
    if rows > limit:
        findings.append(
            Finding(
                "table_shape",
                CheckStatus.FAIL,
                f"{rows} rows, more than airlock.max_csv_rows ({limit})",
                [f"row {limit + 1}"],
            )
        )
    if not findings:
        findings.append(
            Finding(
                "table_shape",
                CheckStatus.PASS,
                f"{rows} rows of {len(header)} columns, within {limit} rows",
            )
        )
    return findings
