"""Targets, the printed table, and the plot.

The targets are the issue's; a MISS is information, never a failing exit
status (benchmarks are not tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _stacks import stack_notes, stack_rows, stack_targets

STOCK, URING = "trio", "trio_uring"
REFERENCES = ("asyncio", "uvloop", "uvloop-streams")
#: echo connections -> wanted ratio trio_uring / stock trio
ECHO_TARGETS = {1: 1.1, 64: 1.5, 512: 1.5}
IDLE_TOLERANCE = 1.05  # "no worse than stock": within 5 %, RSS readings move by a few pages


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def targets(cases: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    echo = cases.get("echo", {})
    if echo.get("status") == "ok":
        for conns, summary in echo["connections"].items():
            want = ECHO_TARGETS.get(int(conns))
            if want is None:
                continue
            ratio = summary["ratio"]
            rows.append(
                {
                    "name": f"echo {conns} conn{'s' if conns != '1' else ''}",
                    "value": ratio,
                    "target": f">= {want}x stock",
                    "verdict": verdict(None if ratio is None else ratio >= want),
                }
            )
        stretch = echo["connections"].get("64", {}).get("backends", {})
        if "uvloop-streams" in stretch and URING in stretch:
            value = stretch[URING]["median"] / stretch["uvloop-streams"]["median"]
            rows.append(
                {
                    "name": "stretch: echo 64 conns vs uvloop streams",
                    "value": value,
                    "target": ">= 1.0x uvloop streams",
                    "verdict": verdict(value >= 1.0),
                }
            )
    syscalls = cases.get("syscalls", {})
    if syscalls.get("status") == "ok":
        value = syscalls["backends"][URING]["median"]
        rows.append(
            {
                "name": f"syscalls per round trip, {syscalls['connections']} conns",
                "value": value,
                "target": "< 1 per round trip",
                "verdict": verdict(value < 1.0),
            }
        )
    idle = cases.get("idle_memory", {})
    if idle.get("status") == "ok":
        ratio = idle["ratio"]
        rows.append(
            {
                "name": f"idle memory per connection, {idle['connections']} conns",
                "value": ratio,
                "target": "<= stock (within 5%)",
                "verdict": verdict(None if ratio is None else ratio <= IDLE_TOLERANCE),
            }
        )
    files = cases.get("files", {})
    for label, run in files.get("placements", {}).items():
        target = run["data"]["target"]
        rows.append(
            {
                "name": f"files: random 4 KiB reads, open_file ({label})",
                "value": target["measured"],
                "target": f">= {target['ratio']:g}x trio.open_file",
                "verdict": verdict(target["met"]),
            }
        )
    rows += stack_targets(cases)
    return rows


# ---------------------------------------------------------------- the table


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit.startswith(("round trips", "requests", "reads")):
        return f"{value:,.0f}"
    return f"{value:.2f}"


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    cases = results["cases"]
    wanted = {t["name"]: t for t in results["targets"]}
    rows: list[list[str]] = []

    def add(name: str, unit: str, summary: dict[str, Any], target_name: str | None) -> None:
        backends = summary["backends"]
        target = wanted.get(target_name or "", {})
        ratio = summary.get("ratio")
        rows.append(
            [
                name,
                unit,
                *(fmt(backends[b]["median"], unit) if b in backends else "-" for b in (STOCK, URING)),
                "-" if ratio is None else f"{ratio:.2f}x",
                target.get("target", ""),
                target.get("verdict", ""),
                *(fmt(backends[b]["median"], unit) if b in backends else "-" for b in REFERENCES),
            ]
        )

    echo = cases.get("echo", {})
    if echo.get("status") == "ok":
        for conns, summary in echo["connections"].items():
            label = f"echo {conns} conn{'s' if conns != '1' else ''}"
            add(f"{label}, {echo['size']} B", "round trips/s", summary, label)
    http = cases.get("http", {})
    if http.get("status") == "ok":
        add(f"HTTP keep-alive, {http['load_generator']} -c{http['connections']}", "requests/s", http, None)
    idle = cases.get("idle_memory", {})
    if idle.get("status") == "ok":
        add(
            f"idle, {idle['connections']} conns",
            "KiB/conn",
            idle,
            f"idle memory per connection, {idle['connections']} conns",
        )
    syscalls = cases.get("syscalls", {})
    if syscalls.get("status") == "ok":
        add(
            f"syscalls, {syscalls['connections']} conns ({syscalls['tool']})",
            "per round trip",
            syscalls,
            f"syscalls per round trip, {syscalls['connections']} conns",
        )
    files = cases.get("files", {})
    for label, run in files.get("placements", {}).items():
        random4k = run["data"]["cases"]["random4k"]
        medians = random4k["median"]
        summary = {
            "backends": {
                STOCK: {"median": medians.get("trio.open_file")},
                URING: {"median": medians.get("trio_uring.open_file")},
            },
            "ratio": random4k["ratio_vs_trio"].get("trio_uring.open_file"),
        }
        add(
            f"files: random 4 KiB reads, open_file ({label})",
            "reads/s",
            summary,
            f"files: random 4 KiB reads, open_file ({label})",
        )
    for name, unit, summary, target_name in stack_rows(cases):
        add(name, unit, summary, target_name)
    return rows


HEADER = ["benchmark", "unit", STOCK, URING, "ratio", "target", "verdict", *REFERENCES]


def render_table(results: dict[str, Any], markdown: bool = False) -> str:
    rows = table_rows(results)
    if markdown:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def render_notes(results: dict[str, Any]) -> str:
    cases = results["cases"]
    lines: list[str] = []
    profile = results.get("kernel_profile", "native")
    if profile != "native":
        lines.append(f"kernel profile: trio_uring ran as if on Linux {profile} (its fallbacks; --kernel)")
    for name, case in cases.items():
        if case.get("status") != "ok":
            lines.append(f"{name}: {case.get('status', '?').upper()}: {case.get('reason') or case.get('error')}")
    extra = [t for t in results["targets"] if t["name"].startswith("stretch")]
    for t in extra:
        lines.append(f"{t['name']}: {t['value']:.2f}x ({t['target']}): {t['verdict']}")
    check = cases.get("loadgen_check", {})
    for name, c in check.get("checks", {}).items():
        if "headroom" in c:
            lines.append(
                f"load generator check, {name}: {c['fastest_reference']} reached {c['headroom']:.2f}x "
                f"the fastest trio server: {'not the bottleneck' if c['verdict'] == 'ok' else 'MAY BE THE BOTTLENECK'}"
            )
    syscalls = cases.get("syscalls", {})
    if syscalls.get("status") == "ok":
        for backend in (STOCK, URING):
            ops = syscalls["backends"][backend]["runs"][-1]["io_uring_ops_per_round_trip"]
            if ops:
                shown = ", ".join(f"{op} {n:.2f}" for op, n in ops.items() if n >= 0.005) or "none"
                lines.append(f"io_uring ops per round trip ({backend}, last round): {shown}")
    files = cases.get("files", {})
    if files.get("status") == "ok" and files.get("output"):
        lines.append("files (benchmarks/bench_files.py):\n" + files["output"].rstrip())
    lines += stack_notes(cases)
    anyio_files = cases.get("anyio_files", {})
    if anyio_files.get("status") == "ok":
        lines.append("anyio_files (benchmarks/bench_anyio_files.py):\n" + anyio_files["output"].rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------- the plot


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or a sentence saying why not."""
    try:
        import matplotlib
    except ImportError:
        return "skipped: matplotlib is not installed (make bench installs the bench extra)"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(results: dict[str, Any], path: Path) -> str:
    """Write the PNG; return what happened (a sentence for the JSON)."""
    plt = pyplot()
    if isinstance(plt, str):
        return plt

    cases = results["cases"]
    fig, axes = plt.subplots(2, 3, figsize=(17, 8))
    colors = {
        STOCK: "#7f7f7f",
        URING: "#d62728",
        "asyncio": "#1f77b4",
        "uvloop": "#2ca02c",
        "uvloop-streams": "#98df8a",
    }

    # throughput, thousands per second
    ax = axes[0][0]
    groups: list[tuple[str, dict[str, Any]]] = []
    if cases.get("echo", {}).get("status") == "ok":
        groups += [(f"echo\n{c} conn", s["backends"]) for c, s in cases["echo"]["connections"].items()]
    if cases.get("http", {}).get("status") == "ok":
        groups.append((f"HTTP\n{cases['http']['load_generator']}", cases["http"]["backends"]))
    # like beside like: the same trio code on both backends only; the
    # asyncio/uvloop servers are load-generator checks, plotted apart
    _grouped_bars(ax, groups, (STOCK, URING), colors)
    ax.set_ylabel("thousands per second (median)")
    ax.set_title("Throughput, same server code on both (higher is better)")

    ax = axes[0][2]
    check_groups = [
        (label.replace("HTTP", "HTTP: refs are\nfixed-response,\nnot h11"), _fastest_trio(b)) for label, b in groups
    ]
    check_names = ("fastest trio", *REFERENCES)
    colors["fastest trio"] = "#bbbbbb"
    _grouped_bars(ax, check_groups, check_names, colors)
    ax.set_ylabel("thousands per second (median)")
    ax.set_title(
        "Load-generator check, not a comparison:\nreference servers must reach >= 1.2x the fastest trio", fontsize=10
    )

    # ratio trio_uring / stock with targets
    ax = axes[0][1]
    ratio_groups = _ratio_sources(cases)
    xs = list(range(len(ratio_groups)))
    ax.bar(xs, [s or 0 for _, s, _ in ratio_groups], 0.6, color=colors[URING])
    for x, (_, value, _) in zip(xs, ratio_groups, strict=True):
        if value is not None:
            ax.text(x, value, f"{value:.2f}x", ha="center", va="bottom")
    for x, (_, _, want) in zip(xs, ratio_groups, strict=True):
        if want:
            ax.hlines(want, x - 0.35, x + 0.35, colors="black", linestyles="dashed")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xticks(xs, [label for label, _, _ in ratio_groups])
    ax.set_title("trio_uring / stock trio (dashed: target)")

    ax = axes[1][2]
    stack_groups = _stack_ratio_sources(cases)
    if stack_groups:
        xs = list(range(len(stack_groups)))
        ax.bar(xs, [v or 0 for _, v in stack_groups], 0.6, color=colors[URING])
        for x, (_, value) in zip(xs, stack_groups, strict=True):
            if value is not None:
                ax.text(x, value, f"{value:.2f}x", ha="center", va="bottom")
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xticks(xs, [label for label, _ in stack_groups], fontsize=8)
    else:
        reason = cases.get("stacks", {}).get("reason", "")
        ax.text(0.5, 0.5, f"not measured{': ' + reason if reason else ''}", ha="center", wrap=True)
    ax.set_title("Real stacks: trio_uring / stock trio")

    for ax, key, title in (
        (axes[1][0], "syscalls", "Server syscalls per round trip (lower is better)"),
        (axes[1][1], "idle_memory", "Idle memory, KiB per connection (lower is better)"),
    ):
        case = cases.get(key, {})
        if case.get("status") == "ok":
            values = [case["backends"][b]["median"] for b in (STOCK, URING)]
            ax.bar([STOCK, URING], values, color=[colors[STOCK], colors[URING]])
            for x, v in enumerate(values):
                ax.text(x, v, f"{v:.2f}", ha="center", va="bottom")
        else:
            ax.text(0.5, 0.5, f"not measured: {case.get('reason', case.get('error', ''))}", ha="center", wrap=True)
        ax.set_title(title)

    machine = results["machine"]
    fig.suptitle(
        f"trio_uring vs stock trio, {results['date'][:10]}, {machine['nproc']} CPUs, Linux {machine['kernel']}"
        f"{' (quick: meaningless numbers)' if results['quick'] else ''}"
        f"{'' if results.get('kernel_profile', 'native') == 'native' else ', profile ' + results['kernel_profile']}",
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return f"written to {path}"


def _grouped_bars(
    ax: Any, groups: list[tuple[str, dict[str, Any]]], names: tuple[str, ...], colors: dict[str, str]
) -> None:
    shown = [b for b in names if any(b in g for _, g in groups)]
    width = 0.8 / max(len(shown), 1)
    for i, backend in enumerate(shown):
        xs = [g + i * width for g, (_, b) in enumerate(groups) if b.get(backend, {}).get("median")]
        ys = [b[backend]["median"] / 1000 for _, b in groups if b.get(backend, {}).get("median")]
        ax.bar(xs, ys, width, label=backend, color=colors.get(backend))
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], [label for label, _ in groups], fontsize=8)
    if shown:
        ax.legend(fontsize=8)


