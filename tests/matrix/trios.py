"""trio's own test suite, stock vs trio_uring, for each trio release we support.

For each trio version, a venv (``.venv-matrix/trio-<version>-py<X.Y>``) with
``pip install trio==<version>`` first and then ``pip install -e '.[test]'``
beside it, which must leave that trio in place (common.venv checks), then
tests/conformance/run.py: the suite shipped inside *that* trio package, once
on stock trio and once with ``--trio-uring``, with the same allowed
exclusion (allowed_failures.txt).  Prints a Markdown table for
docs/conformance.md; fails if any version has a regression.

    python tests/matrix/trios.py [--trios 0.27.0,0.35.0] [--python 3.13] [run.py args]
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from common import PYTHONS, ROOT, full_version, venv, version_matrix

TRIOS = ("0.27.0", "0.28.0", "0.29.0", "0.30.0", "0.31.0", "0.32.0", "0.33.0", "0.34.0", "0.35.0")


def passed(line_prefix: str, out: str) -> str:
    """The passed count of run.py's summary line ``<prefix>: ... N passed ...``
    (the pytest plugin also prints a ``trio_uring: N trio runs ...`` line)."""
    counts = re.findall(rf"^{line_prefix}: .*?(\d+) passed", out, re.MULTILINE)
    return counts[-1] if counts else "-"


def run_one(version: str, python: str, exe: str, extra: list[str]) -> tuple[list[str], bool]:
    print(f"== trio {version} on Python {python} ({exe})", flush=True)
    py = venv(f"trio-{version}-py{python}", exe, [f"trio=={version}"])
    got = subprocess.run([str(py), "-c", "import trio; print(trio.__version__)"], capture_output=True, text=True)
    if got.stdout.strip() != version:
        raise SystemExit(f"the venv for trio {version} has trio {got.stdout.strip() or got.stderr}")
    env = {"TRIO_URING_CONFORMANCE_TIMEOUT": "10800", **os.environ}
    proc = subprocess.run(
        [str(py), str(ROOT / "tests" / "conformance" / "run.py"), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    out = proc.stdout + proc.stderr
    print(out[-12000:], flush=True)
    m = re.search(r"FAIL: (\d+) test\(s\) pass on stock", out)
    regressions = m.group(1) if m else ("0" if proc.returncode == 0 else "run failed")
    allowed = len(re.findall(r"^allowed difference: ", out, re.MULTILINE))
    row = [version, full_version(exe), passed("stock trio", out), passed("trio_uring", out), regressions, str(allowed)]
    return row, proc.returncode == 0


def main() -> int:
    header = ["trio", "Python", "stock passed", "trio_uring passed", "regressions", "allowed differences"]
    return version_matrix(__doc__ or "", "trios", TRIOS, PYTHONS[-1], header, run_one)


if __name__ == "__main__":
    sys.exit(main())
