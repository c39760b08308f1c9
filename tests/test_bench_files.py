"""benchmarks/bench_files.py runs (in its --quick configuration) and writes
the JSON that benchmarks/run.py reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .helpers import slowness

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_files.py"


def test_quick_run_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "files.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300 * slowness(),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert set(data["cases"]) == {"random4k", "seq64k", "smallfiles", "sendfile"}
    for case in data["cases"].values():
        assert case["ratio_vs_trio"]["trio.open_file"] == 1.0
        assert all(len(runs) >= 3 and min(runs) > 0 for runs in case["runs"].values())
        assert "trio_uring.open_file" in case["median"]
        assert "anyio.open_file" in case["median"]
    assert "trio_uring.sendfile" in data["cases"]["sendfile"]["median"]
    assert data["target"]["ratio"] == 8.0
    assert "x trio.open_file" in proc.stdout
