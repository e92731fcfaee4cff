"""Free-text scrubbing: replace identifiers in notes with tags such as `[NHS_NUMBER]`.

Two detectors run together:

- presidio's pattern recognizers (NHS number with its checksum, postcode, NINO,
  email, dates) plus the UK ones in `sde.deid.recognizers` (phone, written dates,
  titled and relational names). presidio runs offline with no NLP model, so there is
  no statistical name detection.
- a deny list of the source's own identifiers (names, NHS numbers, postcodes,
  phones, emails, addresses, dates of birth), matched case-insensitively on word
  boundaries by one Aho-Corasick automaton.

Speed: calling presidio once per cell pays its per-call overhead millions of times.
`Scrubber` dedupes the cells, joins them into large buffers with a separator no
pattern can cross, runs every recognizer once per buffer and maps the hits back
to their cells.
"""

from __future__ import annotations

import calendar
import re
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple, cast

import ahocorasick
import regex
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer
from presidio_analyzer.nlp_engine import NlpArtifacts

from sde.deid.recognizers import TAGS, uk_recognizers

# No recognizer pattern matches NUL or spans a line break followed by NUL, so a hit
# can never run from one cell into the next.
SEPARATOR = "\n\x00\n"
BATCH_CHARS = 1_000_000
# Engine timings on less text than this are too noisy to choose by.
CALIBRATE_CHARS = 200_000
# When spans overlap, the merged span takes the tag of the longest; ties go to the
# earlier tag in this list.
TAG_PRIORITY = ("NHS_NUMBER", "EMAIL", "PHONE", "NINO", "POSTCODE", "DATE", "ADDRESS", "PERSON")

# A separator or an English month name (calendar's names follow LC_TIME, which sde
# never sets: the C locale's English).
_DATE_MARK = re.compile(r"[/.\-]|" + "|".join(calendar.month_name[1:]))
_POSTCODE = re.compile(r"^[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}$", re.IGNORECASE)
_PHONE_OR_NUMBER = re.compile(r"^[\d\s\-+()]+$")


class Found(NamedTuple):
    start: int
    end: int
    tag: str


# ------------------------------------------------------------------ deny terms


def nhs_valid(digits: str) -> bool:
    if len(digits) != 10 or not digits.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    return (0 if check == 11 else check) == int(digits[9])


def classify(term: str) -> str:
    """The tag of an untyped deny-list term."""
    digits = re.sub(r"\D", "", term)
    if "@" in term:
        return "EMAIL"
    if _POSTCODE.match(term.strip()):
        return "POSTCODE"
    if _PHONE_OR_NUMBER.match(term) and len(digits) >= 9:
        return "NHS_NUMBER" if nhs_valid(digits) else "PHONE"
    if any(c.isdigit() for c in term):
        if re.search(r"\d{4}", term) and _DATE_MARK.search(term):
            return "DATE"
        return "ADDRESS"
    return "PERSON"


def date_variants(d: date) -> list[str]:
    """The ways a date of birth is commonly written in UK notes."""
    month = calendar.month_name[d.month]
    suffix = "th" if 11 <= d.day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d.day % 10, "th")
    return [
        f"{d.day:02d}/{d.month:02d}/{d.year}",
        f"{d.day}/{d.month}/{d.year}",
        f"{d.day:02d}-{d.month:02d}-{d.year}",
        f"{d.day:02d}.{d.month:02d}.{d.year}",
        d.isoformat(),
        f"{d.day} {month} {d.year}",
        f"{d.day} {month[:3]} {d.year}",
        f"{d.day}{suffix} {month} {d.year}",
        f"{month} {d.day}, {d.year}",
    ]


