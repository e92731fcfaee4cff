"""Templated clinical notes with identifiers planted at recorded offsets."""

from __future__ import annotations

import calendar
import random
from dataclasses import dataclass, field
from datetime import date

from sde.synth import vocab


@dataclass
class Person:
    """What a note may mention about its subject."""

    given: str
    family: str
    female: bool
    dob: date
    nhs: str
    postcode: str
    address: str
    phone: str
    email: str | None
    age: int
    conditions: list[str]
    drugs: list[str]
    tests: list[tuple[str, float, str]]


@dataclass
class Note:
    """Text under construction plus (entity, start, end) of everything planted in it."""

    parts: list[str] = field(default_factory=list)
    planted: list[tuple[str, int, int]] = field(default_factory=list)
    length: int = 0

    def add(self, text: str, entity: str | None = None) -> None:
        if entity is not None:
            self.planted.append((entity, self.length, self.length + len(text)))
        self.parts.append(text)
        self.length += len(text)

    def text(self) -> str:
        return "".join(self.parts)


def nhs_format(nhs: str, r: random.Random) -> str:
    style = r.random()
    if style < 0.45:
        return f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"
    if style < 0.85:
        return nhs
    return f"{nhs[:3]}-{nhs[3:6]}-{nhs[6:]}"


def date_format(d: date, r: random.Random) -> str:
    style = r.randrange(8)
    if style == 0:
        return f"{d.day:02d}/{d.month:02d}/{d.year}"
    if style == 1:
        return f"{d.day}/{d.month}/{d.year}"
    if style == 2:
        return f"{d.day:02d}-{d.month:02d}-{d.year}"
    if style == 3:
        return f"{d.day:02d}.{d.month:02d}.{d.year}"
    if style == 4:
        return d.isoformat()
    if style == 5:
        return f"{d.day} {calendar.month_name[d.month]} {d.year}"
    if style == 6:
        return f"{d.day} {calendar.month_name[d.month][:3]} {d.year}"
    suffix = "th" if 11 <= d.day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d.day % 10, "th")
    return f"{d.day}{suffix} {calendar.month_name[d.month]} {d.year}"


def phone_format(phone: str, r: random.Random) -> str:
    style = r.random()
    digits = phone.replace(" ", "")
    if style < 0.5:
        return phone
    if style < 0.7:
        return digits
    if style < 0.9:
        return "+44 " + phone[1:]
    area, _, rest = phone.partition(" ")
    return f"({area}) {rest}"


def postcode_format(postcode: str, r: random.Random) -> str:
    style = r.random()
    if style < 0.85:
        return postcode
    if style < 0.95:
        return postcode.replace(" ", "")
    return postcode.lower()


def random_phone(r: random.Random) -> str:
    return f"07{r.randint(400, 999)} {r.randint(100000, 999999)}"


def random_nino(r: random.Random) -> str:
    # HMRC never issues D, F, I, Q, U or V first, O second either, nor these prefixes.
    first, second = "G", "B"
    while first + second in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
        first = r.choice("ABCEGHJKLMNOPRSTWXYZ")
        second = r.choice("ABCEGHJKLMNPRSTWXYZ")
    return f"{first}{second} {r.randint(10, 99)} {r.randint(10, 99)} {r.randint(10, 99)} " + (
        r.choice("ABCD")
    )


def _clinician(note: Note, r: random.Random) -> None:
    title = r.choice(vocab.CLINICIAN_TITLES)
    if r.random() < 0.6:
        name = f"{r.choice(vocab.CLINICIAN_GIVEN)} {r.choice(vocab.CLINICIAN_FAMILY)}"
    else:
        name = r.choice(vocab.CLINICIAN_FAMILY)
    opener = r.choice(("Seen by", "Reviewed by", "Discussed with", "Letter copied to"))
    note.add(f"{opener} {title} ")
    note.add(name, "PERSON")
    note.add(". ")


def _relative(note: Note, p: Person, r: random.Random) -> None:
    relative_female = r.random() < 0.5
    relation = r.choice(vocab.RELATIONS_F if relative_female else vocab.RELATIONS_M)
    given = r.choice(vocab.FEMALE_NAMES if relative_female else vocab.MALE_NAMES)
    family = p.family if r.random() < 0.6 else r.choice(vocab.FAMILY_NAMES)
    pronoun = "her" if p.female else "his"
    if r.random() < 0.6:
        note.add(f"Attended with {pronoun} {relation} ")
        note.add(f"{given} {family}", "PERSON")
        note.add(". ")
    else:
        note.add("Next of kin: ")
        note.add(f"{given} {family}", "PERSON")
        note.add(f" ({relation}), tel ")
        note.add(random_phone(r), "PHONE")
        note.add(". ")


