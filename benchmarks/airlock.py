"""Concurrent clients running the whole egress workflow through the airlock's HTTP API,
beside the floor of the hub's own API version endpoint.

    .venv/bin/python benchmarks/airlock.py [--quick] [--clients N] [--rounds N]
                                           [--postgres | --db-url URL]

ours:  a real hub starts the airlock service as it does in production (Docker off:
       work folders are plain directories). Each client is one researcher of one
       project with its workspace's token (`custom:airlock:requests!server=...`,
       calls straight to the service) and a person token (through the proxy), made
       by signing in with password and TOTP as tests/integration/test_airlock_api.py
       does; two output checkers share their own tokens. Every client runs, per
       round: create, add, set the group's text, submit, two blind reviews (vote,
       review each), approve, release and download, all clients at once.
floor: the same number of calls, at the same concurrency, to the hub's
       `GET /hub/api/` (its version, no auth, no database) through the same proxy:
       what loopback, the proxy and a Python web server cost any call, so the ratio
       is what the airlock adds (token check, locks, audited writes, snapshots).

Afterwards the final states and the audit log are checked: every request
released exactly once with one release record that verifies, each step's audit
event exactly once per request ("lost" counts missing states or events,
"duplicated" any extra). Target: p99 under 250 ms. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from sde.airlock import release_record  # noqa: E402
from sde.airlock.app.server import service_url  # noqa: E402
from sde.airlock.app.workfolders import folder_of  # noqa: E402
from sde.airlock.models import AirlockRequest, Release  # noqa: E402
from sde.audit import list_events  # noqa: E402
from sde.core.db import transaction  # noqa: E402
from sde.hub import localhost  # noqa: E402
from tests.support.airlock import (  # noqa: E402
    CHECKERS,
    GROUP,
    TABLE,
    ensure_person,
    ensure_project,
    write_work,
)
from tests.support.airlock_api import (  # noqa: E402
    PERSON_SCOPES,
    Api,
    mint,
    service_host,
    signed_in,
)
from tests.support.hub import HubSite, make_site, running  # noqa: E402

TARGET_P99_MS = 250.0
PROJECT = "bench"
PI = "bench-pi"
C1, C2, _ = CHECKERS
# Each request's audit events at the end of one workflow.
EXPECTED_EVENTS = {
    "airlock.request.create": 1,
    "airlock.file.add": 1,
    "airlock.group.update": 1,
    "airlock.request.submit": 1,
    "airlock.vote.cast": 2,
    "airlock.review.submit": 2,
    "airlock.request.approve": 1,
    "airlock.request.release": 1,
    "airlock.file.download": 1,
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Timings:
    """Latencies (ms) by call kind, from every client thread."""

    def __init__(self) -> None:
        self.by_kind: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def timed(self, kind: str, call: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        try:
            return call()
        except AssertionError as e:
            with self._lock:
                self.errors.append(f"{kind}: {e}")
            raise
        finally:
            ms = (time.perf_counter() - t) * 1000
            with self._lock:
                self.by_kind[kind].append(ms)

    def all(self) -> list[float]:
        return [v for vs in self.by_kind.values() for v in vs]


def prepare(site: HubSite, clients: int) -> list[str]:
    authors = [f"res{i:03d}" for i in range(clients)]
    with transaction(site.engine) as s:
        for checker in (C1, C2):
            ensure_person(s, checker, "output_checker")
        ensure_project(s, PROJECT, *authors, pi=PI)
    for name in [*authors, C1, C2]:
        site.enrol(name)
    for author in authors:
        write_work(folder_of(site.settings, author, PROJECT))
    return authors


def tokens(site: HubSite, author: str) -> tuple[Api, Api]:
    """The author's workspace caller and their own (person) caller, from one sign-in."""
    with signed_in(site, author) as c:
        person = mint(c, PERSON_SCOPES)
        server = mint(c, [f"custom:airlock:requests!server={author}/{PROJECT}"])
    ws = Api(service_url(site.settings) + "/services/airlock", server, timeout=120)
    return ws, Api(service_host(site), person, timeout=120)