def _digit_variants(text: str, tag: str) -> list[str]:
    digits = re.sub(r"\D", "", text)
    out = [text, digits]
    if tag == "NHS_NUMBER" and len(digits) == 10:
        out += [
            f"{digits[:3]} {digits[3:6]} {digits[6:]}",
            f"{digits[:3]}-{digits[3:6]}-{digits[6:]}",
        ]
    if tag == "PHONE" and digits.startswith("0"):
        rest = text.strip()[1:]
        out += ["+44 " + rest, "+44" + digits[1:], "+44 (0)" + rest]
        area, _, local = text.strip().partition(" ")
        if local:
            out.append(f"({area}) {local}")
    return out


def identifier_terms(row: Mapping[str, object], all_formats: bool = False) -> list[tuple[str, str]]:
    """Typed deny terms (text, tag) from one row shaped like the source's `identifiers` table.

    By default only the forms the recognizers cannot be relied on for: names,
    addresses, and each identifier as recorded (an NHS number with a bad check digit,
    say). Reformatted NHS numbers, phones, postcodes and dates are the recognizers'
    job; `all_formats=True` adds them to the deny list too, at about three times the
    memory (a deny list costs roughly 1 GB per 100,000 people with all formats).
    """
    terms: list[tuple[str, str]] = []
    for key in ("given_name", "family_name"):
        if row.get(key):
            terms.append((str(row[key]), "PERSON"))
    nhs = row.get("nhs_number")
    if nhs:
        forms = _digit_variants(str(nhs), "NHS_NUMBER") if all_formats else [str(nhs)]
        terms += [(v, "NHS_NUMBER") for v in forms]
    dob = row.get("date_of_birth")
    if isinstance(dob, str) and dob:
        dob = date.fromisoformat(dob)
    if isinstance(dob, date):
        # Dates of birth repeat across people, so every format costs little.
        terms += [(v, "DATE") for v in date_variants(dob)]
    postcode = row.get("postcode")
    if postcode:
        terms.append((str(postcode), "POSTCODE"))
        if all_formats:
            terms.append((str(postcode).replace(" ", ""), "POSTCODE"))
    address = row.get("address")
    if address:
        terms += [(str(address), "ADDRESS"), (str(address).partition(",")[0], "ADDRESS")]
    phone = row.get("phone")
    if phone:
        forms = _digit_variants(str(phone), "PHONE") if all_formats else [str(phone)]
        terms += [(v, "PHONE") for v in forms]
    if row.get("email"):
        terms.append((str(row["email"]), "EMAIL"))
    return terms


class DenyList:
    """Exact terms matched case-insensitively on word boundaries (one Aho-Corasick pass).

    Terms of one or two characters would redact ordinary words, so single characters
    are dropped and two-letter names (Li, Ng, Wu) are matched only as written or
    capitalised ("Li", not "li").
    """

    def __init__(self, terms: Iterable[str | tuple[str, str]]) -> None:
        self._automaton = ahocorasick.Automaton()
        short: dict[str, str] = {}
        for term in terms:
            text, tag = (term, classify(term)) if isinstance(term, str) else term
            text = text.strip()
            if len(text) < 3:
                if len(text) == 2 and text.isalpha():
                    short[text] = short[text.capitalize()] = tag
                continue
            key = text.lower()
            self._automaton.add_word(key, (len(key), tag))
        self.size = len(self._automaton) + len(short)
        if len(self._automaton):
            self._automaton.make_automaton()
        self._short_tags = short
        self._short = (
            re.compile(r"(?<!\w)(?:" + "|".join(sorted(short)) + r")(?!\w)") if short else None
        )

    def find(self, text: str, lowered: str) -> list[Found]:
        """Hits in `text`; `lowered` is `text` lower-cased with the same offsets."""
        found = []
        if self._short is not None:
            for match in self._short.finditer(text):
                found.append(Found(match.start(), match.end(), self._short_tags[match.group()]))
        if not len(self._automaton):
            return found
        last = len(lowered)
        for end_index, (length, tag) in self._automaton.iter(lowered):
            start, end = end_index - length + 1, end_index + 1
            if start > 0 and lowered[start - 1].isalnum():
                continue
            if end < last and lowered[end].isalnum():
                continue
            found.append(Found(start, end, tag))
        return found


