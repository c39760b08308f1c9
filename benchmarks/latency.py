"""Latency at fixed request rates, stock trio vs trio_uring: ``make bench-latency``.

    python benchmarks/latency.py [--quick] [--rounds N] [--only CASE,...]
                                 [--json PATH] [--plot PATH | --no-plot] [--wait sleep|spin] [--realtime]
    python benchmarks/latency.py --report RESULTS.json [--plot PATH]

Cases: echo (64 bytes) and HTTP (h11) at 1, 8 and 64 connections
(``echo1``, ``echo8``, ``echo64``, ``http1``, ``http8``, ``http64``), and
``idle_cpu``.  For each, stock trio's closed-loop maximum is measured first,
in this run (``loadgen echo`` / ``loadgen http``); then ``loadgen echo-rate``
/ ``http-rate`` sends requests on a fixed schedule at 25 %, 50 % and 90 % of
that maximum (open loop: no coordinated omission) to three servers: stock
trio, trio_uring with its default wait (the adaptive spin) and trio_uring
with the spin turned off (``TRIO_URING_SPIN_US=0``), alternated within each
round, the order rotated from round to round.  It reports p50, p99, p99.9
and max per backend (medians over the rounds), the p50 and p99 ratios
trio_uring / stock trio (medians of the per-round ratios), the server's CPU
time per request, and how late the generator's own sends were.  ``idle_cpu``
is the CPU time each trio server uses over 10 s with nothing to do, right
after a burst of requests.

Servers run pinned to one CPU, the load generator to the other, as in
``benchmarks/run.py`` (``_harness``).  It writes the JSON (default
benchmarks/results/latency.json, or latency-quick.json with --quick) and the
plot (default docs/_static/latency.png; with --quick only if --plot is given).
Exit status 1 only if a case failed to run; never because something was slow.
See docs/benchmarks.md, "Latency".
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness
from _cases import has_module, median, ratio_of_medians_by_round, rotated
from _harness import Server, run_loadgen
from _report import pyplot

STOCK, URING, NOSPIN = "trio", "trio_uring", "trio_uring-nospin"
BACKENDS = (STOCK, URING, NOSPIN)
#: what each backend is: the server's backend and the TRIO_URING_SPIN_US it runs with (None: unset)
SERVERS: dict[str, tuple[str, str | None]] = {
    STOCK: ("trio", None),
    URING: ("trio_uring", None),
    NOSPIN: ("trio_uring", "0"),
}
LOADS = (0.25, 0.50, 0.90)
PERCENTILES = ("p50", "p99", "p99.9", "max")
CASES = {f"{kind}{conns}": (kind, conns) for kind in ("echo", "http") for conns in (1, 8, 64)}
DEFAULT_PLOT = _harness.ROOT / "docs" / "_static" / "latency.png"


@dataclasses.dataclass(frozen=True)
class Config:
    quick: bool
    rounds: int
    size: int
    max_warmup: float
    max_duration: float
    warmup: float
    duration: float
    max_requests: int
    idle_seconds: float
    wait: str
    realtime: bool = False


FULL = Config(
    quick=False,
    rounds=3,
    size=64,
    max_warmup=0.3,
    max_duration=2.0,
    warmup=0.3,
    duration=3.0,
    max_requests=2_000_000,
    idle_seconds=10.0,
    wait="sleep",
)
QUICK = dataclasses.replace(
    FULL, quick=True, rounds=1, max_warmup=0.05, max_duration=0.3, warmup=0.05, duration=0.3, idle_seconds=1.0
)


@contextlib.contextmanager
def spin_env(value: str | None) -> Iterator[None]:
    """TRIO_URING_SPIN_US as the servers started inside should see it."""
    previous = os.environ.pop("TRIO_URING_SPIN_US", None)
    if value is not None:
        os.environ["TRIO_URING_SPIN_US"] = value
    try:
        yield
    finally:
        os.environ.pop("TRIO_URING_SPIN_US", None)
        if previous is not None:
            os.environ["TRIO_URING_SPIN_US"] = previous


@contextlib.contextmanager
def server_for(cfg: Config, kind: str, backend: str, conns: int) -> Iterator[Server]:
    name, spin = SERVERS[backend]
    with spin_env(spin), Server(kind, name, nofile=conns + 256) as server:
        if cfg.realtime:
            # --realtime: the server's one thread runs SCHED_FIFO, so other
            # work on its CPU cannot delay it (bounded: the server exits
            # with its measurement, and RT throttling still applies)
            os.sched_setscheduler(server.pid, os.SCHED_FIFO, os.sched_param(1))
        yield server


def cpu_ns(pid: int) -> int:
    """The process's time on a CPU so far, in ns: the sum over its threads of
    /proc/PID/task/TID/schedstat's first field (ns, not 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total