def review(t: Timings, checker: Api, rid: str) -> None:
    t.timed("vote", lambda: checker.act(rid, "vote", name=TABLE, vote="approve"))
    t.timed("review", lambda: checker.act(rid, "review"))


def workflow(t: Timings, ws: Api, me: Api, c1: Api, c2: Api) -> str:
    rid = t.timed("create", lambda: ws.ok("POST", "/requests", json={"direction": "egress"}))["id"]
    t.timed("add_file", lambda: ws.act(rid, "add_file", path=TABLE, group=GROUP))
    t.timed(
        "set_group_text",
        lambda: ws.act(rid, "set_group_text", group=GROUP, context="Counts.", controls="Rounded."),
    )
    t.timed("submit", lambda: ws.act(rid, "submit"))
    for checker in (c1, c2):
        review(t, checker, rid)
    t.timed("approve", lambda: c1.act(rid, "approve"))
    t.timed("release", lambda: c2.act(rid, "release"))
    got = t.timed(
        "download", lambda: me.ok("GET", f"/requests/{rid}/download", params={"name": TABLE})
    )
    assert got.content.startswith(b"group,n"), "the download is the table as added"
    return rid


def floor(site: HubSite, clients: int, calls_each: int) -> Timings:
    t = Timings()
    url = f"{site.url.rstrip('/')}/hub/api/"

    def client() -> None:
        with localhost.client(timeout=120) as http:
            for _ in range(calls_each):
                r = t.timed("version", lambda: http.get(url))
                assert r.status_code == 200, r.text

    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client) for _ in range(clients)]:
            f.result()
    return t


def consistency(site: HubSite, rids: list[str]) -> tuple[int, int]:
    """(lost, duplicated) transitions, from the final states and the audit log."""
    lost = duplicated = 0
    with transaction(site.engine) as s:
        for rid in rids:
            request = s.get(AirlockRequest, rid)
            if request is None or request.status != "released":
                lost += 1
            n = s.scalar(select(func.count()).select_from(Release).where(Release.request_id == rid))
            lost += max(0, 1 - (n or 0))
            duplicated += max(0, (n or 0) - 1)
            found = s.get(Release, rid)
            if found is not None:
                release_record.verify(
                    {"record": found.record, "signature": found.signature}, site.settings
                )
    seen: Counter[tuple[str, str]] = Counter()
    for e in list_events(site.engine, action="airlock."):
        seen[(str(e["target"]), str(e["action"]))] += 1
    for rid in rids:
        for action, want in EXPECTED_EVENTS.items():
            got = seen[(f"airlock_request:{rid}", action)]
            lost += max(0, want - got)
            duplicated += max(0, got - want)
    return lost, duplicated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 clients, one round")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--db-url", help="the state database (default: SQLite in a temp dir)")
    parser.add_argument(
        "--postgres", action="store_true", help="a private PostgreSQL server instead of SQLite"
    )
    args = parser.parse_args()
    clients, rounds = (10, 1) if args.quick else (args.clients, args.rounds)

    with contextlib.ExitStack() as stack:
        db_url = stack.enter_context(private_postgres()) if args.postgres else args.db_url
        run(clients, rounds, db_url)


@contextlib.contextmanager
def private_postgres() -> Iterator[str]:
    """A database on a PostgreSQL server of this run's own (Debian's binaries), as the tests'."""
    from sqlalchemy import create_engine, text

    from tests.support import postgres

    bindir = postgres.find_bindir()
    if bindir is None:
        raise SystemExit("no PostgreSQL binaries: install Debian's postgresql package")
    server = postgres.start(bindir)
    try:
        admin = create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE sde_bench"))
        admin.dispose()
        yield server.url("sde_bench")
    finally:
        server.stop()


