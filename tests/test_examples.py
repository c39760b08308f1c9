"""Every example runs, briefly, as the docs show it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import slowness

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("script", "args", "expect"),
    [
        ("echo.py", ["--connections", "4", "--messages", "50"], "every byte checked"),
        ("pipe_cancel.py", ["--bytes", "65536", "--seed", "1"], "arrived intact"),
        ("lowlevel_sockets.py", [], "cancelled while in flight: True"),
        ("cancel_storm.py", ["--connections", "4", "--seconds", "0.5"], "every byte checked"),
        ("framing.py", [], "runs, 0 failing"),
        ("session_faults.py", [], "as expected: the naive reader fails once receives are short"),
        ("http_server.py", ["--selftest"], "selftest passed"),
        ("anyio_echo.py", ["--connections", "3", "--messages", "20"], "io_statistics.backend: io_uring"),
        ("anyio_echo.py", ["--how", "installed", "--messages", "20"], "io_statistics.backend: io_uring"),
        ("anyio_echo.py", ["--how", "run", "--messages", "20"], "io_statistics.backend: io_uring"),
        ("kernel_profiles.py", ["--messages", "20"], "the same bytes on every kernel profile"),
        ("spin.py", ["--requests", "300"], "spin off: median round trip"),
        ("serve_workers.py", ["--selftest"], "selftest passed"),
        ("asgi_backend.py", ["--selftest"], "selftest passed"),
        ("anyio_files.py", ["--files", "5"], "on io_uring: worker-thread jobs 0, threads started 0"),
        (
            "anyio_files.py",
            ["--files", "3", "--how", "installed"],
            "on io_uring: worker-thread jobs 0, threads started 0",
        ),
    ],
)
def test_example_runs(script: str, args: list[str], expect: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=120 * slowness(),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert expect in proc.stdout
    assert "io_uring" in proc.stdout
