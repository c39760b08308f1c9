"""benchmarks/bench_workers.py and benchmarks/startup.py run and report.

Benchmarks are not tests: nothing here looks at how fast anything was, only
that each harness ran in a tiny configuration and wrote its JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def test_bench_workers_quick(tmp_path: Path) -> None:
    out = tmp_path / "workers.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_workers.py"), "--quick", "--conns", "8", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    for workers in (1, 2):
        for backend, io_backend in (("trio", "epoll"), ("io_uring", "io_uring")):
            entry = result["results"][f"8 conns, {workers} workers, {backend}"]
            assert entry["rate_median"] > 0
            assert sorted(entry["per_worker"]) == [str(i) for i in range(workers)]
            assert {w["backend"] for w in entry["per_worker"].values()} == {io_backend}
            assert abs(sum(w["share_median"] for w in entry["per_worker"].values()) - 1) < 0.2
        assert result["results"][f"8 conns, {workers} workers, io_uring/trio"] > 0


def test_startup_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "startup.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "startup.py"), "--rounds", "10", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["rounds"] == 10
    for kind in ("wall", "cpu"):
        assert set(result[kind]) == {"no hook", "hook, variable unset", "hook, TRIO_URING_RUN=1"}
        assert result[kind]["no hook"]["median_ms"] > 0
