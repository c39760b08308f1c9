"""Our suite, and the type check of the public API, on every Python we support.

For each of Python 3.11, 3.12 and 3.13 found on this machine (as a user would
find it: see common.py), a venv with ``pip install -e '.[test]'``, then

    pytest tests --ignore=tests/conformance
    mypy --strict --python-version 3.X examples tests/typing

and a table of the results.  Fails if a Python is missing (unless
``--allow-missing``), a test fails, or mypy reports an error.

    python tests/matrix/pythons.py [--pythons 3.12,3.13] [--tests PATH,...] [--typing-only] [pytest args]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

from common import PYTHONS, ROOT, cpu_minutes, find_python, full_version, table, venv

TYPED = ["examples", "tests/typing"]


def summary(out: str) -> str:
    """pytest's last line without the '=' framing and the timing, e.g. '379 passed, 2 skipped'."""
    for line in reversed(out.splitlines()):
        m = re.search(r"(\d+ (passed|failed|error|errors|skipped|no tests ran)\b.*?)( in [\d.]+s.*)?=*$", line)
        if m and " in " in line:
            return m.group(1).strip(" =")
    return "no summary"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pythons", default=",".join(PYTHONS))
    parser.add_argument("--typing-only", action="store_true", help="only mypy --strict, no pytest")
    parser.add_argument("--allow-missing", action="store_true", help="skip a Python that is not installed")
    parser.add_argument(
        "--tests",
        default="tests",
        help="comma-separated test paths (default: the whole suite); CI's reduced matrix names a subset",
    )
    args, extra = parser.parse_known_args()
    rows: list[list[str]] = []
    ok = True
    for minor in args.pythons.split(","):
        exe = find_python(minor)
        if exe is None:
            print(f"== Python {minor}: not found (python{minor} on PATH, pyenv's versions folder)", flush=True)
            rows.append([minor, "not found", "-", "-", "-"])
            ok = ok and args.allow_missing
            continue
        print(f"== Python {minor}: {exe}", flush=True)
        py = venv(f"py{minor}", exe, [])
        result = "-"
        t0, c0 = time.monotonic(), cpu_minutes()
        if not args.typing_only:
            cmd = [
                str(py),
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                *args.tests.split(","),
                "--ignore=tests/conformance",
                *extra,
            ]
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            out = proc.stdout + proc.stderr
            print("\n".join(proc.stdout.splitlines()[-15:]), flush=True)
            result = summary(out)
            ok = ok and proc.returncode == 0
        took, cpu = time.monotonic() - t0, cpu_minutes() - c0
        cmd = [str(py), "-m", "mypy", "--strict", "--no-incremental", "--python-version", minor, *TYPED]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        typing = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()
        print(proc.stdout[-3000:], flush=True)
        ok = ok and proc.returncode == 0
        rows.append([minor, full_version(exe), result, typing, f"{took / 60:.1f} min", f"{cpu:.1f} min"])
    print()
    print(
        table(
            [
                "Python",
                "interpreter",
                "pytest tests",
                "mypy --strict examples tests/typing",
                "suite wall time",
                "suite CPU time",
            ],
            rows,
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