def keep_log(site: HubSite) -> None:
    """The hub's log (the service's tracebacks too), which goes with the temp dir."""
    if site.hub is not None:
        kept = Path(tempfile.gettempdir()) / "sde-bench-airlock-hub.log"
        shutil.copyfile(site.hub.log_path, kept)
        print(f"errors: the hub's and the service's log is kept in {kept}")


def run(clients: int, rounds: int, db_url: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="sde-bench-airlock-") as tmp:
        home = Path(tmp) / "home"
        site = make_site(home, SDE_DATABASE_URL=db_url) if db_url else make_site(home)
        with running(site):
            authors = prepare(site, clients)
            try:
                with ThreadPoolExecutor(8) as pool:
                    callers = list(pool.map(lambda a: tokens(site, a), authors))
            except AssertionError:
                keep_log(site)
                raise
            with signed_in(site, C1) as c:
                c1 = Api(service_host(site), mint(c, PERSON_SCOPES), timeout=120)
            with signed_in(site, C2) as c:
                c2 = Api(service_host(site), mint(c, PERSON_SCOPES), timeout=120)
            # One workflow first (imports, the hub's token cache), not timed.
            workflow(Timings(), *callers[0], c1, c2)

            ours = Timings()
            rids: list[str] = []

            def client(i: int) -> list[str]:
                ws, me = callers[i]
                return [workflow(ours, ws, me, c1, c2) for _ in range(rounds)]

            start = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                futures = [pool.submit(client, i) for i in range(clients)]
                for f in futures:
                    with contextlib.suppress(AssertionError):  # in ours.errors, and lost
                        rids.extend(f.result())
            elapsed = time.perf_counter() - start
            calls = len(ours.all())
            base = floor(site, clients, max(1, calls // clients))
            lost, duplicated = consistency(site, rids)
            lost += clients * rounds - len(rids)
            if ours.errors:
                keep_log(site)

    all_ms, floor_ms = ours.all(), base.all()
    p50, p99 = pct(all_ms, 0.5), pct(all_ms, 0.99)
    f50, f99 = pct(floor_ms, 0.5), pct(floor_ms, 0.99)
    rps = calls / elapsed
    print(f"clients {clients}, rounds {rounds}, {calls} calls in {elapsed:.1f} s ({rps:.0f}/s)")
    print(f"{'call':16} {'n':>5} {'p50 ms':>8} {'p99 ms':>8}")
    for kind, values in ours.by_kind.items():
        print(f"{kind:16} {len(values):5d} {pct(values, 0.5):8.1f} {pct(values, 0.99):8.1f}")
    print(f"{'all':16} {len(all_ms):5d} {p50:8.1f} {p99:8.1f}")
    print(f"{'floor /hub/api/':16} {len(floor_ms):5d} {f50:8.1f} {f99:8.1f}")
    print(
        f"ratio p50 {p50 / f50:.1f}x, p99 {p99 / f99:.1f}x; mean {statistics.mean(all_ms):.1f} ms"
    )
    verdict = "under" if p99 < TARGET_P99_MS else "OVER"
    print(
        f"p99 {p99:.0f} ms ({verdict} the {TARGET_P99_MS:.0f} ms target); "
        f"lost {lost}, duplicated {duplicated}, errors {len(ours.errors)}"
    )
    for e in ours.errors[:5]:
        print("  ", e[:300])
    print(
        json.dumps(
            {
                "database": "postgresql" if db_url and db_url.startswith("postgres") else "sqlite",
                "clients": clients,
                "calls": calls,
                "rps": round(rps, 1),
                "p50_ms": round(p50, 1),
                "p99_ms": round(p99, 1),
                "floor_p50_ms": round(f50, 1),
                "floor_p99_ms": round(f99, 1),
                "p99_ratio": round(p99 / f99, 2),
                "lost": lost,
                "duplicated": duplicated,
                "errors": len(ours.errors),
                "per_call_p99_ms": {k: round(pct(v, 0.99), 1) for k, v in ours.by_kind.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
