"""kill -9 of the airlock service during releases, repeated: every request stays consistent,
and the release completes when the client retries after the restart.

A real hub starts the managed service `airlock`; the test then runs the service
process itself with the same command (`python -m sde.airlock.app`) and the
environment the hub gave it (its hub API token, OAuth client, prefix), on a
port of its own, so it can SIGKILL and restart that process at once rather than
wait for the hub's 30-second poll to restart its own copy. Tokens are made as
tests/support/airlock_api.py makes them, and every call goes to the killed
process.

A release is one database transaction (the record, the state move and its audit
event together; the outputs re-hashed against the store first), so a killed
release leaves nothing behind: the request is either released, with exactly one
signed record whose files are intact in the store, or still approved with no
record and no release event. Nothing needs finishing at start-up; the client's
retry releases it (docs/airlock.md, "Crash recovery"). Several large output
files per request make each release take long enough to be cut short.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sde.airlock import release_record, snapshots
from sde.airlock.app.workfolders import folder_of
from sde.airlock.models import AirlockRequest, Release
from sde.audit import list_events
from sde.core.db import transaction
from sde.hub import localhost
from tests.support.airlock import AUTHOR, CHECKERS, GROUP, PROJECT, ensure_people
from tests.support.airlock_api import PERSON_SCOPES, Api, mint, signed_in
from tests.support.hub import HubSite, free_port, make_site, running

C1, C2, _ = CHECKERS
OUTPUTS = [f"results/part{i}.log" for i in range(3)]
PER_FILE = 12 * 2**20  # under airlock.max_file_size (16M)
KILL_DELAYS = (0.02, 0.08, 0.15, 0.3, 0.5)
PER_ROUND = 2


@pytest.fixture
def site(tmp_path: Path, db_url: str) -> Iterator[HubSite]:
    s = make_site(
        tmp_path / "home",
        SDE_DATABASE_URL=db_url,
        SDE_WORKSPACES_POOL_DIR=str(tmp_path / "pool"),
    )
    with transaction(s.engine) as ses:
        ensure_people(ses)
    for name in (AUTHOR, C1, C2):
        s.enrol(name)
    with running(s):
        yield s


def hub_service_env(site: HubSite) -> dict[str, str]:
    """The environment the hub started its `airlock` service with (from /proc)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
        if b"sde.airlock.app" in cmd and env.get("SDE_HOME") == site.env["SDE_HOME"]:
            return env
    raise AssertionError("the hub's airlock service is not running")