def _header(note: Note, p: Person, r: random.Random) -> None:
    style = r.randrange(4)
    title = ("Mrs" if r.random() < 0.5 else "Ms") if p.female else "Mr"
    if style == 0:
        note.add("Patient: ")
        note.add(f"{p.given} {p.family}", "PERSON")
        note.add(". NHS number: ")
        note.add(nhs_format(p.nhs, r), "NHS_NUMBER")
        note.add(". DOB: ")
        note.add(date_format(p.dob, r), "DATE")
        note.add(".\n")
    elif style == 1:
        note.add(f"Re: {title} ")
        note.add(f"{p.given} {p.family}", "PERSON")
        note.add(" (DOB ")
        note.add(date_format(p.dob, r), "DATE")
        note.add("), NHS No ")
        note.add(nhs_format(p.nhs, r), "NHS_NUMBER")
        note.add("\n")
    elif style == 2:
        note.add(p.family.upper(), "PERSON")
        note.add(", ")
        note.add(p.given, "PERSON")
        note.add(" -- NHS ")
        note.add(nhs_format(p.nhs, r), "NHS_NUMBER")
        note.add(" -- born ")
        note.add(date_format(p.dob, r), "DATE")
        note.add("\n")
    else:
        note.add("Name: ")
        note.add(f"{p.given} {p.family}", "PERSON")
        note.add("\nDate of birth: ")
        note.add(date_format(p.dob, r), "DATE")
        note.add("\nNHS number: ")
        note.add(nhs_format(p.nhs, r), "NHS_NUMBER")
        note.add("\nAddress: ")
        note.add(p.address, "ADDRESS")
        note.add(", ")
        note.add(postcode_format(p.postcode, r), "POSTCODE")
        note.add("\n")


def _clinical(note: Note, p: Person, r: random.Random) -> None:
    if p.conditions:
        if len(p.conditions) > 1 and r.random() < 0.5:
            note.add(f"PMH: {', '.join(p.conditions[:4])}. ")
        else:
            note.add(f"Reviewed in clinic for {r.choice(p.conditions)}. ")
    else:
        note.add(r.choice(("No significant past medical history. ", "Attends for a check-up. ")))
    if p.drugs:
        drug = r.choice(p.drugs)
        note.add(
            r.choice(
                (
                    f"Current medication includes {drug}. ",
                    f"Repeat prescription of {drug} issued. ",
                    f"Tolerating {drug} well. ",
                )
            )
        )
    for test, value, unit in p.tests[:3]:
        shown = f"{value:g}"
        note.add(f"{test} {shown} {unit}. ")


PLANS = (
    "Plan: review in 3 months. ",
    "Advised on diet and exercise. ",
    "Safety-netting advice given. ",
    "Bloods booked for next week. ",
    "Referred to the community team. ",
    "No new concerns today. ",
)


def build_note(p: Person, r: random.Random) -> tuple[str, list[tuple[str, int, int]]]:
    note = Note()
    _header(note, p, r)
    if p.age >= 18 and r.random() < 0.3:
        note.add(f"{'Mrs' if p.female else 'Mr'} ")
        note.add(p.family, "PERSON")
        note.add(f" is a {p.age}-year-old seen today. ")
    else:
        note.add(p.given, "PERSON")
        note.add(" reports feeling better since the last visit. ")
    _clinical(note, p, r)
    extras = [
        lambda: _clinician(note, r),
        lambda: _relative(note, p, r),
        lambda: _contact(note, p, r),
        lambda: _address(note, p, r),
        lambda: _requote(note, p, r),
    ]
    for extra in r.sample(extras, r.randint(1, len(extras))):
        extra()
    if r.random() < 0.05:
        note.add("NI number ")
        note.add(random_nino(r), "NINO")
        note.add(". ")
    note.add(r.choice(PLANS).rstrip())
    return note.text(), note.planted


def _contact(note: Note, p: Person, r: random.Random) -> None:
    note.add(r.choice(("Contact number ", "Tel: ", "Mobile ", "Phone ")))
    note.add(phone_format(p.phone, r), "PHONE")
    note.add(". ")
    if p.email and r.random() < 0.6:
        note.add("Email: ")
        note.add(p.email, "EMAIL")
        note.add(". ")


def _address(note: Note, p: Person, r: random.Random) -> None:
    note.add("Lives at ")
    if r.random() < 0.5:
        note.add(p.address, "ADDRESS")
    else:
        note.add(p.address.partition(",")[0], "ADDRESS")
    note.add(", ")
    note.add(postcode_format(p.postcode, r), "POSTCODE")
    note.add(". ")


def _requote(note: Note, p: Person, r: random.Random) -> None:
    note.add("Please quote NHS number ")
    note.add(nhs_format(p.nhs, r), "NHS_NUMBER")
    note.add(" in correspondence. ")