def closed_loop_max(cfg: Config, loadgen: list[str], kind: str, conns: int) -> dict[str, Any]:
    """Stock trio's closed-loop rate for this case (the median of ``rounds`` runs)."""
    rates = []
    with server_for(cfg, kind, STOCK, conns) as server:
        for _ in range(cfg.rounds):
            args: tuple[float | int, ...] = (cfg.size,) if kind == "echo" else ()
            result = run_loadgen(
                loadgen,
                kind,
                server.port,
                conns,
                *args,
                cfg.max_warmup,
                cfg.max_duration,
                cfg.max_requests,
                timeout=cfg.max_warmup + cfg.max_duration + 60,
            )
            rates.append(result["rate"])
            server.wait_connections(0, 15.0)
    return {"rate": median(rates), "samples": rates}


def open_loop(cfg: Config, loadgen: list[str], server: Server, kind: str, conns: int, rate: float) -> dict[str, Any]:
    args: tuple[float | int | str, ...] = (cfg.size,) if kind == "echo" else ()
    cpu0 = cpu_ns(server.pid)
    result = run_loadgen(
        loadgen,
        f"{kind}-rate",
        server.port,
        conns,
        *args,  # type: ignore[arg-type]
        round(rate, 3),
        cfg.warmup,
        cfg.duration,
        cfg.max_requests,
        cfg.wait,  # type: ignore[arg-type]
        timeout=cfg.warmup + cfg.duration + 60,
    )
    server_cpu_ns = cpu_ns(server.pid) - cpu0
    server.wait_connections(0, 15.0)
    handled = result["requests"] + result["warmup_requests"]
    lat, lag = result["latency_us"], result["send_lag_us"]
    return {
        **{p: lat[p] for p in (*PERCENTILES, "p90", "p99.99", "mean")},
        "requests": result["requests"],
        "sent_rate": result["sent_rate"],
        "server_cpu_us_per_request": round(server_cpu_ns / 1000 / handled, 2) if handled else None,
        "server_cpu_fraction": round(server_cpu_ns / 1e9 / (cfg.warmup + cfg.duration), 3),
        "send_lag_p99_us": lag["p99"],
        "send_lag_max_us": lag["max"],
    }


def latency_case(cfg: Config, loadgen: list[str], kind: str, conns: int) -> dict[str, Any]:
    maximum = closed_loop_max(cfg, loadgen, kind, conns)
    rates = {f"{int(load * 100)}%": maximum["rate"] * load for load in LOADS}
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {lk: {b: [] for b in BACKENDS} for lk in rates}
    for round_index in range(cfg.rounds):
        for backend in rotated(BACKENDS, round_index):
            with server_for(cfg, kind, backend, conns) as server:
                for load_key, rate in rates.items():
                    samples[load_key][backend].append(open_loop(cfg, loadgen, server, kind, conns, rate))
    loads: dict[str, Any] = {}
    for load_key, by_backend in samples.items():
        summary: dict[str, Any] = {"rate": round(rates[load_key], 1), "backends": {}, "ratios": {}}
        for backend, runs in by_backend.items():
            keys = (*PERCENTILES, "server_cpu_us_per_request", "send_lag_p99_us")
            summary["backends"][backend] = {
                **{key: median([r[key] for r in runs if r[key] is not None]) for key in keys},
                "runs": runs,
            }
        for backend in (URING, NOSPIN):
            summary["ratios"][backend] = {
                p: ratio_of_medians_by_round([r[p] for r in by_backend[backend]], [r[p] for r in by_backend[STOCK]])
                for p in ("p50", "p99")
            }
        loads[load_key] = summary
    return {
        "status": "ok",
        "kind": kind,
        "connections": conns,
        "stock_closed_loop_max": maximum,
        "loads": loads,
    }


