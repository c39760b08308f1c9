"""The benchmark cases.  Each returns a JSON-able dict with a ``status``.

Method, for every case: stock trio and trio_uring (and, where they serve as
reference points, asyncio and uvloop) are measured in the same run, one
after the other within each round, the order rotated from round to round;
the figures reported are medians over the rounds, and the ratio is the
median of the per-round ratios trio_uring / stock trio.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import (
    ANY_CPU,
    BENCH,
    LOAD_CORE,
    SERVER_CORE,
    BenchError,
    Server,
    count_syscalls,
    idle_clients,
    reap,
    run_loadgen,
    run_wrk,
    spawn,
)

STOCK, URING = "trio", "trio_uring"


@dataclass(frozen=True)
class Config:
    quick: bool
    rounds: int
    size: int
    echo_conns: tuple[int, ...]
    echo_warmup: float
    echo_duration: float
    echo_max_round_trips: int
    http_conns: int
    http_seconds: int
    http_warmup: float
    idle_conns: int
    syscall_conns: int
    syscall_round_trips: int
    files_timeout: float


FULL = Config(
    quick=False,
    rounds=3,
    size=64,
    echo_conns=(1, 64, 512),
    echo_warmup=0.3,
    echo_duration=2.0,
    echo_max_round_trips=20_000_000,
    http_conns=64,
    http_seconds=2,
    http_warmup=0.3,
    idle_conns=5000,
    syscall_conns=64,
    syscall_round_trips=50_000,
    files_timeout=900.0,
)

QUICK = Config(
    quick=True,
    rounds=1,
    size=64,
    echo_conns=(1, 8, 64),
    echo_warmup=0.05,
    echo_duration=0.25,
    echo_max_round_trips=1_000_000,
    http_conns=8,
    http_seconds=1,
    http_warmup=0.05,
    idle_conns=200,
    syscall_conns=64,
    syscall_round_trips=2_000,
    files_timeout=60.0,
)


@dataclass(frozen=True)
class Env:
    """What this machine offers, found once by run.py."""

    loadgen: list[str]
    uvloop: bool
    h11: bool
    wrk: bool
    syscall_tool: str | None


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def rotated(items: Sequence[str], by: int) -> list[str]:
    by %= len(items)
    return [*items[by:], *items[:by]]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio_of_medians_by_round(numerator: Sequence[float], denominator: Sequence[float]) -> float | None:
    """The median of the per-round ratios (the issue's "medians of ratios")."""
    ratios = [n / d for n, d in zip(numerator, denominator, strict=False) if d]
    return median(ratios)


def reference_backends(env: Env, kind: str) -> tuple[list[str], dict[str, str]]:
    """The asyncio/uvloop servers that check the load generator, and those missing."""
    wanted = ["asyncio", "uvloop", "uvloop-streams"] if kind == "echo" else ["asyncio", "uvloop"]
    missing = {}
    if not env.uvloop:
        for name in wanted[1:]:
            missing[name] = "uvloop is not installed (make bench installs the bench extra)"
    return [name for name in wanted if name not in missing], missing


def summarize(samples: dict[str, list[dict[str, Any]]], key: str) -> dict[str, Any]:
    backends: dict[str, Any] = {}
    for backend, runs in samples.items():
        values = [run[key] for run in runs]
        backends[backend] = {"median": median(values), "samples": values, "runs": runs}
    ratio = None
    if STOCK in samples and URING in samples:
        ratio = ratio_of_medians_by_round(
            [r[key] for r in samples[URING]],
            [r[key] for r in samples[STOCK]],
        )
    return {"backends": backends, "ratio": ratio}


# ---------------------------------------------------------------- echo


def echo_case(cfg: Config, env: Env) -> dict[str, Any]:
    refs, missing = reference_backends(env, "echo")
    backends = [STOCK, URING, *refs]
    samples: dict[int, dict[str, list[dict[str, Any]]]] = {c: {b: [] for b in backends} for c in cfg.echo_conns}
    for round_index in range(cfg.rounds):
        for backend in rotated(backends, round_index):
            with Server("echo", backend, nofile=max(cfg.echo_conns) + 256) as server:
                for conns in cfg.echo_conns:
                    cpu0, t0 = server.cpu_seconds(), time.monotonic()
                    result = run_loadgen(
                        env.loadgen,
                        "echo",
                        server.port,
                        conns,
                        cfg.size,
                        cfg.echo_warmup,
                        cfg.echo_duration,
                        cfg.echo_max_round_trips,
                        timeout=cfg.echo_warmup + cfg.echo_duration + 60,
                    )
                    server_cpu = (server.cpu_seconds() - cpu0) / (time.monotonic() - t0)
                    samples[conns][backend].append(
                        {
                            "rate": result["rate"],
                            "round_trips": result["round_trips"],
                            "loadgen_cpu": result["cpu_fraction"],
                            "server_cpu": round(server_cpu, 3),
                        }
                    )
                    server.wait_connections(0, 15.0)
    return {
        "status": "ok",
        "unit": "round trips/s",
        "size": cfg.size,
        "duration_s": cfg.echo_duration,
        "warmup_s": cfg.echo_warmup,
        "backends_unavailable": missing,
        "connections": {str(c): summarize(samples[c], "rate") for c in cfg.echo_conns},
    }


# ---------------------------------------------------------------- HTTP


def http_case(cfg: Config, env: Env) -> dict[str, Any]:
    if not env.h11:
        return {"status": "unavailable", "reason": "h11 is not installed (make bench installs the bench extra)"}
    refs, missing = reference_backends(env, "http")
    backends = [STOCK, URING, *refs]
    samples: dict[str, list[dict[str, Any]]] = {b: [] for b in backends}
    tool = "wrk" if env.wrk else "loadgen http"
    for round_index in range(cfg.rounds):
        for backend in rotated(backends, round_index):
            with Server("http", backend, nofile=cfg.http_conns + 256) as server:
                # warm-up, which also checks every response is a well-formed 200
                run_loadgen(env.loadgen, "http", server.port, cfg.http_conns, 0, cfg.http_warmup, 0, timeout=60)
                server.wait_connections(0, 15.0)
                cpu0, t0 = server.cpu_seconds(), time.monotonic()
                if env.wrk:
                    result = run_wrk(server.port, cfg.http_conns, cfg.http_seconds)
                else:
                    result = run_loadgen(
                        env.loadgen,
                        "http",
                        server.port,
                        cfg.http_conns,
                        0,
                        cfg.http_seconds,
                        cfg.echo_max_round_trips,
                        timeout=cfg.http_seconds + 60,
                    )
                result["server_cpu"] = round((server.cpu_seconds() - cpu0) / (time.monotonic() - t0), 3)
                samples[backend].append(result)
    summary = summarize(samples, "rate")
    return {
        "status": "ok",
        "unit": "requests/s",
        "load_generator": tool,
        "connections": cfg.http_conns,
        "seconds": cfg.http_seconds,
        "server": "h11 over trio.serve_tcp (trio, trio_uring); asyncio/uvloop: minimal fixed-response Protocol",
        "backends_unavailable": missing,
        **summary,
    }


# ---------------------------------------------------------------- idle connections


def idle_case(cfg: Config, env: Env) -> dict[str, Any]:
    n = cfg.idle_conns
    samples: dict[str, list[dict[str, Any]]] = {STOCK: [], URING: []}
    for round_index in range(cfg.rounds):
        for backend in rotated([STOCK, URING], round_index):
            with Server("echo", backend, nofile=n + 256) as server:
                # touch the code paths once so their first-use costs are not counted per connection
                run_loadgen(env.loadgen, "echo", server.port, 16, cfg.size, 0, 0.05, 10_000, timeout=60)
                server.wait_connections(0, 15.0)
                time.sleep(0.3)
                before = server.rss_kib()
                with idle_clients(env.loadgen, server.port, n, cfg.size, hold=120.0) as ready:
                    server.wait_connections(n, 60.0)
                    after = settled_rss(server)
                samples[backend].append(
                    {
                        "kib_per_conn": (after - before) / n,
                        "rss_before_kib": before,
                        "rss_after_kib": after,
                        "connect_s": ready["connect_s"],
                    }
                )
    return {
        "status": "ok",
        "unit": "KiB per connection",
        "connections": n,
        "how": "VmRSS with N connections each parked in receive_some(65536), minus VmRSS before, over N",
        **summarize(samples, "kib_per_conn"),
    }


def settled_rss(server: Server) -> int:
    """VmRSS once it stops moving (two equal readings 0.2 s apart, at most 3 s)."""
    time.sleep(0.3)
    last = server.rss_kib()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = server.rss_kib()
        if now == last:
            break
        last = now
    return last


# ---------------------------------------------------------------- syscalls per round trip


def ops_delta(before: dict[str, int] | None, after: dict[str, int] | None, per: int) -> dict[str, float] | None:
    if before is None or after is None:
        return None
    return {op: round((after[op] - before.get(op, 0)) / per, 3) for op in sorted(after) if after[op] != before.get(op)}


def syscalls_case(cfg: Config, env: Env) -> dict[str, Any]:
    if env.syscall_tool is None:
        return {"status": "unavailable", "reason": "neither perf nor strace can count syscalls here"}
    n, conns = cfg.syscall_round_trips, cfg.syscall_conns
    samples: dict[str, list[dict[str, Any]]] = {STOCK: [], URING: []}
    for round_index in range(cfg.rounds):
        for backend in rotated([STOCK, URING], round_index):
            with Server("echo", backend, nofile=conns + 256) as server:
                run_loadgen(env.loadgen, "echo", server.port, conns, cfg.size, 0, 0.2, 1_000_000, timeout=60)
                server.wait_connections(0, 15.0)
                ops_before = server.stats()["ops_submitted"]
                with count_syscalls(env.syscall_tool, server.pid) as counted:
                    result = run_loadgen(env.loadgen, "echo", server.port, conns, cfg.size, 0, 120, n, timeout=180)
                    time.sleep(0.3)  # let the server see the connections close (not polled: that is syscalls too)
                server.wait_connections(0, 15.0)
                if result["round_trips"] != n:
                    raise BenchError(
                        f"expected exactly {n} round trips, the load generator made {result['round_trips']}"
                    )
                ops_after = server.stats()["ops_submitted"]
                samples[backend].append(
                    {
                        "syscalls": counted["syscalls"],
                        "round_trips": n,
                        "per_round_trip": counted["syscalls"] / n,
                        "io_uring_ops_per_round_trip": ops_delta(ops_before, ops_after, n),
                    }
                )
    return {
        "status": "ok",
        "unit": "syscalls per round trip (server process)",
        "tool": env.syscall_tool,
        "connections": conns,
        "round_trips": n,
        "how": "the server's syscalls while the load generator connects, makes exactly N round trips and closes",
        **summarize(samples, "per_round_trip"),
    }


# ---------------------------------------------------------------- files (benchmarks/bench_files.py)


#: where bench_files.py runs: pinned to the servers' CPU (as the socket
#: benchmarks' servers), and free to use every CPU (as a user's process:
#: trio.open_file's worker threads then run on the other CPU)
FILE_PLACEMENTS: tuple[tuple[str, int], ...] = (("one CPU", SERVER_CORE), ("all CPUs", ANY_CPU))


def files_case(cfg: Config, env: Env) -> dict[str, Any]:
    script = BENCH / "bench_files.py"
    if not script.exists():
        return {"status": "unavailable", "reason": "benchmarks/bench_files.py does not exist yet (file I/O issue)"}
    placements: dict[str, Any] = {}
    for label, cpu in FILE_PLACEMENTS:
        placements[label] = files_run(cfg, script, cpu)
    output = "\n".join(f"-- {label} --\n{run['output'].rstrip()}" for label, run in placements.items())
    first = next(iter(placements.values()))
    return {"status": "ok", "placements": placements, "output": output, "data": first["data"]}


def files_run(cfg: Config, script: Path, cpu: int) -> dict[str, Any]:
    """One run of a file benchmark script (bench_files.py, bench_anyio_files.py)
    pinned to ``cpu``: its stdout and the JSON it wrote."""
    name = script.name
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / f"{script.stem}.json"
        quick = ["--quick"] if cfg.quick else []
        args = [*quick, "--json", str(out)]
        proc = spawn(
            [sys.executable, "-c", CALL_MAIN, str(script), *args],
            cpu=cpu,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        try:
            stdout_b, stderr_b = proc.communicate(timeout=cfg.files_timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{name} timed out after {cfg.files_timeout:g} s") from None
        finally:
            reap(proc)
        stdout, stderr = stdout_b.decode(), stderr_b.decode()
        if proc.returncode != 0:
            raise BenchError(f"{name} exited {proc.returncode}: {stderr[-800:]}")
        if not out.exists():
            raise BenchError(f"{name} wrote no JSON: {stderr[-400:]}")
        return {"argv": args, "cpu": cpu, "output": stdout, "data": json.loads(out.read_text())}


CALL_MAIN = (
    "import sys, runpy; path = sys.argv[1]; sys.path[0] = path.rsplit('/', 1)[0]; "
    "mod = runpy.run_path(path); sys.exit(mod['main'](sys.argv[2:]))"
)


# ---------------------------------------------------------------- the load-generator check


def loadgen_check(echo: dict[str, Any], http: dict[str, Any], load_core: int = LOAD_CORE) -> dict[str, Any]:
    """Could the load generator drive faster servers than trio's?  Headroom = best reference / best trio."""
    checks: dict[str, Any] = {}
    sources: list[tuple[str, dict[str, Any]]] = []
    if echo.get("status") == "ok":
        sources += [(f"echo {c} conn{'s' if c != '1' else ''}", s["backends"]) for c, s in echo["connections"].items()]
    if http.get("status") == "ok":
        sources.append(("http", http["backends"]))
    for name, backends in sources:
        medians = {b: v["median"] for b, v in backends.items() if v["median"]}
        trio_best = max((medians[b] for b in (STOCK, URING) if b in medians), default=None)
        refs = {b: m for b, m in medians.items() if b not in (STOCK, URING)}
        if not trio_best or not refs:
            checks[name] = {"verdict": "unchecked", "reason": "no reference server measured"}
            continue
        best_ref = max(refs, key=lambda b: refs[b])
        headroom = refs[best_ref] / trio_best
        checks[name] = {
            "fastest_reference": best_ref,
            "reference_rate": refs[best_ref],
            "fastest_trio_rate": trio_best,
            "headroom": round(headroom, 2),
            "verdict": "ok" if headroom >= 1.2 else "suspect",
        }
    return {
        "status": "ok" if sources else "unavailable",
        **({} if sources else {"reason": "neither echo nor http was measured"}),
        "rule": "the load generator is not the bottleneck when it drives a reference server (asyncio/uvloop) "
        "at >= 1.2x the fastest trio backend, with the same load generator and settings, in the same run",
        "load_core": load_core,
        "checks": checks,
    }