def _fastest_trio(backends: dict[str, Any]) -> dict[str, Any]:
    """The group's reference servers beside the faster of the two trio backends."""
    out = {b: v for b, v in backends.items() if b in REFERENCES}
    trio = [backends[b] for b in (STOCK, URING) if backends.get(b, {}).get("median")]
    if trio:
        out["fastest trio"] = max(trio, key=lambda v: v["median"])
    return out


def _stack_ratio_sources(cases: dict[str, Any]) -> list[tuple[str, float | None]]:
    short = {"hello": "hypercorn\nASGI hello", "json": "Starlette\nJSON", "file64k": "Starlette\nFile 64 KiB"}
    short["file64k-stat"] = "Starlette\nFile 64 KiB\n+ stat_result"
    out = [(short.get(app, app), s["ratio"]) for app, s in cases.get("stacks", {}).get("apps", {}).items()]
    for label, run in cases.get("anyio_files", {}).get("placements", {}).items():
        out.append((f"anyio files\nrandom 4K\n({label})", run["data"]["ratio"]))
    return out


def _ratio_sources(cases: dict[str, Any]) -> list[tuple[str, float | None, float | None]]:
    out: list[tuple[str, float | None, float | None]] = []
    if cases.get("echo", {}).get("status") == "ok":
        for conns, summary in cases["echo"]["connections"].items():
            out.append((f"echo\n{conns} conn", summary["ratio"], ECHO_TARGETS.get(int(conns))))
    if cases.get("http", {}).get("status") == "ok":
        out.append(("HTTP", cases["http"]["ratio"], None))
    return out
