"""UK pattern recognizers for clinical free text, on top of presidio's own.

presidio ships NHS number (with its mod-11 check), UK postcode, NINO, email (with
a public-suffix check) and numeric date recognizers; this module adds what UK
notes also carry: phone numbers, written-out dates of birth, and names that follow
a title ("Dr Okafor") or a relationship ("her daughter Jane Smith"). presidio must
run offline: `offline_environment()` stops tldextract reaching for the network.
"""

from __future__ import annotations

import os

# tldextract reads this when first imported (presidio imports it): set it before.
os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""

from typing import ClassVar

from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import (
    DateRecognizer,
    EmailRecognizer,
    NhsRecognizer,
    UkNinoRecognizer,
    UkPostcodeRecognizer,
)

# presidio entity -> the tag the scrubber writes in place of the text.
TAGS: dict[str, str] = {
    "UK_NHS": "NHS_NUMBER",
    "UK_POSTCODE": "POSTCODE",
    "UK_NINO": "NINO",
    "EMAIL_ADDRESS": "EMAIL",
    "DATE_TIME": "DATE",
    "UK_PHONE": "PHONE",
    "PERSON": "PERSON",
}


def offline_environment() -> None:
    """Keep presidio's email validation (tldextract) on its bundled suffix list."""
    import tldextract.tldextract

    os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""
    # In case tldextract was imported before this module set the variable.
    tldextract.tldextract.TLD_EXTRACTOR.suffix_list_urls = ()


_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_DAY = r"(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?"
_YEAR = r"(?:1[89]\d\d|20\d\d)"


class WrittenDateRecognizer(PatternRecognizer):
    """Dates with the month in words: '12 March 1956', '3rd Sept 2001', 'March 12, 1956'."""

    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern("day month year", rf"\b{_DAY}\s+{_MONTH}\.?,?\s+{_YEAR}\b", 0.6),
        Pattern("month day year", rf"\b{_MONTH}\.?\s+{_DAY},?\s+{_YEAR}\b", 0.6),
    ]

    def __init__(self) -> None:
        super().__init__(
            supported_entity="DATE_TIME",
            patterns=self.PATTERNS,
            context=["dob", "born", "birth"],
            name="WrittenDateRecognizer",
        )


class UkPhoneRecognizer(PatternRecognizer):
    """UK phone numbers as people write them: '07700 900123', '+44 (0)113 496 0123'."""

    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern(
            "UK phone",
            r"(?:(?<![\w+])\+44\s?(?:\(0\)\s?)?|(?<![\w+(])\(?0)\d(?:[\s\-)]{0,2}\d){8,9}(?!\w)",
            0.4,
        ),
    ]

    def __init__(self) -> None:
        super().__init__(
            supported_entity="UK_PHONE",
            patterns=self.PATTERNS,
            context=["tel", "phone", "mobile", "contact"],
            name="UkPhoneRecognizer",
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        digits = "".join(c for c in pattern_text if c.isdigit())
        if pattern_text.lstrip().startswith("+44"):
            digits = "0" + digits[2:].removeprefix("0")
        # UK numbers are 0 + 9 or 10 digits; geographic 01/02, mobiles 07, 03/08 non-geographic.
        return len(digits) in (10, 11) and digits[1] in "123578"


_NAME = r"[A-Z][a-z]+(?:['\u2019-][A-Z]?[a-z]+)*"
_NAMES = rf"(?-i:{_NAME}(?:\s+{_NAME}){{0,2}})"


class TitledNameRecognizer(PatternRecognizer):
    """Capitalised names after a title: 'Dr Okafor', 'Mrs Jane Smith', 'Nurse Patel'."""

    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern(
            "title name",
            r"(?<=\b(?-i:Dr|Mr|Mrs|Ms|Miss|Mx|Prof|Professor|Nurse|Sister|Rev)\.?\s+)" + _NAMES,
            0.6,
        ),
    ]

    def __init__(self) -> None:
        super().__init__(
            supported_entity="PERSON", patterns=self.PATTERNS, name="TitledNameRecognizer"
        )


RELATIONS = [
    "daughter",
    "son",
    "wife",
    "husband",
    "partner",
    "mother",
    "father",
    "mum",
    "dad",
    "sister",
    "brother",
    "niece",
    "nephew",
    "aunt",
    "uncle",
    "grandson",
    "granddaughter",
    "grandmother",
    "grandfather",
    "carer",
    "friend",
    "neighbour",
]


class RelativeNameRecognizer(PatternRecognizer):
    """Capitalised names after a relationship or 'next of kin': 'her daughter Jane Smith'."""

    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern(
            "relation name",
            r"(?<=\b(?:" + "|".join(RELATIONS) + r"|next\s+of\s+kin:?)\s*,?\s+)" + _NAMES,
            0.5,
        ),
    ]

    def __init__(self) -> None:
        super().__init__(
            supported_entity="PERSON", patterns=self.PATTERNS, name="RelativeNameRecognizer"
        )


def uk_recognizers() -> list[EntityRecognizer]:
    """presidio's UK and generic recognizers plus ours: the scrubber's registry."""
    offline_environment()
    return [
        NhsRecognizer(),
        UkPostcodeRecognizer(),
        UkNinoRecognizer(),
        EmailRecognizer(),
        DateRecognizer(),
        WrittenDateRecognizer(),
        UkPhoneRecognizer(),
        TitledNameRecognizer(),
        RelativeNameRecognizer(),
    ]
