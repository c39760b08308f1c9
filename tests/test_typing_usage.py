"""tests/typing/usage.py (the public API as mypy --strict checks it on every
supported Python, see tests/matrix/pythons.py) also runs, so the types it
asserts are those of real values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .helpers import slowness

USAGE = Path(__file__).parent / "typing" / "usage.py"


def test_usage_runs() -> None:
    proc = subprocess.run([sys.executable, str(USAGE)], capture_output=True, text=True, timeout=120 * slowness())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
