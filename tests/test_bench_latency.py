"""The latency benchmark: the open-loop load generator and ``benchmarks/latency.py --quick``.

As in test_bench.py, nothing here looks at how fast anything was; the one
latency bound below is a lower bound a slow machine can only exceed.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .helpers import slowness

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"

sys.path.insert(0, str(BENCH))
import _harness  # noqa: E402


@pytest.fixture(scope="module")
def loadgen() -> list[str]:
    prefix, why = _harness.compile_loadgen()
    if prefix is None:
        pytest.skip(f"the C load generator cannot be built here: {why}")
    return prefix


class SlowEchoServer:
    """Echoes each read 50 ms after it arrived: a server far slower than the schedule."""

    DELAY = 0.05

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            while data := conn.recv(65536):
                time.sleep(self.DELAY)
                conn.sendall(data)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(30)


def test_open_loop_keeps_its_schedule_when_the_server_is_slow(loadgen: list[str]) -> None:
    """300 requests are due in 0.3 s at 1,000/s and all are sent, though each
    reply takes 50 ms: a closed loop would have made about 6.  Every latency
    counts from the scheduled send, so none is below the server's delay."""
    server = SlowEchoServer()
    try:
        result = _harness.run_loadgen(
            loadgen, "echo-rate", server.port, 1, 64, 1000, 0, 0.3, 100_000, timeout=60 * slowness()
        )
    finally:
        server.close()
    assert result["errors"] == 0
    assert 299 <= result["requests"] <= 301
    assert result["replies"] == result["requests"]
    latency = result["latency_us"]
    assert latency["count"] == result["requests"]
    assert latency["p50"] >= SlowEchoServer.DELAY * 1e6
    assert latency["p50"] <= latency["p99"] <= latency["p99.9"] <= latency["max"]
    assert result["send_lag_us"]["count"] == result["requests"]


@pytest.mark.parametrize(("mode", "backend"), [("echo-rate", "trio_uring"), ("http-rate", "asyncio")])
def test_open_loop_counts_every_reply(loadgen: list[str], mode: str, backend: str) -> None:
    kind = mode.split("-")[0]
    args: tuple[float | int, ...] = (64,) if kind == "echo" else ()
    try:
        with _harness.Server(kind, backend) as server:
            result = _harness.run_loadgen(
                loadgen, mode, server.port, 4, *args, 2000, 0.05, 0.2, 200, "sleep", timeout=60 * slowness()
            )
    finally:
        _harness.kill_all()
    # bounded by count: exactly 200 recorded, every one answered and checked
    assert (result["requests"], result["replies"], result["errors"]) == (200, 200, 0)
    assert result["warmup_requests"] > 0
    assert result["wait"] == "sleep"


def test_bad_usage_is_exit_status_2(loadgen: list[str]) -> None:
    for argv in (["echo-rate", "127.0.0.1", "1", "1", "64", "0", "0", "1", "1"], ["echo-rate", "127.0.0.1", "1"]):
        proc = subprocess.run([*loadgen, *argv], capture_output=True, timeout=30 * slowness(), check=False)
        assert proc.returncode == 2, argv


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    out = tmp_path_factory.mktemp("latency")
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "latency.py"),
            "--quick",
            "--only",
            "echo1,idle_cpu",
            "--json",
            str(out / "latency.json"),
            "--plot",
            str(out / "latency.png"),
        ],
        capture_output=True,
        text=True,
        timeout=300 * slowness(),
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((out / "latency.json").read_text()), proc.stdout, out


def test_quick_latency_run_measures_every_backend_at_every_load(quick: tuple[dict[str, Any], str, Path]) -> None:
    data, stdout, out = quick
    assert data["quick"] is True
    cases = data["cases"]
    assert cases["echo8"]["status"] == "skipped"
    echo1 = cases["echo1"]
    if echo1["status"] == "unavailable":
        pytest.skip(echo1["reason"])
    assert echo1["status"] == "ok", echo1
    assert echo1["stock_closed_loop_max"]["rate"] > 0
    assert list(echo1["loads"]) == ["25%", "50%", "90%"]
    for load in echo1["loads"].values():
        for backend in ("trio", "trio_uring", "trio_uring-nospin"):
            entry = load["backends"][backend]
            assert len(entry["runs"]) == data["config"]["rounds"]
            assert 0 < entry["p50"] <= entry["p99"] <= entry["p99.9"] <= entry["max"]
            assert entry["server_cpu_us_per_request"] > 0
        for backend in ("trio_uring", "trio_uring-nospin"):
            assert isinstance(load["ratios"][backend]["p99"], float)
    idle = cases["idle_cpu"]
    assert idle["status"] == "ok"
    assert set(idle["backends"]) == {"trio", "trio_uring", "trio_uring-nospin"}
    assert {t["verdict"] for t in data["targets"]} <= {"PASS", "MISS", "n/a"}
    assert "echo1" in stdout
    assert "| case |" in data["table_markdown"]
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
