"""Adding a file to the airlock (copy + hash + store, `snapshots.copy_in`) beside the
floor of `cp` plus `sha256sum` of the same file.

    .venv/bin/python benchmarks/airlock_add.py [--quick] [--size-mb N] [--repeat N] [--dir D]

copy_in reads the file once beneath the work folder, hashes and writes it in the
same pass, and fsyncs it (the store is evidence; writeback is started chunk by
chunk, so the disk writes while the next chunk is hashed); the floor reads it
twice (cp, then sha256sum) and does not fsync. Each runs --repeat times over a
warm page cache, interleaved, after a sync, and the median is taken. Target:
copy_in within 1.5x of the floor. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sde.airlock.snapshots import copy_in, stored_path  # noqa: E402
from sde.core.config import load_settings  # noqa: E402

TARGET = 1.5


def make_file(path: Path, size_mb: int) -> None:
    """Incompressible bytes (no filesystem shortcut), as a .log the airlock takes."""
    block = os.urandom(2**20)
    with open(path, "wb") as fh:
        for i in range(size_mb):
            fh.write(block[i % 251 :] + block[: i % 251])


def timed(run) -> float:
    os.sync()  # neither run pays for the other's writeback
    t = time.perf_counter()
    run()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 MB, 3 runs (under a minute)")
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    size_mb, repeat = (50, 3) if args.quick else (args.size_mb, args.repeat)

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="sde-bench-airlock-") as tmp:
        base = Path(tmp)
        work, store, floor_out = base / "work", base / "store", base / "floor-copy.log"
        work.mkdir()
        src = work / "output.log"
        make_file(src, size_mb)
        settings = load_settings({"SDE_HOME": str(base / "home")})
        settings = replace(settings, airlock=replace(settings.airlock, max_file_size="100G"))
        subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)  # warm cache

        def floor() -> None:
            floor_out.unlink(missing_ok=True)
            subprocess.run(["cp", str(src), str(floor_out)], check=True)
            subprocess.run(["sha256sum", str(src)], stdout=subprocess.DEVNULL, check=True)

        def add() -> None:
            if store.exists():
                shutil.rmtree(store)  # each run stores afresh, not the idempotent shortcut
            snap = copy_in(work, "output.log", store, settings)
            assert stored_path(store, snap.sha256).stat().st_size == size_mb * 2**20

        floor()
        add()  # one of each first: allocate, load libraries
        floor_times, add_times = [], []
        for _ in range(repeat):  # interleaved, so a slow moment of the machine hits both
            floor_times.append(timed(floor))
            add_times.append(timed(add))
        floor_s, add_s = statistics.median(floor_times), statistics.median(add_times)

    ratio = add_s / floor_s
    mb_s = size_mb / add_s
    print(f"file                 {size_mb} MB, median of {repeat}")
    print(f"cp + sha256sum       {floor_s * 1000:8.0f} ms")
    print(f"copy_in              {add_s * 1000:8.0f} ms  ({mb_s:.0f} MB/s)")
    verdict = "within" if ratio <= TARGET else "OVER"
    print(f"ratio                {ratio:8.2f}x  ({verdict} the {TARGET}x target)")
    print(
        json.dumps(
            {
                "size_mb": size_mb,
                "floor_ms": round(floor_s * 1000, 1),
                "add_ms": round(add_s * 1000, 1),
                "add_ratio": round(ratio, 3),
                "target": TARGET,
            }
        )
    )


if __name__ == "__main__":
    main()
