"""Generate one chunk of synthetic persons as Arrow tables (vectorised with numpy).

Every chunk draws from its own random stream, seeded from (seed, chunk index), so
the output depends only on the seed and N, and chunks could be built in any order.
Row ids run on from the previous chunk through `Counters`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from json.encoder import encode_basestring

import numpy as np
import pyarrow as pa

from sde.synth import notes, vocab
from sde.synth.schema import ETHNIC_GROUPS, TABLES

CHUNK_PERSONS = 20_000
MAX_PERSONS = 10_000_000  # NHS numbers are drawn from 8 candidate slots per person below 10^8
REFERENCE_DATE = date(2025, 1, 1)  # "today" of the synthetic world: output must not depend on now
_EPOCH = date(1970, 1, 1)
REF_DAY = (REFERENCE_DATE - _EPOCH).days
_YEAR = 365.25


@dataclass
class Counters:
    """Next row id per table, carried from one chunk to the next."""

    next_id: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 1))

    def take(self, table: str, count: int) -> np.ndarray:
        first = self.next_id[table]
        self.next_id[table] = first + count
        return np.arange(first, first + count, dtype=np.int64)


@dataclass
class Chunk:
    tables: dict[str, pa.Table]
    planted: list[str]  # JSON lines


# ------------------------------------------------------------------ identifiers


def nhs_check_digit(body: np.ndarray) -> np.ndarray:
    """Mod-11 check digit of 9-digit bodies (int64); 10 means the body cannot be used."""
    weights = np.arange(10, 1, -1, dtype=np.int64)
    digits = (body[..., None] // 10 ** np.arange(8, -1, -1, dtype=np.int64)) % 10
    check = 11 - (digits * weights).sum(axis=-1) % 11
    return np.where(check == 11, 0, check)


def nhs_numbers(person_ids: np.ndarray, seed: int) -> np.ndarray:
    """Unique valid NHS numbers: an affine bijection of (person, slot) onto 4xxxxxxxx bodies."""
    mix = np.random.default_rng(np.random.SeedSequence([seed, 0x4E4853]))
    multiplier = int(mix.integers(1, 10**7)) * 10 + 3  # ends in 3: coprime to 10^8
    offset = int(mix.integers(0, 10**8))
    slots = person_ids[:, None] * 8 + np.arange(8, dtype=np.int64)
    bodies = 4 * 10**8 + (slots * multiplier + offset) % 10**8
    checks = nhs_check_digit(bodies)
    usable = checks != 10
    if not usable.any(axis=1).all():  # (1/11)^8 per person: never in practice, but never silent
        raise RuntimeError("no valid NHS number slot for a person")
    pick = usable.argmax(axis=1)
    rows = np.arange(len(person_ids))
    return bodies[rows, pick] * 10 + checks[rows, pick]


def outward_codes(seed: int) -> tuple[list[tuple[str, int]], np.ndarray]:
    """(outward code, area index) list and skewed population weights (a few tiny districts)."""
    codes: list[tuple[str, int]] = []
    for area_index, (area, _town, _dial) in enumerate(vocab.POSTCODE_AREAS):
        districts = 20 if len(vocab.POSTCODE_AREAS[area_index][2]) <= 4 else 6
        codes.extend((f"{area}{d}", area_index) for d in range(1, districts + 1))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x504353]))
    ranks = rng.permutation(len(codes)) + 1
    weights = 1.0 / ranks**1.1
    return codes, weights / weights.sum()


def _phone(area_dial: str, r: random.Random) -> str:
    if r.random() < 0.6:
        return f"07{r.randint(400, 999)} {r.randint(100000, 999999)}"
    local = 11 - len(area_dial)
    number = str(r.randint(2, 8)) + "".join(str(r.randint(0, 9)) for _ in range(local - 1))
    if len(area_dial) == 3:
        return f"{area_dial} {number[:4]} {number[4:]}"
    if len(area_dial) == 4:
        return f"{area_dial} {number[:3]} {number[3:]}"
    return f"{area_dial} {number}"


_NOT_ALNUM = re.compile(r"[^a-z0-9]")


# ------------------------------------------------------------------ helpers


def _uniform_days(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return lo + np.floor(rng.random(len(lo)) * (hi - lo + 1)).astype(np.int64)


def _dates(days: np.ndarray) -> pa.Array:
    return pa.array(days.astype(np.int32), pa.date32())


def _nullable(values: np.ndarray, null: np.ndarray, type_: pa.DataType) -> pa.Array:
    return pa.array(values, type_, mask=null)


def _strings(vocabulary: list[str], index: np.ndarray) -> pa.Array:
    return pa.array(vocabulary, pa.string()).take(pa.array(index.astype(np.int64)))


def _table(name: str, columns: dict[str, pa.Array | np.ndarray]) -> pa.Table:
    schema = TABLES[name].arrow_schema()
    arrays = [
        pa.array(columns[f.name], f.type)
        if isinstance(columns[f.name], np.ndarray)
        else columns[f.name]
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


class _Visits:
    """Per-person visit ranges, to link events to one of their person's visits."""

    def __init__(self, person_index: np.ndarray, ids: np.ndarray, start: np.ndarray, n: int):
        self.ids = ids
        self.start = start
        self.first = np.searchsorted(person_index, np.arange(n))
        self.count = np.bincount(person_index, minlength=n)

    def link(
        self, rng: np.random.Generator, person_index: np.ndarray, share: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(visit id, visit start day, linked mask) for events of these persons."""
        pick = self.first[person_index] + np.floor(
            rng.random(len(person_index)) * self.count[person_index]
        ).astype(np.int64)
        linked = rng.random(len(person_index)) < share
        return self.ids[pick], self.start[pick], linked


# ------------------------------------------------------------------ the chunk


def generate_chunk(seed: int, chunk_index: int, first: int, n: int, counters: Counters) -> Chunk:
    rng = np.random.default_rng(np.random.SeedSequence([seed, chunk_index]))
    person_id = np.arange(first + 1, first + n + 1, dtype=np.int64)
    female = rng.random(n) < 0.51
    band_weights = np.array(vocab.AGE_BAND_POPULATION)
    band = rng.choice(len(band_weights), n, p=band_weights / band_weights.sum())
    band_width = np.where(band == len(band_weights) - 1, 12, 5)
    age_days = ((band * 5 + rng.random(n) * band_width) * _YEAR).astype(np.int64) + 1
    birth = REF_DAY - age_days
    age = age_days / _YEAR
    birth_dt = birth.astype("datetime64[D]")
    year = birth_dt.astype("datetime64[Y]").astype(np.int64) + 1970
    month = birth_dt.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day = (birth_dt - birth_dt.astype("datetime64[M]")).astype(np.int64) + 1
    shares = np.array(vocab.ETHNIC_SHARES)
    ethnic = rng.choice(len(shares), n, p=shares / shares.sum())
    mrn = (person_id * 7919 + seed) % 10**7  # 7919 is coprime to 10^7: unique per person

    tables: dict[str, pa.Table] = {}
    tables["person"] = _table(
        "person",
        {
            "person_id": person_id,
            "gender_concept_id": np.where(female, 8532, 8507),
            "year_of_birth": year,
            "month_of_birth": month,
            "day_of_birth": day,
            "race_concept_id": np.array(vocab.ETHNIC_RACE_CONCEPT)[ethnic],
            "ethnicity_concept_id": np.zeros(n, np.int64),
            "person_source_value": pa.array([f"RX{m:07d}" for m in mrn.tolist()]),
            "gender_source_value": _strings(["M", "F"], female.astype(np.int64)),
            "ethnicity_source_value": _strings(list(ETHNIC_GROUPS), ethnic),
        },
    )

    # Observation: up to 25 years back, never before birth; one in ten left early.
    obs_start = np.maximum(birth, REF_DAY - rng.integers(365, 25 * 365, n))
    left = rng.random(n) < 0.1
    obs_end = np.where(left, REF_DAY - rng.integers(0, 5 * 365, n), REF_DAY)
    obs_end = np.clip(obs_end, obs_start, REF_DAY)
    span_years = (obs_end - obs_start + 1) / _YEAR
    tables["observation_period"] = _table(
        "observation_period",
        {
            "observation_period_id": counters.take("observation_period", n),
            "person_id": person_id,
            "observation_period_start_date": _dates(obs_start),
            "observation_period_end_date": _dates(obs_end),
            "period_type_concept_id": np.full(n, vocab.EHR),
        },
    )

    # Chronic conditions: prevalence rises with age after onset.
    cond_person: list[np.ndarray] = []
    cond_index: list[np.ndarray] = []
    for ci, cond in enumerate(vocab.CONDITIONS):
        ramp = np.clip((age - cond.onset_age) / max(60 - cond.onset_age, 1), 0, 1)
        p = cond.prevalence * np.where(age < cond.onset_age, 0.1, 0.4 + 0.6 * ramp)
        who = np.flatnonzero(rng.random(n) < p)
        cond_person.append(who)
        cond_index.append(np.full(len(who), ci))
    chronic_person = np.concatenate(cond_person)
    chronic_cond = np.concatenate(cond_index)
    n_chronic = np.bincount(chronic_person, minlength=n)

    # Acute episodes recur with time observed.
    acute_person_l: list[np.ndarray] = []
    acute_cond_l: list[np.ndarray] = []
    for ai, (_cond, rate) in enumerate(vocab.ACUTE):
        k = rng.poisson(rate * span_years * 0.5)
        acute_person_l.append(np.repeat(np.arange(n), k))
        acute_cond_l.append(np.full(int(k.sum()), ai))
    acute_person = np.concatenate(acute_person_l)
    acute_cond = np.concatenate(acute_cond_l)

    # Visits: more with age, time observed and illness.
    n_visits = 1 + rng.poisson(0.25 * span_years + 0.02 * age + 1.2 * n_chronic)
    visit_person = np.repeat(np.arange(n), n_visits)
    nv = len(visit_person)
    visit_start = _uniform_days(rng, obs_start[visit_person], obs_end[visit_person])
    order = np.lexsort((visit_start, visit_person))
    visit_start = visit_start[order]
    kind_p = np.array([k[2] for k in vocab.VISIT_KINDS])
    kind = rng.choice(len(kind_p), nv, p=kind_p)
    stay = np.where(
        kind == 1, rng.geometric(0.25, nv), np.where(kind == 2, rng.integers(0, 2, nv), 0)
    )
    visit_end = np.minimum(visit_start + stay, obs_end[visit_person])
    visit_ids = counters.take("visit_occurrence", nv)
    tables["visit_occurrence"] = _table(
        "visit_occurrence",
        {
            "visit_occurrence_id": visit_ids,
            "person_id": person_id[visit_person],
            "visit_concept_id": np.array([k[0] for k in vocab.VISIT_KINDS])[kind],
            "visit_start_date": _dates(visit_start),
            "visit_end_date": _dates(visit_end),
            "visit_type_concept_id": np.full(nv, vocab.EHR),
            "visit_source_value": _strings([k[1] for k in vocab.VISIT_KINDS], kind),
        },
    )
    visits = _Visits(visit_person, visit_ids, visit_start, n)

    # Conditions table: chronic (open-ended) then acute (resolve within weeks).
    all_conditions = list(vocab.CONDITIONS) + [c for c, _ in vocab.ACUTE]
    c_person = np.concatenate([chronic_person, acute_person])
    c_index = np.concatenate([chronic_cond, acute_cond + len(vocab.CONDITIONS)])
    nc = len(c_person)
    c_visit, c_visit_day, c_linked = visits.link(rng, c_person, 0.7)
    c_start = np.where(
        c_linked, c_visit_day, _uniform_days(rng, obs_start[c_person], obs_end[c_person])
    )
    acute = c_index >= len(vocab.CONDITIONS)
    c_end = np.minimum(c_start + rng.integers(3, 28, nc), obs_end[c_person])
    tables["condition_occurrence"] = _table(
        "condition_occurrence",
        {
            "condition_occurrence_id": counters.take("condition_occurrence", nc),
            "person_id": person_id[c_person],
            "condition_concept_id": np.array([c.concept_id for c in all_conditions])[c_index],
            "condition_start_date": _dates(c_start),
            "condition_end_date": pa.array(c_end.astype(np.int32), pa.date32(), mask=~acute),
            "condition_type_concept_id": np.full(nc, vocab.EHR),
            "visit_occurrence_id": _nullable(c_visit, ~c_linked, pa.int64()),
            "condition_source_value": _strings([c.icd10 for c in all_conditions], c_index),
        },
    )

    # Drugs: each treated condition gives a series of repeat prescriptions after onset.
    drug_list: list[vocab.Drug] = []
    drug_of: dict[tuple[int, int], int] = {}
    for ci, cond in enumerate(all_conditions):
        for di, drug in enumerate(cond.drugs):
            drug_of[(ci, di)] = len(drug_list)
            drug_list.append(drug)
    s_person_l, s_drug_l, s_from_l, s_count_l = [], [], [], []
    for ci, cond in enumerate(all_conditions):
        rows = np.flatnonzero(c_index == ci)
        for di in range(len(cond.drugs)):
            take = rows[rng.random(len(rows)) < (0.75 if di == 0 else 0.4)]
            months = (obs_end[c_person[take]] - c_start[take]) / 30.4
            count = (
                1 if ci >= len(vocab.CONDITIONS) else 1 + rng.poisson(np.minimum(months, 36) / 3)
            )
            s_person_l.append(c_person[take])
            s_drug_l.append(np.full(len(take), drug_of[(ci, di)]))
            s_from_l.append(c_start[take])
            s_count_l.append(np.broadcast_to(count, len(take)))
    s_count = np.concatenate(s_count_l).astype(np.int64)
    d_person = np.repeat(np.concatenate(s_person_l), s_count)
    d_drug = np.repeat(np.concatenate(s_drug_l), s_count)
    d_from = np.repeat(np.concatenate(s_from_l), s_count)
    nd = len(d_person)
    d_start = _uniform_days(rng, d_from, obs_end[d_person])
    d_visit, _, d_linked = visits.link(rng, d_person, 0.3)
    days_supply = np.array([d.days_supply for d in drug_list])[d_drug]
    quantity = np.array([d.quantity for d in drug_list])[d_drug]
    tables["drug_exposure"] = _table(
        "drug_exposure",
        {
            "drug_exposure_id": counters.take("drug_exposure", nd),
            "person_id": person_id[d_person],
            "drug_concept_id": np.array([d.concept_id for d in drug_list])[d_drug],
            "drug_exposure_start_date": _dates(d_start),
            "drug_exposure_end_date": _dates(d_start + days_supply - 1),
            "drug_type_concept_id": np.full(nd, vocab.EHR),
            "quantity": _nullable(quantity, rng.random(nd) < 0.02, pa.float64()),
            "days_supply": _nullable(days_supply, rng.random(nd) < 0.02, pa.int64()),
            "visit_occurrence_id": _nullable(d_visit, ~d_linked, pa.int64()),
            "drug_source_value": _strings([d.name for d in drug_list], d_drug),
        },
    )

    # Measurements: routine ones for adults, plus disease monitoring with shifted values.
    test_names = list(vocab.TESTS)
    test_at = {name: i for i, name in enumerate(test_names)}
    shift = np.zeros((n, len(test_names)))
    monitor = np.zeros((n, len(test_names)))
    for ci, cond in enumerate(vocab.CONDITIONS):
        who = chronic_person[chronic_cond == ci]
        for name, delta in cond.tests:
            shift[who, test_at[name]] += delta
            monitor[who, test_at[name]] += 1.0
    adult = (age >= 16).astype(float)
    routine = np.zeros(len(test_names))
    for name in vocab.ROUTINE_TESTS:
        routine[test_at[name]] = 0.38
    routine[test_at["HbA1c"]] = routine[test_at["eGFR"]] = 0.1
    m_rate = adult[:, None] * (routine[None, :] + 0.8 * monitor) * span_years[:, None]
    m_count: np.ndarray = rng.poisson(m_rate)
    m_person = np.repeat(np.repeat(np.arange(n), len(test_names)), m_count.ravel())
    m_test = np.repeat(np.tile(np.arange(len(test_names)), n), m_count.ravel())
    nm = len(m_person)
    tests = [vocab.TESTS[name] for name in test_names]
    mean = np.array([t.mean for t in tests])[m_test] + shift[m_person, m_test]
    sd = np.array([t.sd for t in tests])[m_test]
    value = np.maximum(mean + sd * rng.standard_normal(nm), 0)
    decimals = np.array([t.decimals for t in tests])[m_test]
    value = np.round(value * 10.0**decimals) / 10.0**decimals
    missing = rng.random(nm) < 0.02
    m_visit, m_visit_day, m_linked = visits.link(rng, m_person, 0.5)
    m_day = np.where(
        m_linked, m_visit_day, _uniform_days(rng, obs_start[m_person], obs_end[m_person])
    )
    tables["measurement"] = _table(
        "measurement",
        {
            "measurement_id": counters.take("measurement", nm),
            "person_id": person_id[m_person],
            "measurement_concept_id": np.array([t.concept_id for t in tests])[m_test],
            "measurement_date": _dates(m_day),
            "measurement_type_concept_id": np.full(nm, vocab.EHR),
            "value_as_number": _nullable(value, missing, pa.float64()),
            "unit_source_value": pa.array(
                np.array([t.unit for t in tests], dtype=object)[m_test], pa.string(), mask=missing
            ),
            "range_low": np.array([t.low for t in tests], dtype=np.float64)[m_test],
            "range_high": np.array([t.high for t in tests], dtype=np.float64)[m_test],
            "visit_occurrence_id": _nullable(m_visit, ~m_linked, pa.int64()),
            "measurement_source_value": _strings(test_names, m_test),
        },
    )

    tables["identifiers"], people = _identifiers(seed, chunk_index, person_id, female, birth, age)
    tables["notes"], planted = _notes(
        rng,
        counters,
        people,
        person_id,
        n_chronic,
        visits,
        (chronic_person, chronic_cond),
        (d_person, d_drug, drug_list),
        shift,
        test_at,
    )
    return Chunk(tables, planted)


def _identifiers(
    seed: int,
    chunk_index: int,
    person_id: np.ndarray,
    female: np.ndarray,
    birth: np.ndarray,
    age: np.ndarray,
) -> tuple[pa.Table, list[notes.Person]]:
    r = random.Random(f"{seed}:{chunk_index}:identifiers")
    rng = np.random.default_rng(np.random.SeedSequence([seed, chunk_index, 1]))
    n = len(person_id)
    nhs = nhs_numbers(person_id, seed)
    codes, weights = outward_codes(seed)
    outward = rng.choice(len(codes), n, p=weights)
    people: list[notes.Person] = []
    rows: dict[str, list] = {c: [] for c in TABLES["identifiers"].column_names}
    for i in range(n):
        given = r.choice(vocab.FEMALE_NAMES if female[i] else vocab.MALE_NAMES)
        family = r.choice(vocab.FAMILY_NAMES)
        code, area_index = codes[outward[i]]
        _area, town, dial = vocab.POSTCODE_AREAS[area_index]
        inward = (
            f"{r.randint(0, 9)}{r.choice(vocab.INWARD_LETTERS)}{r.choice(vocab.INWARD_LETTERS)}"
        )
        postcode = f"{code} {inward}"
        address = (
            f"{r.randint(1, 180)} {r.choice(vocab.STREETS)} {r.choice(vocab.STREET_KINDS)}, {town}"
        )
        phone = _phone(dial, r)
        email = None
        if r.random() < 0.85:
            local = _NOT_ALNUM.sub("", given.lower()) + "." + _NOT_ALNUM.sub("", family.lower())
            if r.random() < 0.5:
                local += str(r.randint(10, 99))
            email = f"{local}@{r.choice(vocab.EMAIL_DOMAINS)}"
        dob = _EPOCH + timedelta(days=int(birth[i]))
        nhs_text = str(int(nhs[i]))
        for col, value in (
            ("person_id", int(person_id[i])),
            ("nhs_number", nhs_text),
            ("given_name", given),
            ("family_name", family),
            ("date_of_birth", dob),
            ("postcode", postcode),
            ("address", address),
            ("phone", phone),
            ("email", email),
        ):
            rows[col].append(value)
        people.append(
            notes.Person(
                given,
                family,
                bool(female[i]),
                dob,
                nhs_text,
                postcode,
                address,
                phone,
                email,
                int(age[i]),
                [],
                [],
                [],
            )
        )
    schema = TABLES["identifiers"].arrow_schema()
    return pa.Table.from_pydict(rows, schema=schema), people


def _notes(
    rng: np.random.Generator,
    counters: Counters,
    people: list[notes.Person],
    person_id: np.ndarray,
    n_chronic: np.ndarray,
    visits: _Visits,
    chronic: tuple[np.ndarray, np.ndarray],
    drugs: tuple[np.ndarray, np.ndarray, list[vocab.Drug]],
    shift: np.ndarray,
    test_at: dict[str, int],
) -> tuple[pa.Table, list[str]]:
    n = len(people)
    count = rng.poisson(0.6 + 0.4 * n_chronic)
    note_person = np.repeat(np.arange(n), count)
    note_ids = counters.take("notes", len(note_person))
    _, note_day, _ = visits.link(rng, note_person, 1.0)
    r = random.Random(int(rng.integers(2**62)))
    chronic_person, chronic_cond = chronic
    for p, c in zip(chronic_person.tolist(), chronic_cond.tolist(), strict=True):
        if count[p]:
            people[p].conditions.append(vocab.CONDITIONS[c].name)
    d_person, d_drug, drug_list = drugs
    seen_drug: set[tuple[int, int]] = set()
    for p, d in zip(d_person.tolist(), d_drug.tolist(), strict=True):
        if count[p] and (p, d) not in seen_drug:
            seen_drug.add((p, d))
            people[p].drugs.append(drug_list[d].name)
    texts: list[str] = []
    planted: list[str] = []
    for p, note_id in zip(note_person.tolist(), note_ids.tolist(), strict=True):
        person = people[p]
        if not person.tests:
            for name, test in vocab.TESTS.items():
                if shift[p, test_at[name]] != 0 or name in ("Systolic blood pressure",):
                    value = round(
                        test.mean + shift[p, test_at[name]] + test.sd * r.gauss(), test.decimals
                    )
                    person.tests.append((name, max(value, 0.0), test.unit))
        text, spans = notes.build_note(person, r)
        texts.append(text)
        pid = int(person_id[p])
        for entity, start, end in spans:
            # Hand-built JSON: json.dumps per object is the slowest part of a large run.
            planted.append(
                f'{{"table": "notes", "key": {{"note_id": {note_id}}}, "column": "note_text", '
                f'"person_id": {pid}, "entity": "{entity}", '
                f'"text": {encode_basestring(text[start:end])}, "start": {start}, "end": {end}}}'
            )
    table = _table(
        "notes",
        {
            "note_id": note_ids,
            "person_id": person_id[note_person],
            "note_date": _dates(note_day),
            "note_text": pa.array(texts, pa.string()),
        },
    )
    return table, planted