def idle_cpu_case(cfg: Config, loadgen: list[str]) -> dict[str, Any]:
    """CPU time of an idle echo server over ``idle_seconds``, right after a burst of requests."""
    samples: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for round_index in range(cfg.rounds):
        for backend in rotated(BACKENDS, round_index):
            with server_for(cfg, "echo", backend, 1) as server:
                run_loadgen(loadgen, "echo", server.port, 1, cfg.size, 0, 0.3, 1_000_000, timeout=60)
                server.wait_connections(0, 15.0)
                cpu0, t0 = cpu_ns(server.pid), time.monotonic()
                time.sleep(cfg.idle_seconds)
                fraction = (cpu_ns(server.pid) - cpu0) / 1e9 / (time.monotonic() - t0)
                samples[backend].append(fraction)
    return {
        "status": "ok",
        "idle_seconds": cfg.idle_seconds,
        "how": "the server's on-CPU time (/proc/PID/schedstat) over the idle period / its length, "
        "after 0.3 s of closed-loop echo on one connection",
        "backends": {b: {"median": median(v), "samples": v} for b, v in samples.items()},
    }


# ---------------------------------------------------------------- report


def targets(cases: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, case in cases.items():
        if case.get("status") != "ok" or "loads" not in case:
            continue
        ratio = case["loads"]["50%"]["ratios"][URING]["p99"]
        rows.append(
            {
                "name": f"{name}: p99 at 50% load",
                "value": ratio,
                "target": "<= 1.0x stock",
                "verdict": "n/a" if ratio is None else ("PASS" if ratio <= 1.0 else "MISS"),
            }
        )
        if case["connections"] == 1:
            for load_key, load in case["loads"].items():
                ratio = load["ratios"][URING]["p50"]
                rows.append(
                    {
                        "name": f"{name}: p50 at {load_key} load",
                        "value": ratio,
                        "target": "<= 0.85x stock",
                        "verdict": "n/a" if ratio is None else ("PASS" if ratio <= 0.85 else "MISS"),
                    }
                )
    idle = cases.get("idle_cpu", {})
    if idle.get("status") == "ok":
        value = idle["backends"][URING]["median"]
        rows.append(
            {
                "name": f"idle CPU over {idle['idle_seconds']:g} s",
                "value": value,
                "target": "< 0.001 (0.1%)",
                "verdict": "PASS" if value < 0.001 else "MISS",
            }
        )
    return rows


def render_table(results: dict[str, Any], markdown: bool = False) -> str:
    header = ["case", "load", "req/s"]
    for b in BACKENDS:
        header += [f"{b} p50/p99/p99.9/max us", f"{b} CPU us/req"]
    header += ["p50 ratio", "p99 ratio", "p99 ratio nospin"]
    rows = []
    for name, case in results["cases"].items():
        if case.get("status") != "ok" or "loads" not in case:
            continue
        for load_key, load in case["loads"].items():
            row = [name, load_key, f"{load['rate']:,.0f}"]
            for b in BACKENDS:
                s = load["backends"][b]
                row.append("/".join("-" if s[p] is None else f"{s[p]:,.0f}" for p in PERCENTILES))
                cpu = s["server_cpu_us_per_request"]
                row.append("-" if cpu is None else f"{cpu:.1f}")
            for backend, p in ((URING, "p50"), (URING, "p99"), (NOSPIN, "p99")):
                r = load["ratios"][backend][p]
                row.append("-" if r is None else f"{r:.2f}x")
            rows.append(row)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def render_notes(results: dict[str, Any]) -> str:
    lines = []
    for name, case in results["cases"].items():
        if case.get("status") != "ok":
            lines.append(f"{name}: {case.get('status', '?').upper()}: {case.get('reason') or case.get('error')}")
        elif "stock_closed_loop_max" in case:
            lags = [
                s["send_lag_p99_us"]
                for load in case["loads"].values()
                for s in load["backends"].values()
                if s["send_lag_p99_us"] is not None
            ]
            lines.append(
                f"{name}: stock trio's closed-loop maximum {case['stock_closed_loop_max']['rate']:,.0f}/s; "
                f"load generator's send lag p99 up to {max(lags):,.0f} us"
            )
    idle = results["cases"].get("idle_cpu", {})
    if idle.get("status") == "ok":
        shown = ", ".join(f"{b} {v['median'] * 100:.3f}%" for b, v in idle["backends"].items())
        lines.append(f"idle CPU over {idle['idle_seconds']:g} s after a burst: {shown}")
    for t in results.get("targets", []):
        value = "-" if t["value"] is None else f"{t['value']:.3f}"
        lines.append(f"target {t['name']}: {value} ({t['target']}): {t['verdict']}")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> str:
    plt = pyplot()
    if isinstance(plt, str):
        return plt

    names = [n for n in CASES if results["cases"].get(n, {}).get("status") == "ok"]
    if not names:
        return "skipped: no latency case was measured"
    fig, axes = plt.subplots(2, 3, figsize=(14, 8), squeeze=False)
    colors = {STOCK: "#7f7f7f", URING: "#d62728", NOSPIN: "#ff9896"}
    for ax, name in zip(axes.flat, CASES, strict=True):
        case = results["cases"].get(name, {})
        if case.get("status") != "ok":
            ax.text(0.5, 0.5, f"{name}: not measured", ha="center")
            ax.set_axis_off()
            continue
        xs = [float(k.rstrip("%")) for k in case["loads"]]
        for backend in BACKENDS:
            for p, style in (("p50", "-"), ("p99", "--")):
                ys = [load["backends"][backend][p] for load in case["loads"].values()]
                ax.plot(xs, ys, style, marker="o", color=colors[backend], label=f"{backend} {p}")
        ax.set_yscale("log")
        ax.set_xticks(xs, [f"{x:.0f}%" for x in xs])
        ax.set_xlabel(f"load (% of stock's closed-loop {case['stock_closed_loop_max']['rate']:,.0f}/s)")
        ax.set_ylabel("latency, us")
        ax.set_title(f"{case['kind']} {case['connections']} conn{'s' if case['connections'] != 1 else ''}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    machine = results["machine"]
    realtime = " servers and load generator SCHED_FIFO;" if results["config"].get("realtime") else ""
    fig.suptitle(
        f"Latency at fixed request rates (solid p50, dashed p99; lower is better), {results['date'][:10]}, "
        f"Linux {machine['kernel']};{realtime} load average {results['loadavg_start'][0]:.1f} at the start"
        f"{' (quick: meaningless numbers)' if results['quick'] else ''}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return f"written to {path}"


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny configuration: a smoke run, numbers mean nothing")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per case (default 3, quick 1)")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join([*CASES, 'idle_cpu'])}")
    parser.add_argument("--json", type=Path, default=None, help="where to write the results")
    parser.add_argument("--plot", type=Path, default=None, help="where to write the PNG")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    parser.add_argument("--wait", choices=("sleep", "spin"), default=None, help="how the load generator waits")
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="run the servers and the load generator SCHED_FIFO (chrt -f 1): for a busy machine",
    )
    parser.add_argument("--report", type=Path, default=None, help="measure nothing: print the table of this JSON")
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.only and set(args.only.split(",")) - {*CASES, "idle_cpu"}:
        parser.error(f"unknown case(s) in --only: {args.only}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        earlier: dict[str, Any] = json.loads(args.report.read_text())
        if args.plot:
            earlier["plot"] = plot(earlier, args.plot)
        return report(earlier, args.report)
    cfg = QUICK if args.quick else FULL
    if args.rounds is not None:
        cfg = dataclasses.replace(cfg, rounds=args.rounds)
    if args.wait is not None:
        cfg = dataclasses.replace(cfg, wait=args.wait)
    if args.realtime:
        cfg = dataclasses.replace(cfg, realtime=True)
    json_path = args.json or _harness.RESULTS / ("latency-quick.json" if cfg.quick else "latency.json")
    plot_path = None if args.no_plot else (args.plot or (None if cfg.quick else DEFAULT_PLOT))
    selected = set(args.only.split(",")) if args.only else {*CASES, "idle_cpu"}

    os.sched_setaffinity(0, {_harness.LOAD_CORE})
    prefix, description = _harness.compile_loadgen()
    if prefix is not None and cfg.realtime:
        prefix = ["chrt", "-f", "1", *prefix]
        description += ", run with chrt -f 1 (SCHED_FIFO)"
    import run  # machine_info, write_json: the same records as make bench

    results: dict[str, Any] = {
        "schema": 1,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/latency.py", *(sys.argv[1:] if argv is None else argv)]),
        "quick": cfg.quick,
        "loadavg_start": os.getloadavg(),
        "config": dataclasses.asdict(cfg),
        "machine": run.machine_info(),
        "tools": {"loadgen": description},
        "cases": {},
    }
    print(
        f"trio_uring latency{' (quick: a smoke run, the numbers mean nothing)' if cfg.quick else ''}: "
        f"{cfg.rounds} round(s); {_harness.PINNING_NOTE}; load generator: {description}, waits by {cfg.wait}"
    )
    try:
        with _harness.package_snapshot() as snapshot:
            results["package"] = snapshot
            for name in [*CASES, "idle_cpu"]:
                if name not in selected:
                    results["cases"][name] = {"status": "skipped", "reason": "not selected with --only"}
                    continue
                kind, conns = CASES.get(name, ("echo", 1))
                if prefix is None:
                    case = {"status": "unavailable", "reason": f"the open-loop generator is loadgen.c: {description}"}
                elif kind == "http" and not has_module("h11"):
                    case = {"status": "unavailable", "reason": "h11 is not installed (the bench extra)"}
                else:
                    fn = (
                        functools.partial(idle_cpu_case, cfg, prefix)
                        if name == "idle_cpu"
                        else functools.partial(latency_case, cfg, prefix, kind, conns)
                    )
                    case = run.run_case(name, fn)
                results["cases"][name] = case
    finally:
        _harness.kill_all()
    results["loadavg_end"] = os.getloadavg()
    results["targets"] = targets(results["cases"])
    results["plot"] = plot(results, plot_path) if plot_path else "skipped: no --plot path"
    results["table_markdown"] = render_table(results, markdown=True)
    run.write_json(json_path, results)
    return report(results, json_path)


def report(results: dict[str, Any], json_path: Path) -> int:
    print()
    print(render_table(results))
    notes = render_notes(results)
    if notes:
        print()
        print(notes)
    print(f"\nresults: {json_path}; plot: {results['plot']}")
    print("targets are informational: a MISS never fails this command")
    failed = [n for n, c in results["cases"].items() if c.get("status") == "error"]
    for name in failed:
        print(f"\n{name} FAILED TO RUN:\n{results['cases'][name]['traceback']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
