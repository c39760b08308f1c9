"""tests/test_anyio.py on the oldest anyio trio_uring's ``anyio`` extra allows
(4.4.0) and the newest on PyPI, each in its own venv
(``.venv-matrix/anyio-<version>-py<X.Y>``) with ``pip install anyio==<version>``
first and trio_uring installed beside it.

    python tests/matrix/anyios.py [--anyios 4.4.0,newest] [--python 3.11] [pytest args]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from common import PYTHONS, ROOT, cpu_minutes, find_python, installed_versions, table, venv
from pythons import summary

ANYIOS = ("4.4.0", "newest")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--anyios", default=",".join(ANYIOS))
    parser.add_argument("--python", default=PYTHONS[0])
    args, extra = parser.parse_known_args()
    exe = find_python(args.python)
    if exe is None:
        print(f"Python {args.python} not found")
        return 1
    rows: list[list[str]] = []
    ok = True
    for version in args.anyios.split(","):
        t0, c0 = time.monotonic(), cpu_minutes()
        # "newest": whatever pip picks today, recorded in the table
        requirement = "anyio" if version == "newest" else f"anyio=={version}"
        py = venv(f"anyio-{version}-py{args.python}", exe, [requirement])
        versions = installed_versions(py)
        print(f"== anyio {versions['anyio']} with trio {versions['trio']} on Python {args.python}", flush=True)
        cmd = [str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_anyio.py", *extra]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        out = proc.stdout + proc.stderr
        print("\n".join(out.splitlines()[-8:]), flush=True)
        ok = ok and proc.returncode == 0
        rows.append(
            [
                versions["anyio"],
                versions["trio"],
                args.python,
                summary(out),
                f"{(time.monotonic() - t0) / 60:.1f} min",
                f"{cpu_minutes() - c0:.1f} min",
            ]
        )
    print()
    print(table(["anyio", "trio", "Python", "tests/test_anyio.py", "wall time", "CPU time"], rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
