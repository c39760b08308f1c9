"""Stock trio and trio_uring, side by side: ``make bench`` (or ``make bench-quick``).

    python benchmarks/run.py [--quick] [--rounds N] [--json PATH] [--plot PATH]
                             [--only CASE,...] [--loadgen auto|c|python]
                             [--kernel 5.15|5.19|6.1|6.8|native]
    python benchmarks/run.py --report RESULTS.json [--plot PATH]

Cases: echo (64-byte closed loop at 1, 64 and 512 connections), http (h11 on
each backend, driven by wrk), idle_memory (RSS per idle connection at 5,000),
syscalls (per round trip at 64 connections, perf or strace), files
(benchmarks/bench_files.py, when it exists), and loadgen_check (the same load
generator against asyncio/uvloop servers, to show it is not the bottleneck).

``--kernel 5.15`` runs every trio_uring server (and the file benchmark) as
if on that kernel: it sets ``$TRIO_URING_KERNEL`` for them, so they take
the fallbacks that kernel needs (docs/kernel-support.md, "Kernel profiles");
the results go to ``latest-kernel-5.15.json`` unless ``--json`` says where.

Each server runs in its own process pinned to one CPU, the load generator in
another pinned to the other CPU; stock trio and trio_uring alternate within
every round.  It prints a table with medians, the ratio trio_uring / stock
and the issue's targets (PASS/MISS, informational), writes the JSON (default
benchmarks/results/latest.json, or quick.json with --quick) and the plot
(default docs/_static/benchmarks.png; with --quick only if --plot is given).

Exit status: 0 when every case was measured or recorded as unavailable with
its reason, 1 when a case failed to run.  Never 1 because something was slow.
See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _cases
import _harness
import _report

from trio_uring._features import ENV as KERNEL_ENV
from trio_uring._features import PROFILE_NAMES

CASES: dict[str, Callable[[_cases.Config, _cases.Env], dict[str, Any]]] = {
    "echo": _cases.echo_case,
    "http": _cases.http_case,
    "idle_memory": _cases.idle_case,
    "syscalls": _cases.syscalls_case,
    "files": _cases.files_case,
}
ALL_CASES = (*CASES, "loadgen_check")
DEFAULT_PLOT = _harness.ROOT / "docs" / "_static" / "benchmarks.png"


def version_of(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=_harness.ROOT, check=False).stdout

    commit = git("rev-parse", "--short", "HEAD").strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "trio": version_of("trio"),
        "trio_uring": version_of("trio_uring"),
        "uvloop": version_of("uvloop"),
        "h11": version_of("h11"),
        "git_commit": commit or None,
        # uncommitted changes to the package mean the numbers are not those of git_commit alone
        "package_changes_uncommitted": bool(git("status", "--porcelain", "trio_uring").strip()),
        "pinning": _harness.PINNING_NOTE,
        "server_core": _harness.SERVER_CORE,
        "load_core": _harness.LOAD_CORE,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny configuration: a smoke run, numbers mean nothing")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per case (default 3, quick 1)")
    parser.add_argument("--json", type=Path, default=None, help="where to write the results")
    parser.add_argument("--plot", type=Path, default=None, help="where to write the PNG")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(ALL_CASES)}")
    parser.add_argument("--loadgen", choices=("auto", "c", "python"), default="auto", help="load generator")
    parser.add_argument(
        "--kernel",
        choices=PROFILE_NAMES,
        default=None,
        help="run trio_uring as if on this kernel (sets $TRIO_URING_KERNEL; docs/kernel-support.md)",
    )
    parser.add_argument("--report", type=Path, default=None, help="measure nothing: print the table of this JSON")
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.only:
        unknown = set(args.only.split(",")) - set(ALL_CASES)
        if unknown:
            parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    return args


def run_case(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    print(f"  {name} ...", end="", flush=True)
    started = time.monotonic()
    try:
        result = fn()
    except Exception as exc:
        result = {"status": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    finally:
        _harness.kill_all()  # nothing a case started outlives it
    result["seconds"] = round(time.monotonic() - started, 1)
    print(f" {result['status']} ({result['seconds']} s)", flush=True)
    return result


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    os.replace(scratch, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        # no measuring: the table (and, with --plot, the plot) of an earlier run
        earlier: dict[str, Any] = json.loads(args.report.read_text())
        if args.plot:
            earlier["plot"] = _report.plot(earlier, args.plot)
        return report(earlier, args.report)
    cfg = _cases.QUICK if args.quick else _cases.FULL
    if args.rounds is not None:
        cfg = dataclasses.replace(cfg, rounds=args.rounds)
    json_name = "quick" if args.quick else "latest"
    if args.kernel:
        os.environ[KERNEL_ENV] = args.kernel  # inherited by every server and benchmark process
        json_name += f"-kernel-{args.kernel}"
    json_path = args.json or _harness.RESULTS / f"{json_name}.json"
    plot_path = None if args.no_plot else (args.plot or (None if args.quick else DEFAULT_PLOT))
    selected = set(args.only.split(",")) if args.only else set(ALL_CASES)

    # the orchestrator itself keeps off the server's CPU
    os.sched_setaffinity(0, {_harness.LOAD_CORE})
    loadgen, loadgen_info = _harness.choose_loadgen(args.loadgen)
    wrk = _harness.wrk_version()
    counter = _harness.syscall_counter()
    env = _cases.Env(
        loadgen=loadgen,
        uvloop=_cases.has_module("uvloop"),
        h11=_cases.has_module("h11"),
        wrk=bool(wrk["available"]),
        syscall_tool=counter.get("tool") if counter["available"] else None,
    )
    results: dict[str, Any] = {
        "schema": 1,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "quick": cfg.quick,
        "kernel_profile": os.environ.get(KERNEL_ENV, "native"),
        "loadavg_start": os.getloadavg(),
        "config": dataclasses.asdict(cfg),
        "machine": machine_info(),
        "tools": {"loadgen": loadgen_info, "wrk": wrk, "syscall_counter": counter},
        "cases": {},
    }
    print(
        f"trio_uring benchmarks{' (quick: a smoke run, the numbers mean nothing)' if cfg.quick else ''}: "
        f"{cfg.rounds} round(s); {_harness.PINNING_NOTE}; load generator: {loadgen_info['description']}"
    )
    try:
        with _harness.package_snapshot() as snapshot:
            results["package"] = snapshot
            for name, fn in CASES.items():
                if name in selected:
                    results["cases"][name] = run_case(name, lambda fn=fn: fn(cfg, env))  # type: ignore[misc]
                else:
                    results["cases"][name] = {"status": "skipped", "reason": "not selected with --only"}
        results["cases"]["loadgen_check"] = _cases.loadgen_check(
            results["cases"].get("echo", {}), results["cases"].get("http", {})
        )
    finally:
        _harness.kill_all()
    results["loadavg_end"] = os.getloadavg()
    results["targets"] = _report.targets(results["cases"])
    results["plot"] = _report.plot(results, plot_path) if plot_path else "skipped: no --plot path"
    results["table_markdown"] = _report.render_table(results, markdown=True)
    write_json(json_path, results)
    return report(results, json_path)


def report(results: dict[str, Any], json_path: Path) -> int:
    """Print the table and notes; the exit status (1 only if a case failed to run)."""
    print()
    print(_report.render_table(results))
    notes = _report.render_notes(results)
    if notes:
        print()
        print(notes)
    if results.get("package", {}).get("work_tree_changed_during_run"):
        print(
            "\nnote: trio_uring/ changed in the work tree during the run; the run measured the copy taken at its start"
        )
    print()
    print(f"results: {json_path}; plot: {results['plot']}")
    print("targets are informational: a MISS never fails this command")
    failed = [name for name, case in results["cases"].items() if case.get("status") == "error"]
    if failed:
        for name in failed:
            print(f"\n{name} FAILED TO RUN:\n{results['cases'][name]['traceback']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
