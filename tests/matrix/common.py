"""What the version matrices share: finding Pythons as a user would, and a
venv per combination with trio_uring installed beside pinned packages.

Pythons are looked up the way a user finds them: ``python3.X`` on PATH first
(pyenv's shims are on PATH too, and refuse with an error for a version that
is not the selected one, so every candidate is asked for its version and one
that fails or answers differently is skipped), then pyenv's versions folder
(``$PYENV_ROOT/versions/3.X.*/bin/python3``, newest patch release first).

Venvs live in ``.venv-matrix/<name>`` at the repository root and are reused
while pyproject.toml and the pins are unchanged (a stamp file records both).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import resource
import shutil
import subprocess
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / ".venv-matrix"
PYTHONS = ("3.11", "3.12", "3.13")


def _version_of(exe: str) -> str | None:
    """The ``major.minor`` that ``exe`` really runs, or None if it does not run."""
    try:
        proc = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _patch_key(path: str) -> tuple[int, ...]:
    name = Path(path).parents[1].name  # .../versions/3.12.1/bin/python3 -> 3.12.1
    return tuple(int(p) if p.isdigit() else -1 for p in name.split("."))


def find_python(minor: str) -> str | None:
    """An interpreter for Python ``minor`` ("3.12"), found as a user would find it."""
    candidates: list[str] = []
    on_path = shutil.which(f"python{minor}")
    if on_path:
        candidates.append(on_path)
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = glob.glob(os.path.join(pyenv_root, "versions", f"{minor}.*", "bin", "python3"))
    candidates += sorted(found, key=_patch_key, reverse=True)
    for exe in candidates:
        if _version_of(exe) == minor:
            return exe
    return None


def full_version(exe: str) -> str:
    out = subprocess.run(
        [exe, "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True
    )
    return out.stdout.strip()


def venv(name: str, python: str, requirements: list[str], *, extras: str = "test") -> Path:
    """``.venv-matrix/<name>`` with ``pip install requirements`` then
    ``pip install -e '.[extras]'`` (trio_uring beside them), reused while
    nothing changed.  Returns the venv's python.  Checks that installing
    trio_uring did not change any pinned requirement's version."""
    path = VENVS / name
    py = path / "bin" / "python"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = json.dumps([project["dependencies"], project.get("optional-dependencies")], sort_keys=True)
    key = hashlib.sha256("\n".join([python, extras, *requirements, deps]).encode()).hexdigest()[:16]
    stamp = path / f".stamp-{key}"
    if stamp.exists():
        return py
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.monotonic()
    subprocess.run([python, "-m", "venv", str(path)], check=True)
    pip = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    if requirements:
        subprocess.run([*pip, *requirements], check=True)
    before = installed_versions(py)
    subprocess.run([*pip, "-e", f"{ROOT}[{extras}]"] if extras else [*pip, "-e", str(ROOT)], check=True, cwd=ROOT)
    after = installed_versions(py)
    changed = {k: (before[k], after.get(k)) for k in before if after.get(k) != before[k]}
    pinned = {r.split("==")[0].lower() for r in requirements if "==" in r}
    if changed.keys() & pinned:
        raise SystemExit(f"installing trio_uring changed pinned packages in {path}: {changed}")
    stamp.touch()
    print(f"   venv {name}: {time.monotonic() - t0:.0f} s", flush=True)
    return py


def installed_versions(py: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(py), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split("==")[0].lower(): line.split("==")[1] for line in out.splitlines() if "==" in line}


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_minutes() -> float:
    """CPU time (user + system) of the subprocesses waited for so far, in
    minutes: on a shared machine a steadier measure of cost than wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) / 60


#: one combination of a version matrix: (version, Python "3.X", its
#: executable, extra arguments) -> (the table row, whether it passed)
RunOne = Callable[[str, str, str, list[str]], tuple[list[str], bool]]


def version_matrix(
    doc: str, flag: str, versions: Sequence[str], python: str, header: list[str], run_one: RunOne
) -> int:
    """The loop the package-version matrices share (trios.py, anyios.py):
    ``--<flag> a,b,...`` (default ``versions``) and ``--python 3.X``
    (default ``python``); unknown arguments go to ``run_one``.  Runs each
    version, adds its wall and CPU time to its row, prints the Markdown
    table; exit status 1 if any failed or the Python is missing."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(f"--{flag}", default=",".join(versions))
    parser.add_argument("--python", default=python, help="which Python (default: %(default)s)")
    args, extra = parser.parse_known_args()
    exe = find_python(args.python)
    if exe is None:
        print(f"Python {args.python} not found")
        return 1
    rows: list[list[str]] = []
    ok = True
    for version in getattr(args, flag).split(","):
        t0, c0 = time.monotonic(), cpu_minutes()
        row, passed = run_one(version, args.python, exe, extra)
        ok = ok and passed
        rows.append([*row, f"{(time.monotonic() - t0) / 60:.1f} min", f"{cpu_minutes() - c0:.1f} min"])
    print()
    print(table([*header, "wall time", "CPU time"], rows))
    return 0 if ok else 1