class Service:
    """The service's own process on `port`: started, killed with SIGKILL, started again."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env = {**env, "SDE_WORKSPACES_AIRLOCK_PORT": str(port)}
        self.url = f"http://127.0.0.1:{port}/services/airlock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "sde.airlock.app"], env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if localhost.request("GET", f"{self.url}/static/airlock.css", timeout=1).is_success:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("the airlock service did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


def approved_requests(ws: Api, c1: Api, c2: Api, n: int, work: Path) -> list[str]:
    rids = []
    for _ in range(n):
        rid = ws.ok("POST", "/requests", json={"direction": "egress"})["id"]
        for name in OUTPUTS:
            # Distinct bytes per request and file: each release re-hashes its own copies.
            (work / name).write_bytes(
                f"{rid} {name}\n".encode() + b"line of output text\n" * (PER_FILE // 20)
            )
            ws.act(rid, "add_file", path=name, group=GROUP)
        ws.act(rid, "set_group_text", group=GROUP, context="Logs.", controls="No counts.")
        ws.act(rid, "submit")
        for checker in (c1, c2):
            for name in OUTPUTS:
                checker.act(rid, "vote", name=name, vote="approve")
            checker.act(rid, "review")
        assert c1.act(rid, "approve")["status"] == "approved"
        rids.append(rid)
    return rids


def release_all(checker: Api, rids: list[str]) -> None:
    """Release each at once, as impatient clients do; a connection cut by the kill is fine."""

    def one(rid: str) -> None:
        with contextlib.suppress(httpx.TransportError):
            checker.call("POST", f"/requests/{rid}/release", json={})

    threads = [threading.Thread(target=one, args=(rid,)) for rid in rids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)


def states(site: HubSite, rids: list[str]) -> dict[str, str]:
    """Each request's state, after asserting it is one of the two consistent ones."""
    release_events: dict[str, int] = {}
    for e in list_events(site.engine, action="airlock.request.release"):
        target = str(e["target"]).removeprefix("airlock_request:")
        release_events[target] = release_events.get(target, 0) + 1
    found = {}
    with transaction(site.engine) as s:
        for rid in rids:
            request = s.get(AirlockRequest, rid)
            assert request is not None
            release = s.get(Release, rid)
            if request.status == "released":
                assert release is not None, f"{rid} released without a record"
                doc = {"record": release.record, "signature": release.signature}
                release_record.verify(doc, site.settings)
                names = sorted(f["name"] for f in doc["record"]["files"])
                assert names == OUTPUTS
                for f in doc["record"]["files"]:
                    stored = snapshots.open_verified(site.settings.airlock_store_dir, f["sha256"])
                    assert stored.stat().st_size == f["size"]
                assert release_events.get(rid) == 1, f"{rid}: release events"
            else:
                assert request.status == "approved", (rid, request.status)
                assert release is None, f"{rid} approved but holds a release record"
                assert rid not in release_events, f"{rid}: a release event without a release"
            found[rid] = str(request.status)
    return found


def test_airlock_release_killed_mid_way_repeatedly_is_consistent_and_completes(site, tmp_path):
    work = folder_of(site.settings, AUTHOR, PROJECT)
    (work / "results").mkdir(parents=True)
    with signed_in(site, AUTHOR) as c:
        ws_token = mint(c, [f"custom:airlock:requests!server={AUTHOR}/{PROJECT}"])
    tokens = {}
    for name in (C1, C2):
        with signed_in(site, name) as c:
            tokens[name] = mint(c, PERSON_SCOPES)
    service = Service(hub_service_env(site), free_port())
    service.start()
    try:
        ws = Api(service.url, ws_token, timeout=120)
        c1, c2 = (Api(service.url, tokens[n], timeout=120) for n in (C1, C2))
        everyone: list[str] = []
        interrupted = 0
        for delay in KILL_DELAYS:
            # The approved ones left by earlier kills are released again with the new ones.
            pending = [r for r, st in states(site, everyone).items() if st == "approved"]
            fresh = approved_requests(ws, c1, c2, PER_ROUND, work)
            everyone += fresh
            releasing = threading.Thread(target=release_all, args=(c2, pending + fresh))
            releasing.start()
            time.sleep(delay)
            service.kill()
            releasing.join(60)
            after = states(site, everyone)
            interrupted += sum(1 for r in pending + fresh if after[r] == "approved")
            service.start()
            ws = Api(service.url, ws_token, timeout=120)
            c1, c2 = (Api(service.url, tokens[n], timeout=120) for n in (C1, C2))
        assert interrupted > 0, "no kill landed before a release committed"

        # After the last restart the client retries: every release completes, exactly once.
        for rid, st in states(site, everyone).items():
            if st == "approved":
                assert c2.act(rid, "release")["status"] == "released"
            else:
                c2.refused(409, "POST", f"/requests/{rid}/release", json={})
        assert set(states(site, everyone).values()) == {"released"}
        with signed_in(site, AUTHOR) as c:
            me = Api(service.url, mint(c, PERSON_SCOPES), timeout=120)
        for rid in everyone:
            got = me.ok("GET", f"/requests/{rid}/download", params={"name": OUTPUTS[0]})
            assert got.content.startswith(f"{rid} {OUTPUTS[0]}\n".encode())
    finally:
        service.stop()
