"""tests/test_anyio.py on the oldest anyio trio_uring's ``anyio`` extra allows
(4.4.0) and the newest on PyPI, each in its own venv
(``.venv-matrix/anyio-<version>-py<X.Y>``) with ``pip install anyio==<version>``
first and trio_uring installed beside it.

    python tests/matrix/anyios.py [--anyios 4.4.0,newest] [--python 3.11] [pytest args]
"""

from __future__ import annotations

import subprocess
import sys

from common import PYTHONS, ROOT, installed_versions, venv, version_matrix
from pythons import summary

ANYIOS = ("4.4.0", "newest")


def run_one(version: str, python: str, exe: str, extra: list[str]) -> tuple[list[str], bool]:
    # "newest": whatever pip picks today, recorded in the table
    requirement = "anyio" if version == "newest" else f"anyio=={version}"
    py = venv(f"anyio-{version}-py{python}", exe, [requirement])
    versions = installed_versions(py)
    print(f"== anyio {versions['anyio']} with trio {versions['trio']} on Python {python}", flush=True)
    cmd = [str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_anyio.py", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    print("\n".join(out.splitlines()[-8:]), flush=True)
    return [versions["anyio"], versions["trio"], python, summary(out)], proc.returncode == 0


def main() -> int:
    header = ["anyio", "trio", "Python", "tests/test_anyio.py"]
    return version_matrix(__doc__ or "", "anyios", ANYIOS, PYTHONS[0], header, run_one)


if __name__ == "__main__":
    sys.exit(main())
