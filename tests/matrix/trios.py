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

import argparse
import os
import re
import subprocess
import sys
import time

from common import PYTHONS, ROOT, cpu_minutes, find_python, full_version, table, venv

TRIOS = ("0.27.0", "0.28.0", "0.29.0", "0.30.0", "0.31.0", "0.32.0", "0.33.0", "0.34.0", "0.35.0")


def passed(line_prefix: str, out: str) -> str:
    m = re.search(rf"^{line_prefix}: (.*)$", out, re.MULTILINE)
    if not m:
        return "-"
    n = re.search(r"(\d+) passed", m.group(1))
    return n.group(1) if n else "0"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trios", default=",".join(TRIOS))
    parser.add_argument("--python", default=PYTHONS[-1], help="which Python (default: the newest, %(default)s)")
    args, extra = parser.parse_known_args()
    exe = find_python(args.python)
    if exe is None:
        print(f"Python {args.python} not found")
        return 1
    rows: list[list[str]] = []
    ok = True
    for version in args.trios.split(","):
        print(f"== trio {version} on Python {args.python} ({exe})", flush=True)
        t0, c0 = time.monotonic(), cpu_minutes()
        py = venv(f"trio-{version}-py{args.python}", exe, [f"trio=={version}"])
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
        ok = ok and proc.returncode == 0
        rows.append(
            [
                version,
                full_version(exe),
                passed("stock trio", out),
                passed("trio_uring", out),
                regressions,
                str(allowed),
                f"{(time.monotonic() - t0) / 60:.1f} min",
                f"{cpu_minutes() - c0:.1f} min",
            ]
        )
    print()
    header = [
        "trio",
        "Python",
        "stock passed",
        "trio_uring passed",
        "regressions",
        "allowed differences",
        "wall time",
        "CPU time",
    ]
    print(table(header, rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
