"""anyio.open_file: random 4 KiB reads by 32 tasks, anyio on stock trio
against anyio on trio_uring (the hook: trio_uring.open_file under anyio's API).

    python benchmarks/bench_anyio_files.py [--quick] [--rounds N] [--json PATH]

32 tasks, each with its own ``anyio.open_file(path, "rb")``, do ``seek`` +
``read(4096)`` at random 4 KiB-aligned offsets of a cached file (256 MiB;
16 MiB with ``--quick``) for a fixed time; reads per second.  The same
function runs under ``anyio.run(backend="trio")`` (stock trio: every call a
worker-thread job) and ``trio_uring.anyio_run`` (io_uring), alternating, the
order rotated from round to round; the figure is the median over the rounds
and the ratio the median of the per-round ratios.  Each run also checks
which file class anyio handed out.  ``main(argv)`` returns 0; it never fails
because something was slow.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

import anyio
from bench_files import make_file, warm

import trio_uring

RUNNERS = {
    "stock": lambda fn, *args: anyio.run(fn, *args, backend="trio"),
    "trio_uring": trio_uring.anyio_run,
}


async def random4k(path: str, size: int, seconds: float, tasks: int) -> tuple[float, str]:
    blocks = size // 4096
    counts: list[int] = []
    kinds: set[str] = set()
    deadline = time.perf_counter() + seconds

    async def worker(seed: int) -> None:
        rnd = random.Random(seed)
        n = 0
        async with await anyio.open_file(path, "rb") as f:
            kinds.add(type(f).__qualname__)
            while time.perf_counter() < deadline:
                await f.seek(rnd.randrange(blocks) * 4096)
                await f.read(4096)
                n += 1
        counts.append(n)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(tasks):
            tg.start_soon(worker, i)
    return sum(counts) / (time.perf_counter() - start), ",".join(sorted(kinds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 16 MiB file and short runs")
    parser.add_argument("--rounds", type=int, default=0, help="rounds (default 5, quick 3)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    size = (16 if args.quick else 256) << 20
    seconds = 0.3 if args.quick else 2.0
    rounds = args.rounds or (3 if args.quick else 5)
    directory = tempfile.mkdtemp(prefix="bench_anyio_files-")
    runs: dict[str, list[float]] = {name: [] for name in RUNNERS}
    kinds: dict[str, str] = {}
    try:
        path = os.path.join(directory, "big")
        make_file(path, size)
        warm(path)
        names = list(RUNNERS)
        for r in range(rounds):
            for name in names[r % 2 :] + names[: r % 2]:
                rate, kinds[name] = RUNNERS[name](random4k, path, size, seconds, 32)
                runs[name].append(rate)
            print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {v[-1]:,.0f}/s" for n, v in runs.items()), flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    median = {name: statistics.median(v) for name, v in runs.items()}
    ratio = statistics.median(u / s for u, s in zip(runs["trio_uring"], runs["stock"], strict=True) if s)
    result: dict[str, Any] = {
        "unit": "reads/s",
        "runs": runs,
        "median": median,
        "ratio": ratio,
        "file_classes": kinds,
        "cpus": len(os.sched_getaffinity(0)),
        "size": size,
        "seconds": seconds,
    }
    print(
        f"anyio.open_file random 4 KiB reads, 32 tasks: stock trio {median['stock']:,.0f}/s ({kinds['stock']}), "
        f"trio_uring {median['trio_uring']:,.0f}/s ({kinds['trio_uring']}): {ratio:.2f}x"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