def _lower(text: str) -> str:
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    # A few characters (e.g. dotted capital I) lower to two: keep offsets aligned.
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


# ------------------------------------------------------------------ scrubber


def merge(found: Iterable[Found], text: str) -> list[Found]:
    """Overlapping spans become one; same-tag spans split only by spaces join up."""
    rank = {tag: i for i, tag in enumerate(TAG_PRIORITY)}
    spans = sorted(found, key=lambda f: (f.start, -f.end))
    merged: list[Found] = []
    best_len: list[int] = []
    for f in spans:
        if merged:
            last = merged[-1]
            gap = text[last.end : f.start]
            if f.start < last.end or (f.tag == last.tag and gap.isspace()):
                length = f.end - f.start
                tag = last.tag
                if length > best_len[-1] or (
                    length == best_len[-1] and rank.get(f.tag, 99) < rank.get(last.tag, 99)
                ):
                    tag, best_len[-1] = f.tag, length
                merged[-1] = Found(last.start, max(last.end, f.end), tag)
                continue
        merged.append(f)
        best_len.append(f.end - f.start)
    return merged


@dataclass
class _Compiled:
    recognizer: PatternRecognizer
    pattern: regex.Pattern[str] | re.Pattern[str]
    score: float
    tag: str
    needs: str | None
    # The same pattern under the stdlib engine, when it compiles there (see _calibrate).
    stdlib: re.Pattern[str] | None


def _stdlib_twin(pattern: str, flags: int) -> re.Pattern[str] | None:
    re_flags = 0
    for ours, theirs in (
        (regex.IGNORECASE, re.IGNORECASE),
        (regex.MULTILINE, re.MULTILINE),
        (regex.DOTALL, re.DOTALL),
    ):
        if flags & ours:
            re_flags |= theirs
    try:
        return re.compile(pattern, re_flags)
    except re.error:  # variable-width lookbehind, scoped flags...: `regex` only
        return None


# Cells without this character cannot hold a hit, so the recognizer skips them.
_NEEDS = {"EMAIL_ADDRESS": "@"}


