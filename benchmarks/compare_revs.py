"""Two versions of trio_uring in one run: did a change move x86_64's numbers?

    python benchmarks/compare_revs.py BEFORE AFTER [--rounds 3] [--only echo,files] [--quick]

BEFORE and AFTER are git revisions of this repository.  Each is unpacked
(``git archive``) into a scratch directory, and ``benchmarks/run.py --only
... --rounds 1`` of *that* tree runs against *that* tree's trio_uring, in
this interpreter's environment (trio and the benchmark extras of the
current venv).  The two alternate, BEFORE first in odd rounds and AFTER
first in even ones, so that a machine that slows down over the run weighs
on both alike.  Every run.py run also measures stock trio beside its
trio_uring, so the table gives both the medians of trio_uring's own
numbers (AFTER / BEFORE) and the medians of the ratios to stock trio
measured in the same runs.

It prints a Markdown table and writes the JSON of every run to
benchmarks/results/compare-BEFORE-AFTER/.  Used for issue 16: the aarch64
fence must leave x86_64's echo and file benchmarks unchanged
(docs/benchmarks.md, "Before and after the aarch64 changes").
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def unpack(rev: str, into: Path) -> str:
    """``git archive rev`` into ``into``; returns the full commit id."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if commit.returncode != 0:
        raise SystemExit(f"compare_revs: {rev!r} is not a commit of this repository")
    into.mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", commit.stdout.strip()], cwd=ROOT, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise SystemExit(f"compare_revs: git archive {rev} failed")
    return commit.stdout.strip()


def metrics(run: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """{label: (trio_uring, stock trio)} from one run.py JSON."""
    out: dict[str, tuple[float, float]] = {}
    echo = run["cases"].get("echo", {})
    if echo.get("status") == "ok":
        for conns, case in echo["connections"].items():
            backends = case["backends"]
            out[f"echo {conns} conn, round trips/s"] = (backends["trio_uring"]["median"], backends["trio"]["median"])
    files = run["cases"].get("files", {})
    if files.get("status") == "ok":
        for placement, data in files["placements"].items():
            for name, case in data["data"]["cases"].items():
                median = case["median"]
                if "trio_uring.open_file" in median:
                    label = f"files {name} ({placement}), {case['unit']}"
                    out[label] = (median["trio_uring.open_file"], median["trio.open_file"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=3, help="alternations (default 3)")
    parser.add_argument("--only", default="echo,files", help="run.py cases (default echo,files)")
    parser.add_argument("--quick", action="store_true", help="run.py's tiny configuration (a smoke run)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    out_dir = RESULTS / f"compare-{args.before}-{args.after}".replace("/", "_").replace("~", "_")
    out_dir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, tuple[float, float]]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="trio_uring-revs-") as scratch:
        trees = {}
        commits = {}
        for which, rev in (("before", args.before), ("after", args.after)):
            trees[which] = Path(scratch) / which
            commits[which] = unpack(rev, trees[which])
        print(f"before: {args.before} ({commits['before'][:10]}); after: {args.after} ({commits['after'][:10]})")
        for round_ in range(1, args.rounds + 1):
            order = ("before", "after") if round_ % 2 else ("after", "before")
            for which in order:
                json_path = out_dir / f"round{round_}-{which}.json"
                argv = [sys.executable, "benchmarks/run.py", "--only", args.only, "--no-plot", "--json", str(json_path)]
                argv += ["--quick"] if args.quick else ["--rounds", "1"]
                started = time.monotonic()
                proc = subprocess.run(argv, cwd=trees[which], capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
                    raise SystemExit(f"compare_revs: run.py of {which} failed (status {proc.returncode})")
                run = json.loads(json_path.read_text())
                runs[which].append(metrics(run))
                print(f"round {round_}/{args.rounds}: {which} done in {time.monotonic() - started:.0f} s", flush=True)
    labels = [label for label in runs["after"][0] if all(label in r for r in runs["before"] + runs["after"])]
    lines = [
        f"trio_uring {args.before} ({commits['before'][:10]}) vs {args.after} ({commits['after'][:10]}), "
        f"{args.rounds} alternated rounds, medians",
        "",
        "| case | before | after | after / before | before vs stock | after vs stock |",
        "|---|---|---|---|---|---|",
    ]
    summary = []
    for label in labels:
        before = statistics.median(r[label][0] for r in runs["before"])
        after = statistics.median(r[label][0] for r in runs["after"])
        ratio_before = statistics.median(r[label][0] / r[label][1] for r in runs["before"])
        ratio_after = statistics.median(r[label][0] / r[label][1] for r in runs["after"])
        lines.append(
            f"| {label} | {before:,.1f} | {after:,.1f} | {after / before:.2f} | {ratio_before:.2f}x | {ratio_after:.2f}x |"
        )
        summary.append({"case": label, "before": before, "after": after, "after_vs_before": after / before,
                        "before_vs_stock": ratio_before, "after_vs_stock": ratio_after})  # fmt: skip
    table = "\n".join(lines)
    print(table)
    (out_dir / "summary.json").write_text(
        json.dumps({"before": commits["before"], "after": commits["after"], "rows": summary}, indent=1) + "\n"
    )
    print(f"runs and summary: {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
