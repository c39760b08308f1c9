"""Multi-process echo: 1 vs N workers, trio_uring vs stock trio, with trio_uring.workers.

    python benchmarks/bench_workers.py [--quick] [--rounds R] [--duration S] [--workers 1,2]
                                       [--conns 64,512] [--loadgen auto|c|python] [--json PATH]

The same server (benchmarks/workers_server.py: ``run_workers`` + one
SO_REUSEPORT listener per worker + the echo handler of benchmarks/servers.py)
runs with each worker count on each backend -- ``io_uring`` (trio_uring) and
``trio`` (trio's own epoll backend, the same supervisor and sockets) -- all
started at once and left idle between measurements.  The load generator
(benchmarks/loadgen.c, a closed loop of 64-byte messages, every byte
checked) runs in another process, pinned to its own CPU.  Each round measures
every (connections, workers, backend) once, in a shuffled order, so a change
in the machine's load hits them alike; the result is the median rate of each,
the median over rounds of trio_uring / trio, and per worker its median share
of the bytes echoed and its CPU time per second of measurement.

Workers are pinned to the CPUs this process may use, except the load
generator's, when there are enough of them; otherwise (a 2-CPU machine with
2 workers) they share CPUs with the load generator, which the output says.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness
from _harness import LOAD_CORE, BenchError, LineReader, reap, run_loadgen, spawn, tail

BACKENDS = ("trio", "io_uring")
SIZE = 64


class WorkersServer:
    """benchmarks/workers_server.py BACKEND WORKERS in its own session."""

    def __init__(self, backend: str, workers: int, cpus: list[int] | None, nofile: int) -> None:
        self.backend, self.workers, self.cpus = backend, workers, cpus
        self.stats_dir = tempfile.TemporaryDirectory(prefix="trio_uring-bench-workers-")
        self.argv = [
            sys.executable,
            str(_harness.BENCH / "workers_server.py"),
            backend,
            str(workers),
            self.stats_dir.name,
            "--nofile",
            str(nofile),
        ]
        if cpus:
            self.argv += ["--cpus", ",".join(map(str, cpus))]

    def start(self) -> None:
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = spawn(
            self.argv, cpu=_harness.ANY_CPU, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr
        )
        assert self.proc.stdout is not None
        reader = LineReader(self.proc.stdout)
        what = f"the {self.backend} server with {self.workers} worker(s) to start"
        while not (found := re.search(r"port (\d+) on", reader.readline(60.0, what))):
            pass
        self.port = int(found[1])

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Every worker has written its counters, so it is listening."""
        deadline = time.monotonic() + timeout
        while len(self.snapshot()) < self.workers:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise BenchError(f"{self.backend} x{self.workers}: workers did not start\n{tail(self.stderr)}")
            time.sleep(0.1)

    def snapshot(self) -> dict[int, dict[str, Any]]:
        found = {}
        for path in Path(self.stats_dir.name).glob("worker-*.json"):
            with contextlib.suppress(OSError, ValueError):
                info = json.loads(path.read_text())
                found[info["index"]] = info
        return found

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        reap(self.proc, grace=15.0)
        self.stderr.close()
        self.stats_dir.cleanup()


def worker_cpus(workers: int) -> tuple[list[int] | None, str]:
    allowed = sorted(os.sched_getaffinity(0))
    spare = [c for c in allowed if c != LOAD_CORE]
    if len(spare) >= workers:
        return spare[:workers], f"workers pinned to CPUs {spare[:workers]}, load generator on CPU {LOAD_CORE}"
    return allowed[:workers], (
        f"only {len(allowed)} CPUs: workers pinned to CPUs {allowed[:workers]}, "
        f"load generator on CPU {LOAD_CORE} shares one of them"
    )


@contextlib.contextmanager
def servers(workers: list[int], nofile: int) -> Iterator[dict[tuple[int, str], WorkersServer]]:
    running: dict[tuple[int, str], WorkersServer] = {}
    try:
        for count, backend in itertools.product(workers, BACKENDS):
            cpus, _ = worker_cpus(count)
            server = WorkersServer(backend, count, cpus, nofile)
            server.start()
            running[count, backend] = server
        for server in running.values():
            server.wait_ready()
        yield running
    finally:
        for server in running.values():
            server.stop()
        _harness.kill_all()


