"""Free-text scrubbing: our batched Scrubber vs naive per-cell presidio, on the same notes.

Generates a synthetic source (`sde synth`), then times on the same note cells:

- naive: `AnalyzerEngine.analyze()` once per cell with presidio's default offline
  registry (no_op NLP engine) plus its UK postcode and NINO recognizers;
- same-registry: `AnalyzerEngine.analyze()` once per cell with our recognizers (shows
  how much is batching rather than fewer recognizers);
- ours: `Scrubber(deny_terms).scrub_many(cells)`.

Recall is measured on every planted identifier (`_truth/planted.jsonl`): a planted
item counts as found when none of its letters or digits survive. The last line is
JSON: ours_cells_per_s, naive_cells_per_s, ratio, target, recall, misses.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""

import pyarrow.csv as pacsv
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_analyzer.nlp_engine import NlpEngineProvider
from presidio_analyzer.predefined_recognizers import (
    UkNinoRecognizer,
    UkPostcodeRecognizer,
)

from sde.deid.recognizers import uk_recognizers
from sde.deid.scrub import Found, Scrubber, identifier_terms
from sde.synth.schema import PLANTED_FILE, TABLES, TRUTH_DIR, csv_options
from sde.synth.write import synthesize

TARGET = 20.0


def _engine(registry: RecognizerRegistry | None) -> AnalyzerEngine:
    nlp = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "no_op",
            "models": [{"lang_code": "en", "model_name": "no_op"}],
        }
    ).create_engine()
    if registry is None:
        registry = RecognizerRegistry()
        registry.load_predefined_recognizers(nlp_engine=nlp)
        registry.add_recognizer(UkPostcodeRecognizer())
        registry.add_recognizer(UkNinoRecognizer())
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])


def _read(source: Path, name: str) -> list[dict]:
    parse, convert = csv_options(TABLES[name])
    path = source / TABLES[name].file_name
    return pacsv.read_csv(path, parse_options=parse, convert_options=convert).to_pylist()


def _per_cell(engine: AnalyzerEngine, cells: list[str]) -> tuple[float, list[list[Found]]]:
    started = time.perf_counter()
    found = [
        [Found(r.start, r.end, r.entity_type) for r in engine.analyze(text=c, language="en")]
        for c in cells
    ]
    return time.perf_counter() - started, found


def _recall(planted: list[dict], found: dict[int, list[Found]], texts: dict[int, str]) -> list:
    misses = []
    for p in planted:
        note_id = p["key"]["note_id"]
        if note_id not in found:
            continue
        covered: set[int] = set()
        for f in found[note_id]:
            covered.update(range(f.start, f.end))
        text = texts[note_id][p["start"] : p["end"]]
        if any(ch.isalnum() and p["start"] + i not in covered for i, ch in enumerate(text)):
            misses.append(p)
    return misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run (under a minute)")
    parser.add_argument("--persons", type=int, help="synthetic persons (default 5000, quick 1500)")
    parser.add_argument("--naive-cells", type=int, help="cells for the per-cell runs")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    persons = args.persons or (1500 if args.quick else 5000)
    naive_cells = args.naive_cells or (300 if args.quick else 1000)
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        synthesize(persons, source, seed=args.seed)
        notes = _read(source, "notes")
        identifiers = _read(source, "identifiers")
        planted = [
            json.loads(line)
            for line in (source / TRUTH_DIR / PLANTED_FILE).read_text("utf-8").splitlines()
        ]

    ids = [n["note_id"] for n in notes]
    cells = [n["note_text"] for n in notes]
    texts = dict(zip(ids, cells, strict=True))
    sample = cells[:naive_cells]

    started = time.perf_counter()
    scrubber = Scrubber(t for row in identifiers for t in identifier_terms(row))
    build_s = time.perf_counter() - started

    # Warm up before any timing: tldextract loads its suffix list on the first email,
    # and the scrubber picks its regex engines on its first large buffer.
    scrubber.scrub_many(cells[-600:])
    started = time.perf_counter()
    scrubber.scrub_many(sample)
    ours_sample_s = time.perf_counter() - started
    started = time.perf_counter()
    _, counts = scrubber.scrub_many(cells)
    ours_all_s = time.perf_counter() - started
    ours_found = dict(zip(ids, scrubber.find_many(cells), strict=True))

    naive_s, naive_found = _per_cell(_engine(None), sample)
    same = RecognizerRegistry(recognizers=uk_recognizers())
    same_s, _ = _per_cell(_engine(same), sample)

    misses = _recall(planted, ours_found, texts)
    naive_misses = _recall(planted, dict(zip(ids, naive_found, strict=False)), texts)
    naive_planted = sum(1 for p in planted if p["key"]["note_id"] in set(ids[:naive_cells]))

    ours_rate = len(sample) / ours_sample_s
    naive_rate = len(sample) / naive_s
    same_rate = len(sample) / same_s
    ratio = ours_rate / naive_rate
    recall = 1 - len(misses) / len(planted)

    print(f"source: {persons} persons, {len(cells)} notes, {len(planted)} planted identifiers")
    print(f"deny list: {scrubber.deny.size} terms, built in {build_s:.2f} s")
    print(f"{'run':<34}{'cells':>8}{'seconds':>10}{'cells/s':>12}")
    for label, count, seconds in (
        ("naive per-cell, default registry", len(sample), naive_s),
        ("naive per-cell, our registry", len(sample), same_s),
        ("ours (same cells)", len(sample), ours_sample_s),
        ("ours (all notes)", len(cells), ours_all_s),
    ):
        print(f"{label:<34}{count:>8}{seconds:>10.2f}{count / seconds:>12,.0f}")
    print(
        f"speedup vs naive: {ratio:.1f}x (target {TARGET:.0f}x); vs our registry per cell: "
        f"{ours_rate / same_rate:.1f}x"
    )
    print(f"tags written: {counts}")
    print(f"recall ours: {recall:.4f} ({len(planted) - len(misses)}/{len(planted)})")
    print(
        f"recall naive on its sample: {1 - len(naive_misses) / max(naive_planted, 1):.4f}"
        " (no name detection without a model)"
    )
    for p in misses[:20]:
        print(f"  MISS {p['entity']} {p['text']!r} in note {p['key']['note_id']}")
    print(
        json.dumps(
            {
                "ours_cells_per_s": round(ours_rate, 1),
                "naive_cells_per_s": round(naive_rate, 1),
                "ratio": round(ratio, 1),
                "target": TARGET,
                "recall": round(recall, 6),
                "misses": len(misses),
                "same_registry_cells_per_s": round(same_rate, 1),
                "ours_all_cells_per_s": round(len(cells) / ours_all_s, 1),
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
