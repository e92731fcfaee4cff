"""No published Parquet file, dataset version or project data, holds a source identifier.

Every identifier the generator planted in free text (`_truth/planted.jsonl`) and
every value of `identifiers.csv` (NHS number, name, postcode, address, phone,
email) is searched for, case-insensitively on word boundaries, in every string
cell of every Parquet file; NHS numbers also in every integer and float cell.
Single given or family names are searched in free text only: structured columns
hold fixed vocabularies where a surname such as "White" is also an ethnic group.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import ahocorasick
import pyarrow as pa
import pyarrow.parquet as pq

from sde.core.db import transaction
from sde.ingest.pipeline import IngestOptions, ingest
from sde.provision.build import provision
from sde.registry import service
from tests.support.registry import ACTOR, make_active_project, make_person


def _automaton(terms: set[str]) -> ahocorasick.Automaton:
    a = ahocorasick.Automaton()
    for t in terms:
        a.add_word(t, t)
    a.make_automaton()
    return a


def _hits(automaton: ahocorasick.Automaton, text: str) -> list[str]:
    low = text.lower()
    found = []
    for end, term in automaton.iter(low):
        start = end - len(term) + 1
        if start > 0 and low[start - 1].isalnum():
            continue
        if end + 1 < len(low) and low[end + 1].isalnum():
            continue
        found.append(term)
    return found


def _identifiers(source: Path) -> tuple[set[str], set[str], set[int]]:
    """(terms for every column, extra terms for free text, NHS numbers as integers)."""
    everywhere: set[str] = set()
    free: set[str] = set()
    numbers: set[int] = set()
    with open(source / "identifiers.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            n = r["nhs_number"]
            numbers.add(int(n))
            everywhere |= {
                n,
                f"{n[:3]} {n[3:6]} {n[6:]}",
                f"{r['given_name']} {r['family_name']}",
                r["postcode"],
                r["address"],
                r["phone"],
                r["email"],
            }
            free |= {r["given_name"], r["family_name"]}
    with open(source / "person.csv", newline="", encoding="utf-8") as f:
        everywhere |= {r["person_source_value"] for r in csv.DictReader(f)}
    with open(source / "_truth" / "planted.jsonl", encoding="utf-8") as f:
        free |= {json.loads(line)["text"] for line in f}
    low = {t.lower() for t in everywhere if t}
    return low, low | {t.lower() for t in free if t}, numbers


def scan(roots: list[Path], source: Path) -> tuple[int, list[str]]:
    everywhere, free, numbers = _identifiers(source)
    a_all, a_free = _automaton(everywhere), _automaton(free)
    files = 0
    leaks: list[str] = []
    for root in roots:
        for path in sorted(root.rglob("*.parquet")):
            files += 1
            table = pq.read_table(path)
            for name in table.column_names:
                col = table.column(name)
                if pa.types.is_string(col.type):
                    automaton = a_free if name.endswith("_text") else a_all
                    for value in col.to_pylist():
                        if value and (hit := _hits(automaton, value)):
                            leaks.append(f"{path.name}:{name}: {hit[0]!r}")
                elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
                    leaks += [
                        f"{path.name}:{name}: an NHS number"
                        for v in col.to_pylist()
                        if v is not None and v == int(v) and int(v) in numbers
                    ]
    return files, leaks


def test_ingest_no_identifiers_in_any_published_parquet(data_settings, engine, synthetic_source):
    result = ingest(
        data_settings,
        engine,
        synthetic_source,
        "ehr",
        ACTOR,
        IngestOptions(reference_year=2025, date_shift_days=10),
    )
    make_person(engine, "alice")
    make_active_project(engine, "p1", "alice")
    with transaction(engine) as s:
        service.grant_access(
            s,
            ACTOR,
            slug="p1",
            dataset="ehr",
            version=None,
            columns=[f"{t}.*" for t in result.manifest["tables"]],
        )
    provision(data_settings, engine, "p1", ACTOR)
    files, leaks = scan([data_settings.datasets_dir, data_settings.projects_dir], synthetic_source)
    assert files >= 2 * len(result.manifest["tables"])
    assert leaks == []


def test_ingest_no_identifiers_scan_detects_a_planted_leak(tmp_path, synthetic_source):
    """The scan itself can fail: an NHS number and a name in a file are found."""
    with open(synthetic_source / "identifiers.csv", newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    pq.write_table(
        pa.table(
            {
                "note_text": [f"seen {row['family_name']} today"],
                "code": [int(row["nhs_number"])],
            }
        ),
        tmp_path / "leak.parquet",
    )
    files, leaks = scan([tmp_path], synthetic_source)
    assert files == 1
    assert len(leaks) == 2
