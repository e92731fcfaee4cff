"""Sign-in to first kernel result through the hub, beside the floor with no hub.

    .venv/bin/python benchmarks/spawn.py [--quick] [--runs N] [--image sde-workspace:latest]

ours:  sign in at the hub's login page (password + TOTP, every registry check),
       start the project workspace (access_decision, audit, hardened container
       on the internal network, data mounted), start a kernel and execute
       `1+1` over the Jupyter websocket protocol. With the warm pool (default,
       `--warm-pool 0` for none) the container is a pool container claimed at
       the spawn; every timed run, ours and floor, starts with the pool full and
       idle, so neither pays for nor competes with a refill.
floor: `docker run` of the same image, with the same container options
       (hardening, limits, network, mounts), starting `jupyter server`, then
       the same kernel start and execution over the same protocol; no hub.

Reports p50 and p95 of each, and the overhead (ours minus floor).
Target: p50 overhead at most 0.5 s. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sde.hub.client import HubClient, run_in_kernel  # noqa: E402
from sde.workspaces.pool import wait_ready  # noqa: E402
from tests.support.hub import PASSWORD, HubSite, make_site, running  # noqa: E402
from tests.support.hub_data import provision_project  # noqa: E402
from tests.support.registry import make_active_project, make_person  # noqa: E402

TARGET_OVERHEAD_S = 0.5
PROJECT = "bench-project"
FLOOR_COMMAND = ["jupyter", "server", "--ip=0.0.0.0", "--port=8888"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ours(site: HubSite, username: str) -> float:
    """Seconds from the login form to the result of `1+1` in a new workspace kernel."""
    t = time.perf_counter()
    with HubClient(site.url) as c:
        result = c.login(username, PASSWORD, site.code(username))
        if not result.ok:
            raise SystemExit(f"sign-in failed: {result}")
        c.api_token()
        server = c.start_workspace(PROJECT)
        out = c.execute(server, "1+1")
        elapsed = time.perf_counter() - t
        if out != "2":
            raise SystemExit(f"kernel answered {out!r}")
        c.stop_workspace(PROJECT)
        _wait_stopped(c)
    return elapsed


def _wait_stopped(c: HubClient, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        servers = c.api("GET", f"/users/{c.username}").json().get("servers", {})
        if PROJECT not in servers:
            return
        time.sleep(0.1)


def floor(site: HubSite, image: str, volume: str) -> float:
    """Seconds from `docker run` to the result of `1+1` in a kernel of `jupyter server`.

    The container gets the same options as a workspace (hardening, limits,
    network, mounts): the difference to ours is the hub alone.
    """
    import docker

    from sde.workspaces import hardening

    data = (site.settings.projects_dir / PROJECT / "data").resolve()
    options = hardening.workspace_options(data, volume, site.settings)
    client = docker.from_env()
    token = secrets.token_hex(16)
    t = time.perf_counter()
    container = client.containers.run(
        image,
        [*FLOOR_COMMAND, f"--IdentityProvider.token={token}"],
        detach=True,
        remove=True,
        **hardening.run_kwargs(options),
    )
    try:
        container.reload()
        networks = container.attrs["NetworkSettings"]["Networks"]
        base = f"http://{networks[options['network_name']]['IPAddress']}:8888"
        while True:
            try:
                if httpx.get(f"{base}/api", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        out = run_in_kernel(base, "/", token, "1+1")
        elapsed = time.perf_counter() - t
        if out != "2":
            raise SystemExit(f"kernel answered {out!r}")
    finally:
        container.stop(timeout=2)
    return elapsed


def settle(site: HubSite) -> None:
    """Wait until the warm pool is full and idle (no container warming)."""
    if site.settings.workspaces.warm_pool:
        wait_ready(site.settings)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 runs each (about a minute)")
    ap.add_argument("--runs", type=int, default=10, help="runs of each (default 10)")
    ap.add_argument("--image", default="sde-workspace:latest", help="workspace image")
    ap.add_argument(
        "--warm-pool", type=int, default=1, help="warm pool size of the hub (default 1; 0: none)"
    )
    args = ap.parse_args()
    runs = 2 if args.quick else max(args.runs, 1)

    with tempfile.TemporaryDirectory(prefix="sde-bench-spawn-") as tmp:
        site = make_site(
            Path(tmp) / "home",
            docker=True,
            SDE_HUB_IMAGE=args.image,
            SDE_WORKSPACES_WARM_POOL=str(args.warm_pool),
        )
        # A person per run: each TOTP code is accepted once, and a run takes less than
        # the 30 seconds of a code.
        people = [f"bench{i}" for i in range(runs + 1)]
        for name in people:
            make_person(site.engine, name)
        make_active_project(site.engine, PROJECT, *people)
        provision_project(site, PROJECT)
        for name in people:
            site.enrol(name)
        with running(site):
            # One untimed warm-up of each: the first container start pays for page cache.
            volume = f"{site.settings.hub.name}-work-floor-{PROJECT}"
            ours(site, people[0])
            floor(site, args.image, volume)
            # Interleaved, so that both see the same load on a shared machine.
            ours_s, floor_s = [], []
            for i, name in enumerate(people[1:], 1):
                settle(site)
                ours_s.append(ours(site, name))
                settle(site)
                floor_s.append(floor(site, args.image, volume))
                print(f"run {i}: ours {ours_s[-1]:.3f} s, floor {floor_s[-1]:.3f} s", flush=True)

    figures = {
        "runs": runs,
        "ours_p50_s": round(statistics.median(ours_s), 3),
        "ours_p95_s": round(pct(ours_s, 0.95), 3),
        "floor_p50_s": round(statistics.median(floor_s), 3),
        "floor_p95_s": round(pct(floor_s, 0.95), 3),
    }
    figures["overhead_p50_s"] = round(figures["ours_p50_s"] - figures["floor_p50_s"], 3)
    figures["overhead_p95_s"] = round(figures["ours_p95_s"] - figures["floor_p95_s"], 3)
    paired = [a - b for a, b in zip(ours_s, floor_s, strict=True)]
    figures["paired_overhead_p50_s"] = round(statistics.median(paired), 3)
    figures["ratio"] = round(figures["ours_p50_s"] / figures["floor_p50_s"], 2)
    figures["warm_pool"] = args.warm_pool
    figures["target_overhead_s"] = TARGET_OVERHEAD_S
    print(f"{'':8}{'p50 s':>8}{'p95 s':>8}")
    print(f"{'ours':8}{figures['ours_p50_s']:>8.3f}{figures['ours_p95_s']:>8.3f}")
    print(f"{'floor':8}{figures['floor_p50_s']:>8.3f}{figures['floor_p95_s']:>8.3f}")
    print(
        f"overhead p50 {figures['overhead_p50_s']:.3f} s (target <= {TARGET_OVERHEAD_S} s), "
        f"ratio {figures['ratio']:.2f}; median of paired differences "
        f"{figures['paired_overhead_p50_s']:.3f} s"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
