"""``make bench-quick`` runs and writes well-formed results.

Benchmarks are not tests: nothing here looks at how fast anything was, only
that the harness ran every case (or recorded, with its reason, why it could
not) and wrote JSON in the shape the docs and the plot rely on.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .helpers import slowness

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
CASES = ("echo", "http", "idle_memory", "syscalls", "files", "loadgen_check")

sys.path.insert(0, str(BENCH))
import _harness  # noqa: E402


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    out = tmp_path_factory.mktemp("bench")
    budget = 60 * slowness()  # the quick configuration: a minute on a quiet machine
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "run.py"),
            "--quick",
            "--json",
            str(out / "quick.json"),
            "--plot",
            str(out / "quick.png"),
        ],
        capture_output=True,
        text=True,
        timeout=budget,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.monotonic() - started < budget
    return json.loads((out / "quick.json").read_text()), proc.stdout, out


def test_every_case_is_present_and_ran_or_says_why(quick: tuple[dict[str, Any], str, Path]) -> None:
    data, _, _ = quick
    assert data["schema"] == 1
    assert data["quick"] is True
    assert len(data["package"]["sha256"]) == 64  # the copy of trio_uring/ every server imported
    for name in CASES:
        case = data["cases"][name]
        assert case["status"] in ("ok", "unavailable"), (name, case)
        if case["status"] == "unavailable":
            assert case["reason"], name


def test_tools_are_recorded_explicitly(quick: tuple[dict[str, Any], str, Path]) -> None:
    data, _, _ = quick
    tools = data["tools"]
    for tool in ("wrk", "syscall_counter"):
        assert isinstance(tools[tool]["available"], bool)
        if not tools[tool]["available"]:
            assert tools[tool]["reason"]
    assert tools["loadgen"]["kind"] in ("c", "python")
    http = data["cases"]["http"]
    if http["status"] == "ok":
        assert http["load_generator"] == ("wrk" if tools["wrk"]["available"] else "loadgen http")
    syscalls = data["cases"]["syscalls"]
    if tools["syscall_counter"]["available"]:
        assert syscalls["status"] == "ok"
        assert syscalls["tool"] == tools["syscall_counter"]["tool"]
    else:
        assert syscalls["status"] == "unavailable"


def test_both_trio_backends_were_measured(quick: tuple[dict[str, Any], str, Path]) -> None:
    data, _, _ = quick
    cases = data["cases"]
    summaries = [*cases["echo"]["connections"].values(), cases["idle_memory"]]
    if cases["http"]["status"] == "ok":
        summaries.append(cases["http"])
    if cases["syscalls"]["status"] == "ok":
        summaries.append(cases["syscalls"])
    for summary in summaries:
        for backend in ("trio", "trio_uring"):
            entry = summary["backends"][backend]
            assert len(entry["samples"]) == data["config"]["rounds"]
            assert isinstance(entry["median"], float | int)
        assert isinstance(summary["ratio"], float)
    assert [int(c) for c in cases["echo"]["connections"]] == data["config"]["echo_conns"]


def test_targets_table_and_plot(quick: tuple[dict[str, Any], str, Path]) -> None:
    data, stdout, out = quick
    assert data["targets"]
    for target in data["targets"]:
        assert target["verdict"] in ("PASS", "MISS", "n/a")
    assert "trio_uring" in stdout
    assert "| benchmark |" in data["table_markdown"]
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert data["plot"].startswith("skipped")


@pytest.mark.parametrize("kind", ["python", "c"])
def test_load_generator_counts_exactly(kind: str) -> None:
    """Both load generators: an exact round-trip count, HTTP keep-alive, and idle connections."""
    if kind == "c":
        prefix, why = _harness.compile_loadgen()
        if prefix is None:
            pytest.skip(f"the C load generator cannot be built here: {why}")
    else:
        prefix = [sys.executable, str(BENCH / "loadgen.py")]
    try:
        with _harness.Server("echo", "trio_uring") as server:
            result = _harness.run_loadgen(prefix, "echo", server.port, 4, 64, 0, 30, 1000, timeout=60 * slowness())
            assert (result["round_trips"], result["stopped_by"], result["errors"]) == (1000, "count", 0)
            with _harness.idle_clients(prefix, server.port, 20, 64, hold=30.0) as ready:
                assert ready["connections"] == 20
                server.wait_connections(20, 10.0 * slowness())
            server.wait_connections(0, 10.0 * slowness())
        with _harness.Server("http", "asyncio") as server:
            result = _harness.run_loadgen(prefix, "http", server.port, 4, 0, 30, 500, timeout=60 * slowness())
            assert (result["round_trips"], result["errors"]) == (500, 0)
    finally:
        _harness.kill_all()


def test_stream_layers_script_runs_and_reports_three_servers() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "stream_layers.py"), "--rounds", "1", "--conns", "4", "--seconds", "0.2"],
        capture_output=True,
        text=True,
        timeout=180 * slowness(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if "round trips/s" in line]
    assert [line.split("  ")[0].strip() for line in lines] == ["trio", "trio, no stream layers", "trio_uring"]
