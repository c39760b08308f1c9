"""anyio's own tests/test_fileio.py, with trio_uring installed.

Downloads the sdist of the anyio version installed in this environment from
PyPI (``pip download --no-binary :all: --no-deps anyio==X``, cached in
``.venv/anyio-sdist``), installs the two pytest plugins its configuration
loads (pytest-mock, pytest-timeout), and runs its test_fileio.py with
``pytest --trio-uring``: every anyio test on the trio backend then runs on
io_uring, through trio_uring's hook of anyio's file API (the asyncio ones run
anyio's own code, as before).  The probe plugin beside this file checks that
the hook really served the trio tests and prints how many files it opened.

Usage: python tests/anyio_suite/run.py [extra pytest arguments]
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def main() -> int:
    version = importlib.metadata.version("anyio")
    cache = Path(sys.prefix) / "anyio-sdist"
    tree = cache / f"anyio-{version}"
    if not (tree / "tests" / "test_fileio.py").exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
             f"anyio=={version}", "-d", str(cache)],
            check=True,
        )  # fmt: skip
        with tarfile.open(cache / f"anyio-{version}.tar.gz") as tar:
            tar.extractall(cache, filter="data")
    missing = [m for m in ("pytest_mock", "pytest_timeout") if _absent(m)]
    if missing:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", *(m.replace("_", "-") for m in missing)], check=True
        )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "pytest", "tests/test_fileio.py", "--trio-uring", "-p", "anyio_probe",
               "-p", "no:cacheprovider", "-q", *sys.argv[1:]]  # fmt: skip
    print(f"anyio {version}: {' '.join(command[1:])}", flush=True)
    return subprocess.run(command, cwd=tree, env=env, check=False).returncode


def _absent(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


if __name__ == "__main__":
    sys.exit(main())
