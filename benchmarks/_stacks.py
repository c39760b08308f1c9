"""Real stacks in make bench: hypercorn (trio worker) serving a plain ASGI app
and Starlette, and anyio.open_file.  Each returns a JSON-able dict with a
``status``; _report.py turns them into table rows and targets.

``stacks``: the servers of benchmarks/stacks.py (``hello``, ``json``,
``file64k``, ``file64k-stat``), each on stock trio and on trio_uring,
alternating within every round (the order rotated from round to round),
pinned to the server CPU, driven by wrk (one thread, pinned to the other
CPU) at ``http_conns`` keep-alive connections for ``http_seconds``, after a
``http_warmup`` warm-up; medians over the rounds and the median of the
per-round ratios trio_uring / stock.

``anyio_files``: benchmarks/bench_anyio_files.py, pinned to one CPU and free on
all CPUs, as the ``files`` case.
"""

from __future__ import annotations

import time
from typing import Any

from _cases import FILE_PLACEMENTS, STOCK, URING, Config, Env, files_run, rotated, summarize
from _harness import BENCH, BenchError, Server, run_wrk

#: app -> what the table calls it
STACK_APPS = {
    "hello": "hypercorn + plain ASGI hello",
    "json": "hypercorn + Starlette JSONResponse",
    "file64k": "hypercorn + Starlette FileResponse 64 KiB",
    "file64k-stat": "hypercorn + Starlette FileResponse 64 KiB, stat_result from anyio.Path.stat",
}
QUICK_APPS = ("hello", "file64k")
#: the issue's targets (informational): app -> wanted ratio trio_uring / stock
STACK_TARGETS = {"file64k": 1.0, "file64k-stat": 1.0}
ANYIO_FILES_TARGET = 5.0


class StackServer(Server):
    """``benchmarks/stacks.py APP BACKEND`` in its own process on the server core."""

    def __init__(self, app: str, backend: str, *, nofile: int = 4096, max_seconds: float = 600.0) -> None:
        super().__init__(app, backend, nofile=nofile, max_seconds=max_seconds)
        self.argv[1] = str(BENCH / "stacks.py")


def stacks_case(cfg: Config, env: Env) -> dict[str, Any]:
    if not env.wrk:
        return {"status": "unavailable", "reason": "wrk is not installed (Debian: apt-get install wrk)"}
    try:
        import hypercorn  # noqa: F401
        import starlette  # noqa: F401
    except ImportError:
        return {"status": "unavailable", "reason": "hypercorn/starlette not installed (the bench extra has them)"}
    apps: dict[str, Any] = {}
    # (quick: two apps, no warm-up -- it must fit in tests/test_bench.py's minute)
    for app in QUICK_APPS if cfg.quick else STACK_APPS:
        samples: dict[str, list[dict[str, Any]]] = {STOCK: [], URING: []}
        for round_index in range(cfg.rounds):
            for backend in rotated([STOCK, URING], round_index):
                with StackServer(app, backend, nofile=cfg.http_conns + 256) as server:
                    if not cfg.quick:
                        run_wrk(server.port, cfg.http_conns, 1)  # warm-up (wrk's shortest run)
                    cpu0, t0 = server.cpu_seconds(), time.monotonic()
                    result = run_wrk(server.port, cfg.http_conns, cfg.http_seconds)
                    result["server_cpu"] = round((server.cpu_seconds() - cpu0) / (time.monotonic() - t0), 3)
                    # requests per CPU-second of the server: on a machine where
                    # the server does not get its whole CPU, steadier than the rate
                    result["per_cpu_second"] = result["rate"] / result["server_cpu"] if result["server_cpu"] else 0.0
                    if result["non_2xx"] or result["socket_errors"]:
                        raise BenchError(f"{app} on {backend}: {result}")
                    samples[backend].append(result)
        per_cpu = summarize(samples, "per_cpu_second")
        apps[app] = {
            "label": STACK_APPS[app],
            **summarize(samples, "rate"),
            "per_cpu_second": {
                "medians": {b: v["median"] for b, v in per_cpu["backends"].items()},
                "ratio": per_cpu["ratio"],
            },
        }
    return {
        "status": "ok",
        "unit": "requests/s",
        "load_generator": "wrk -t1",
        "connections": cfg.http_conns,
        "seconds": cfg.http_seconds,
        "apps": apps,
    }


def anyio_files_case(cfg: Config, env: Env) -> dict[str, Any]:
    script = BENCH / "bench_anyio_files.py"
    wanted = FILE_PLACEMENTS[:1] if cfg.quick else FILE_PLACEMENTS
    placements = {label: files_run(cfg, script, cpu) for label, cpu in wanted}
    output = "\n".join(f"-- {label} --\n{run['output'].rstrip()}" for label, run in placements.items())
    return {"status": "ok", "placements": placements, "output": output}


# ---------------------------------------------------------------- for _report.py


def stack_targets(cases: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    stacks = cases.get("stacks", {})
    for app, summary in stacks.get("apps", {}).items():
        want = STACK_TARGETS.get(app)
        ratio = summary["ratio"]
        rows.append(
            {
                "name": f"stacks: {summary['label']}",
                "value": ratio,
                "target": f"> {want:g}x stock (measurably faster)" if want else "honest ratio",
                "verdict": ("n/a" if ratio is None else "PASS" if ratio > want else "MISS") if want else "n/a",
            }
        )
    anyio_files = cases.get("anyio_files", {})
    for label, run in anyio_files.get("placements", {}).items():
        ratio = run["data"]["ratio"]
        rows.append(
            {
                "name": f"anyio.open_file: random 4 KiB reads, 32 tasks ({label})",
                "value": ratio,
                "target": f">= {ANYIO_FILES_TARGET:g}x anyio on stock trio",
                "verdict": "n/a" if ratio is None else "PASS" if ratio >= ANYIO_FILES_TARGET else "MISS",
            }
        )
    return rows


def stack_notes(cases: dict[str, Any]) -> list[str]:
    lines = []
    for summary in cases.get("stacks", {}).get("apps", {}).values():
        per_cpu = summary.get("per_cpu_second")
        cpu = {b: [r["server_cpu"] for r in v["runs"]] for b, v in summary["backends"].items()}
        if per_cpu and per_cpu["ratio"] is not None:
            medians = per_cpu["medians"]
            lines.append(
                f"{summary['label']}: requests per server CPU-second {medians[STOCK]:,.0f} (stock) / "
                f"{medians[URING]:,.0f} (trio_uring) = {per_cpu['ratio']:.2f}x; server CPU share per run {cpu}"
            )
    return lines


def stack_rows(cases: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], str]]:
    """(row name, unit, summary with backends/ratio, target name) for the table."""
    rows: list[tuple[str, str, dict[str, Any], str]] = []
    stacks = cases.get("stacks", {})
    for summary in stacks.get("apps", {}).values():
        name = f"stacks: {summary['label']}"
        rows.append((f"{name}, wrk -c{stacks['connections']}", "requests/s", summary, name))
    anyio_files = cases.get("anyio_files", {})
    for label, run in anyio_files.get("placements", {}).items():
        data = run["data"]
        name = f"anyio.open_file: random 4 KiB reads, 32 tasks ({label})"
        summary = {
            "backends": {STOCK: {"median": data["median"]["stock"]}, URING: {"median": data["median"]["trio_uring"]}},
            "ratio": data["ratio"],
        }
        rows.append((name, "reads/s", summary, name))
    return rows
