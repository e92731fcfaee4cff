"""Sign-in through Keycloak: `sde keycloak sync` of a large registry against a real Keycloak.

    .venv/bin/python benchmarks/signin.py [--quick] [--people N] [--projects N]

A registry of N people (SQLite, built through the registry's service functions,
each person in one to three active projects, one in fifty an output checker)
is synced into the test setup's own Keycloak (tests/support/keycloak.py: the
cached distribution, started on loopback, the sde realm imported). Timed: the
full first sync (every user and group created), a sync that changes nothing,
and a sync after one person in a hundred lapsed. Target: the no-change sync
under 10 s at 10,000 people and 1,000 projects. `--quick` is 500 people and 50
projects. The last line is one JSON object.

(The sign-in-to-first-kernel comparison, Keycloak beside the embedded sign-in,
belongs with the hub's Keycloak sign-in and is not measured here.)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine  # noqa: E402

from sde.core.db import make_engine, transaction  # noqa: E402
from sde.core.schema import ensure_schema  # noqa: E402
from sde.keycloak import sync as kc_sync  # noqa: E402
from sde.registry import service  # noqa: E402
from tests.support import keycloak as kc  # noqa: E402
from tests.support.registry import ACTOR, today  # noqa: E402

TARGET_S = 10.0


def build_registry(engine: Engine, people: int, projects: int) -> None:
    """People, active projects and memberships, through the audited service functions."""
    start, end = today() - timedelta(days=5), today() + timedelta(days=365)
    with transaction(engine) as s:
        for p in range(projects):
            slug = f"proj-{p:04d}"
            service.create_project(
                s, ACTOR, slug=slug, title=f"Project {p}", start_date=start, end_date=end
            )
            service.approve_project(
                s, ACTOR, slug, approval_ref="REC-1", signed_off_by="DC", signed_off_on=start
            )
            service.activate_project(s, ACTOR, slug)
    with transaction(engine) as s:
        for i in range(people):
            name = f"person{i:05d}"
            service.add_person(
                s,
                ACTOR,
                username=name,
                full_name=f"Person {i} Example",
                email=f"{name}@example.org",
                accreditation_ref=f"ACC-{i}",
                accreditation_expiry=end,
                training_completed=start,
                training_expiry=end,
            )
            for k in range(1 + i % 3):
                service.add_member(s, ACTOR, f"proj-{(i * 7 + k * 13) % projects:04d}", name)
            if i % 50 == 0:
                service.grant_role(s, ACTOR, name, "output_checker")


def lapse(engine: Engine, people: int) -> int:
    """One person in a hundred's training expires yesterday; returns how many."""
    lapsed = list(range(0, people, 100))
    with transaction(engine) as s:
        for i in lapsed:
            service.update_person(
                s, ACTOR, f"person{i:05d}", training_expiry=today() - timedelta(days=1)
            )
    return len(lapsed)


def timed_sync(engine: Engine, instance: kc.KeycloakInstance) -> tuple[float, int]:
    t = time.perf_counter()
    report = kc_sync.sync(
        instance.settings,
        read=lambda: transaction(engine),
        write=lambda: transaction(engine),
        actor=ACTOR,
    )
    return time.perf_counter() - t, len(report.changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run (under a minute)")
    parser.add_argument("--people", type=int, default=None)
    parser.add_argument("--projects", type=int, default=None)
    args = parser.parse_args()
    people = args.people or (500 if args.quick else 10_000)
    projects = args.projects or (50 if args.quick else 1_000)

    with tempfile.TemporaryDirectory(prefix="sde-bench-signin-") as tmp:
        root = Path(tmp)
        engine = make_engine(f"sqlite:///{root / 'sde.db'}")
        ensure_schema(engine)
        t = time.perf_counter()
        build_registry(engine, people, projects)
        build_s = time.perf_counter() - t
        print(f"registry: {people:,} people, {projects:,} projects in {build_s:.1f} s", flush=True)
        try:
            instance = kc.start(root / "home")
        except kc.Unavailable as exc:
            sys.exit(f"Keycloak is not available: {exc}")
        try:
            full_s, created = timed_sync(engine, instance)
            none_s, unchanged = timed_sync(engine, instance)
            lapsed = lapse(engine, people)
            lapse_s, disabled = timed_sync(engine, instance)
        finally:
            instance.stop()
            engine.dispose()
    assert unchanged == 0 and disabled == lapsed, (unchanged, disabled, lapsed)
    ratio = none_s / full_s
    print(
        f"sync people={people:>6,} projects={projects:>5,}  full {full_s:7.2f} s"
        f" ({created:,} changes)  no change {none_s:6.2f} s  ratio {ratio:.3f}"
        f"  {lapsed} lapsed {lapse_s:6.2f} s  (target: no change < {TARGET_S:.0f} s)"
    )
    print(
        json.dumps(
            {
                "people": people,
                "projects": projects,
                "full_sync_s": round(full_s, 3),
                "full_sync_changes": created,
                "no_change_sync_s": round(none_s, 3),
                "lapse_sync_s": round(lapse_s, 3),
                "lapsed": lapsed,
                "ratio": round(ratio, 4),
                "target_s": TARGET_S,
                "ok": none_s < TARGET_S,
            }
        )
    )


if __name__ == "__main__":
    main()
