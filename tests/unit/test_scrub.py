"""The free-text scrubber: recall on planted identifiers, precision on clinical prose,
presidio's validation kept, batching equivalent to per-cell presidio."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.csv as pacsv
import pytest
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_analyzer.nlp_engine import NlpEngineProvider

from sde.deid.recognizers import uk_recognizers
from sde.deid.scrub import Found, Scrubber, classify, date_variants, identifier_terms
from sde.synth import vocab
from sde.synth.schema import PLANTED_FILE, TABLES, TRUTH_DIR, csv_options
from sde.synth.write import synthesize


def _read(source: Path, name: str) -> list[dict]:
    parse, convert = csv_options(TABLES[name])
    path = source / TABLES[name].file_name
    return pacsv.read_csv(path, parse_options=parse, convert_options=convert).to_pylist()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict:
    source = tmp_path_factory.mktemp("scrub") / "source"
    synthesize(600, source, seed=21)
    notes = _read(source, "notes")
    identifiers = _read(source, "identifiers")
    planted = [
        json.loads(line)
        for line in (source / TRUTH_DIR / PLANTED_FILE).read_text("utf-8").splitlines()
    ]
    scrubber = Scrubber(t for row in identifiers for t in identifier_terms(row))
    texts = [n["note_text"] for n in notes]
    return {
        "texts": texts,
        "ids": [n["note_id"] for n in notes],
        "planted": planted,
        "scrubber": scrubber,
        "found": scrubber.find_many(texts),
        "scrubbed": scrubber.scrub_many(texts),
    }


def _covered(spans: list[Found]) -> set[int]:
    return {i for f in spans for i in range(f.start, f.end)}


def test_scrub_recall_is_complete_on_planted_identifiers(sample: dict) -> None:
    index = {note_id: i for i, note_id in enumerate(sample["ids"])}
    misses = []
    for p in sample["planted"]:
        i = index[p["key"]["note_id"]]
        covered = _covered(sample["found"][i])
        if any(c.isalnum() and p["start"] + k not in covered for k, c in enumerate(p["text"])):
            misses.append((p["entity"], p["text"]))
    assert len(sample["planted"]) > 3000
    assert misses == []


def test_scrub_output_keeps_no_planted_text(sample: dict) -> None:
    scrubbed, counts = sample["scrubbed"]
    index = {note_id: i for i, note_id in enumerate(sample["ids"])}
    for p in sample["planted"]:
        text = scrubbed[index[p["key"]["note_id"]]]
        if len(p["text"]) >= 4:
            assert p["text"] not in text, p
    for tag in ("NHS_NUMBER", "PERSON", "DATE", "POSTCODE", "PHONE", "EMAIL", "ADDRESS"):
        assert counts[tag] > 0
        assert any(f"[{tag}]" in t for t in scrubbed)


def test_scrub_preserves_clinical_text(sample: dict) -> None:
    scrubbed, _ = sample["scrubbed"]
    drugs = {d.name for c in vocab.CONDITIONS for d in c.drugs}
    conditions = {c.name for c in vocab.CONDITIONS}
    for original, clean in zip(sample["texts"], scrubbed, strict=True):
        for term in drugs | conditions:
            if term in original:
                assert term in clean, (term, clean)
        for reading in re.findall(r"(?:mmHg|mmol/L|mmol/mol|kg/m2)", original):
            assert reading in clean
        for value in re.findall(r"\b\d+(?:\.\d+)? (?:mmHg|mmol/L|mmol/mol|kg/m2)", original):
            assert value in clean, (value, clean)
    # Outside planted identifiers, almost nothing is redacted.
    index = {note_id: i for i, note_id in enumerate(sample["ids"])}
    planted_chars: dict[int, set[int]] = {}
    for p in sample["planted"]:
        planted_chars.setdefault(index[p["key"]["note_id"]], set()).update(
            range(p["start"], p["end"])
        )
    extra = total = 0
    for i, text in enumerate(sample["texts"]):
        mine = planted_chars.get(i, set())
        covered = _covered(sample["found"][i])
        clinical = [k for k, c in enumerate(text) if k not in mine and c.isalnum()]
        total += len(clinical)
        extra += sum(1 for k in clinical if k in covered)
    assert extra / total < 0.02, extra / total


def test_scrub_keeps_presidio_checksum_validation() -> None:
    scrubber = Scrubber()
    (valid, invalid), counts = scrubber.scrub_many(
        ["NHS number 401 023 2137 on file.", "Lab ref 401 023 2138 on file."]
    )
    assert valid == "NHS number [NHS_NUMBER] on file."
    assert invalid == "Lab ref 401 023 2138 on file."
    assert counts == {"NHS_NUMBER": 1}


def test_scrub_deny_list_is_case_insensitive_on_word_boundaries() -> None:
    scrubber = Scrubber(["Pemberton", ("Acacia Road", "ADDRESS")])
    out, counts = scrubber.scrub_many(
        ["PEMBERTON seen; Pembertonshire clinic; lives on acacia road.", None, "no match here"]
    )
    assert out == [
        "[PERSON] seen; Pembertonshire clinic; lives on [ADDRESS].",
        None,
        "no match here",
    ]
    assert counts == {"PERSON": 1, "ADDRESS": 1}


def test_scrub_short_names_match_only_as_names() -> None:
    scrubber = Scrubber(["Li", ("ng", "PERSON"), "X", "7"])
    out, counts = scrubber.scrub_many(["Mr Li and Ms Ng; li-ion battery; ED ng; X 7 X"])
    assert out == ["Mr [PERSON] and Ms [PERSON]; li-ion battery; ED [PERSON]; X 7 X"]
    assert counts == {"PERSON": 3}


def test_scrub_tags_each_kind_and_joins_names() -> None:
    text = (
        "Mrs Jane Pemberton, DOB 3rd March 1951, NHS 9434765919, LS6 2AB, "
        "tel +44 7700 900123, jane.p@gmail.com, NI number AB 12 34 56 C. "
        "Seen with her daughter Keeley Ashworth; Dr Quaresma reviewed. HbA1c 53 mmol/mol."
    )
    (out,), counts = Scrubber(["Jane", "Pemberton"]).scrub_many([text])
    assert out == (
        "Mrs [PERSON], DOB [DATE], NHS [NHS_NUMBER], [POSTCODE], "
        "tel [PHONE], [EMAIL], NI number [NINO]. "
        "Seen with her daughter [PERSON]; Dr [PERSON] reviewed. HbA1c 53 mmol/mol."
    )
    assert counts["PERSON"] == 3


def test_scrub_repeated_cells_are_scrubbed_alike() -> None:
    cells = ["Call 0113 496 0123 today."] * 3 + ["Call 0113 496 0123 today!"]
    out, counts = Scrubber().scrub_many(cells)
    assert out[:3] == ["Call [PHONE] today."] * 3
    assert out[3] == "Call [PHONE] today!"
    assert counts == {"PHONE": 4}


def test_scrub_cell_with_nul_is_scrubbed_on_its_own() -> None:
    cells = ["Dr Quaresma\x00 called 07700 900123", "Email jo@gmail.com"]
    out, _ = Scrubber().scrub_many(cells)
    assert out == ["Dr [PERSON]\x00 called [PHONE]", "Email [EMAIL]"]


def test_scrub_batches_find_what_presidio_finds_per_cell(sample: dict) -> None:
    nlp = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "no_op",
            "models": [{"lang_code": "en", "model_name": "no_op"}],
        }
    ).create_engine()
    engine = AnalyzerEngine(
        registry=RecognizerRegistry(recognizers=uk_recognizers()),
        nlp_engine=nlp,
        supported_languages=["en"],
    )
    cells = sample["texts"][:150]
    presidio = Scrubber()  # no deny list: presidio's recognizers only, presidio's engine
    stdlib = Scrubber()
    twins = 0
    for c in stdlib._compiled:  # every pattern the stdlib `re` can run, whatever is faster
        if c.stdlib is not None:
            c.pattern, twins = c.stdlib, twins + 1
    stdlib._calibrated = True
    assert twins >= 5
    for scrubber in (presidio, stdlib):
        for cell, spans in zip(cells, scrubber.find_many(cells), strict=True):
            per_cell = {
                i for r in engine.analyze(text=cell, language="en") for i in range(r.start, r.end)
            }
            assert _covered(spans) == per_cell, cell


def test_scrub_identifier_terms_and_classification() -> None:
    row = {
        "given_name": "Keeley",
        "family_name": "Ashworth",
        "nhs_number": "9434765919",
        "date_of_birth": "1951-03-03",
        "postcode": "LS6 2AB",
        "address": "12 Acacia Road, Leeds",
        "phone": "0113 496 0123",
        "email": None,
    }
    slim = dict(identifier_terms(row))
    assert slim["9434765919"] == "NHS_NUMBER" and "943 476 5919" not in slim
    terms = dict(identifier_terms(row, all_formats=True))
    assert terms["943 476 5919"] == "NHS_NUMBER"
    assert terms["3rd March 1951"] == "DATE" and "03/03/1951" in date_variants_of(row)
    assert terms["LS62AB"] == "POSTCODE"
    assert terms["12 Acacia Road"] == "ADDRESS"
    assert terms["+44 113 496 0123"] == "PHONE"
    assert [classify(t) for t in ("a@b.co.uk", "LS6 2AB", "9434765919", "07700 900123")] == [
        "EMAIL",
        "POSTCODE",
        "NHS_NUMBER",
        "PHONE",
    ]
    assert classify("12 Acacia Road") == "ADDRESS" and classify("Ashworth") == "PERSON"


def date_variants_of(row: dict) -> list[str]:
    from datetime import date

    return date_variants(date.fromisoformat(row["date_of_birth"]))