def measure_once(
    loadgen: list[str], server: WorkersServer, conns: int, warmup: float, duration: float
) -> dict[str, Any]:
    before = server.snapshot()
    result = run_loadgen(
        loadgen, "echo", server.port, conns, SIZE, warmup, duration, 2_000_000_000, timeout=warmup + duration + 120
    )
    time.sleep(0.5)  # the counters are written every 0.2 s
    after = server.snapshot()
    moved = {i: after[i]["bytes"] - before[i]["bytes"] for i in after}
    total = sum(moved.values()) or 1
    return {
        "rate": result["rate"],
        "per_worker": {
            str(i): {
                "pid": after[i]["pid"],
                "cpu": after[i]["cpu"],
                "backend": after[i]["backend"],
                "share": moved[i] / total,
                "cpu_s_per_s": (after[i]["cpu_s"] - before[i]["cpu_s"]) / (warmup + duration),
            }
            for i in sorted(after)
        },
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    workers = runs[0]["per_worker"].keys()
    return {
        "rate_median": statistics.median(r["rate"] for r in runs),
        "rates": [round(r["rate"]) for r in runs],
        "per_worker": {
            w: {
                "backend": runs[-1]["per_worker"][w]["backend"],
                "cpu": runs[-1]["per_worker"][w]["cpu"],
                "share_median": statistics.median(r["per_worker"][w]["share"] for r in runs),
                "cpu_s_per_s_median": statistics.median(r["per_worker"][w]["cpu_s_per_s"] for r in runs),
            }
            for w in workers
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s: a smoke run, numbers mean little")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    parser.add_argument("--conns", default="64,512")
    parser.add_argument("--loadgen", choices=["auto", "c", "python"], default="auto")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    rounds, duration, warmup = (1, 1.0, 0.2) if args.quick else (args.rounds, args.duration, args.warmup)
    workers = [int(w) for w in args.workers.split(",")]
    conns = [int(c) for c in args.conns.split(",")]
    loadgen, loadgen_info = _harness.choose_loadgen(args.loadgen)
    configs = list(itertools.product(conns, workers, BACKENDS))
    samples: dict[tuple[int, int, str], list[dict[str, Any]]] = {c: [] for c in configs}
    started = time.monotonic()
    with _harness.package_snapshot() as package, servers(workers, max(conns) + 256) as running:
        rng = random.Random(0)
        for number in range(rounds):
            order = list(configs)
            rng.shuffle(order)
            for conn, count, backend in order:
                samples[conn, count, backend].append(
                    measure_once(loadgen, running[count, backend], conn, warmup, duration)
                )
            print(f"round {number + 1}/{rounds} done", file=sys.stderr, flush=True)
    result: dict[str, Any] = {
        "loadgen": loadgen_info,
        "rounds": rounds,
        "duration_s": duration,
        "warmup_s": warmup,
        "message_bytes": SIZE,
        "cpus": sorted(os.sched_getaffinity(0)),
        "pinning": {str(w): worker_cpus(w)[1] for w in workers},
        "load_average": os.getloadavg(),
        "package": package,
        "elapsed_s": round(time.monotonic() - started, 1),
        "results": {f"{c} conns, {w} workers, {b}": summarize(samples[c, w, b]) for c, w, b in configs},
    }
    for conn, count in itertools.product(conns, workers):
        ratios = [
            u["rate"] / t["rate"]
            for u, t in zip(samples[conn, count, "io_uring"], samples[conn, count, "trio"], strict=True)
            if t["rate"]
        ]
        result["results"][f"{conn} conns, {count} workers, io_uring/trio"] = statistics.median(ratios)
    print_table(result, conns, workers)
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def print_table(result: dict[str, Any], conns: list[int], workers: list[int]) -> None:
    res = result["results"]
    print(
        f"echo, {SIZE}-byte messages, {result['rounds']} round(s) x {result['duration_s']:g} s, {result['loadgen']['description']}"
    )
    for w in workers:
        print(f"  {w} worker(s): {result['pinning'][str(w)]}")
    print(f"  load average at the end: {', '.join(f'{x:.1f}' for x in result['load_average'])}")
    print(
        f"{'conns':>6} {'workers':>7} {'trio rt/s':>11} {'io_uring rt/s':>14} {'ratio':>6}   per-worker share / CPU s per s (trio | io_uring)"
    )
    for c, w in itertools.product(conns, workers):
        t, u = res[f"{c} conns, {w} workers, trio"], res[f"{c} conns, {w} workers, io_uring"]
        shares = " | ".join(
            ", ".join(
                f"w{i}: {p['share_median']:.0%}/{p['cpu_s_per_s_median']:.2f}"
                for i, p in sorted(s["per_worker"].items())
            )
            for s in (t, u)
        )
        ratio = res[f"{c} conns, {w} workers, io_uring/trio"]
        print(f"{c:>6} {w:>7} {t['rate_median']:>11,.0f} {u['rate_median']:>14,.0f} {ratio:>6.2f}   {shares}")


if __name__ == "__main__":
    sys.exit(main())