class Scrubber:
    """Find and replace identifiers in many cells of free text at once.

    Hits are exactly presidio's: each PatternRecognizer's own patterns, compiled with
    its flags, scored and then confirmed or rejected by its `validate_result` and
    `invalidate_result` (the NHS checksum, the email public suffix...). What is
    skipped is presidio's per-call machinery (explanations, timing, context words),
    which is where a per-cell `AnalyzerEngine.analyze()` spends its time.
    """

    def __init__(self, deny_terms: Iterable[str | tuple[str, str]] | None = None) -> None:
        self.recognizers = uk_recognizers()
        self.deny = DenyList(deny_terms or [])
        self._compiled: list[_Compiled] = []
        self._calibrated = False
        self._other: list[EntityRecognizer] = []
        for recognizer in self.recognizers:
            if not isinstance(recognizer, PatternRecognizer) or recognizer.deny_list:
                self._other.append(recognizer)
                continue
            entity = recognizer.supported_entities[0]
            patterns: list[Pattern] = recognizer.patterns  # type: ignore[has-type]
            for pattern in patterns:
                self._compiled.append(
                    _Compiled(
                        recognizer,
                        regex.compile(pattern.regex, recognizer.global_regex_flags or 0),
                        pattern.score,
                        TAGS[entity],
                        _NEEDS.get(entity),
                        _stdlib_twin(pattern.regex, recognizer.global_regex_flags or 0),
                    )
                )

    def _analyze(
        self, buffer: str, starts: Sequence[int] = (0,), cells: Sequence[str] | None = None
    ) -> list[Found]:
        """Hits in `buffer`, which holds `cells` at offsets `starts` (or is one cell)."""
        cells = cells if cells is not None else [buffer]
        found: list[Found] = []
        for c in self._compiled:
            if c.needs is None:
                self._scan(c, buffer, 0, found)
                continue
            for offset, cell in zip(starts, cells, strict=True):
                if c.needs in cell:
                    self._scan(c, cell, offset, found)
        for recognizer in self._other:
            # Pattern-free recognizers here need no NLP artifacts (there is no model).
            no_nlp = cast(NlpArtifacts, None)
            for result in recognizer.analyze(buffer, recognizer.supported_entities, no_nlp):
                found.append(Found(result.start, result.end, TAGS[result.entity_type]))
        found.extend(self.deny.find(buffer, _lower(buffer)))
        return found

    def _calibrate(self, buffer: str) -> None:
        """Per pattern, keep the faster of `regex` (presidio's engine) and the stdlib `re`.

        The two engines scan at very different speeds depending on the pattern. The
        stdlib twin is only adopted when it finds exactly the same spans on this buffer.
        """
        for c in self._compiled:
            if c.stdlib is None:
                continue
            started = time.perf_counter()
            theirs = [m.span() for m in c.pattern.finditer(buffer)]
            middle = time.perf_counter()
            mine = [m.span() for m in c.stdlib.finditer(buffer)]
            if mine == theirs and time.perf_counter() - middle < middle - started:
                c.pattern = c.stdlib
        self._calibrated = True

    @staticmethod
    def _scan(c: _Compiled, text: str, offset: int, found: list[Found]) -> None:
        for match in c.pattern.finditer(text):
            start, end = match.span()
            if start == end:
                continue
            hit = text[start:end]
            score = c.score
            valid = c.recognizer.validate_result(hit)
            if valid is not None:
                score = 1.0 if valid else 0.0
            if c.recognizer.invalidate_result(hit):
                score = 0.0
            if score > 0:
                found.append(Found(start + offset, end + offset, c.tag))

    def find_many(self, texts: Sequence[str | None]) -> list[list[Found]]:
        """Spans (start, end, tag) of identifiers in each text, merged and in order."""
        index: dict[str, int] = {}
        order = [None if t is None else index.setdefault(t, len(index)) for t in texts]
        unique = list(index)
        results: list[list[Found]] = [[] for _ in unique]
        batch: list[int] = []
        size = 0
        for i, text in enumerate(unique):
            if "\x00" in text:
                results[i] = self._analyze(text)
                continue
            batch.append(i)
            size += len(text) + len(SEPARATOR)
            if size >= BATCH_CHARS:
                self._run_batch(unique, batch, results)
                batch, size = [], 0
        if batch:
            self._run_batch(unique, batch, results)
        merged = [merge(spans, unique[i]) for i, spans in enumerate(results)]
        return [[] if k is None else merged[k] for k in order]

    def _run_batch(self, unique: list[str], batch: list[int], results: list[list[Found]]) -> None:
        cells = [unique[i] for i in batch]
        starts = []
        position = 0
        for cell in cells:
            starts.append(position)
            position += len(cell) + len(SEPARATOR)
        buffer = SEPARATOR.join(cells)
        if not self._calibrated and len(buffer) >= CALIBRATE_CHARS:
            self._calibrate(buffer)
        for f in self._analyze(buffer, starts, cells):
            k = bisect_right(starts, f.start) - 1
            cell_end = starts[k] + len(cells[k])
            if f.start >= cell_end:
                continue
            results[batch[k]].append(
                Found(f.start - starts[k], min(f.end, cell_end) - starts[k], f.tag)
            )

    def scrub_many(self, texts: Sequence[str | None]) -> tuple[list[str | None], dict[str, int]]:
        """Each text with its identifiers replaced by `[TAG]`, and how many of each tag."""
        counts: Counter[str] = Counter()
        out: list[str | None] = []
        for text, spans in zip(texts, self.find_many(texts), strict=True):
            if text is None or not spans:
                out.append(text)
                continue
            parts = []
            position = 0
            for f in spans:
                parts.append(text[position : f.start])
                parts.append(f"[{f.tag}]")
                counts[f.tag] += 1
                position = f.end
            parts.append(text[position:])
            out.append("".join(parts))
        return out, dict(counts)
