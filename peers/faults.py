"""Other projects' own test suites under trio_uring's session fault modes.

    python peers/faults.py                      # every project, every mode
    python peers/faults.py --project hypercorn --mode short_io=1
    python peers/faults.py --list

Each project's sdist comes from the package registry (``pip download
--no-binary :all:``) into ``~/.cache/trio_uring_peers/`` (or
``$TRIO_URING_PEERS``), is unpacked there and
installed, with its test dependencies and this checkout of trio_uring, into a
venv of its own.  Its suite then runs with ``pytest --trio-uring`` (the
baseline), on trio's own backend ("stock"), and once per fault mode
(``--trio-uring-faults SPEC``), each test limited to 120 s (pytest-timeout).
A summary line per run, and the full output in ``logs/`` there.

Not part of CI: these are other people's suites, downloaded.  ``make
peer-faults`` runs this; docs/testing.md ("What it found") explains every
failure it reports.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: venvs, sdists and logs: outside the repository (so that pytest, looking
#: upwards for a configuration, never finds ours)
WORK = Path(os.environ.get("TRIO_URING_PEERS", Path.home() / ".cache" / "trio_uring_peers"))


@dataclass(frozen=True)
class Project:
    name: str
    version: str
    #: what pip installs beside the sdist (test dependencies)
    deps: tuple[str, ...]
    #: test paths / node ids, relative to the unpacked sdist
    tests: tuple[str, ...]
    #: extra pytest arguments (deselections that need the network, ...)
    args: tuple[str, ...] = ()
    extras: str = ""
    env: dict[str, str] = field(default_factory=dict)
    #: a pytest.ini to write, for a project whose sdist leaves its own out
    ini: str = ""
    #: fault modes for this project after the common ones
    extra_modes: tuple[str, ...] = ()

    @property
    def dist(self) -> str:
        return f"{self.name}=={self.version}"


PROJECTS = {
    p.name: p
    for p in (
        Project(
            "trio-websocket",
            "0.12.2",
            deps=("pytest", "pytest-trio", "trustme", "attrs"),
            tests=("tests",),
            ini="[pytest]\ntrio_mode = true\n",  # its repository's pytest.ini, not in the sdist
        ),
        Project(
            "httpcore",
            "1.0.9",
            extras="[http2,socks,trio,asyncio]",
            deps=("pytest", "pytest-trio", "pytest-httpbin", "trustme", "anyio"),
            tests=("tests",),
            # the trio half of its anyio-parametrized tests, and the sync tests
            # (which run no trio) stay out: only trio runs meet the faults
            args=("-k", "trio or not anyio_backend", "-p", "no:asyncio"),
            # only its 3 integration tests do real I/O (7 RECVs): 0.05 injects nothing
            extra_modes=("errno=RECV:ECONNRESET:0.5,seed=1",),
        ),
        Project(
            "hypercorn",
            "0.18.0",
            extras="[trio]",
            deps=("pytest", "pytest-trio", "pytest-asyncio", "httpx", "hypothesis", "mock"),
            tests=("tests/trio", "tests/e2e"),
            args=("-o", "addopts=--strict-markers"),  # its addopts need pytest-cov
        ),
    )
}

#: the fault modes each suite runs under, after two baselines: "stock" (trio's
#: own backend) and "none" (io_uring, no faults)
MODES = ("stock", "none", "short_io=1", "errno=RECV:ECONNRESET:0.05,seed=1")


def sh(*cmd: str | Path, **kw: object) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)  # type: ignore[call-overload]


def prepare(project: Project, python: str) -> tuple[Path, Path]:
    """The unpacked sdist and the venv's python, created on first use."""
    base = WORK / f"{project.name}-{project.version}"
    venv = base / "venv"
    src_root = base / "src"
    stamp = base / ".ready"
    py = venv / "bin" / "python"
    if stamp.exists():
        return next(src_root.iterdir()), py
    shutil.rmtree(base, ignore_errors=True)
    (base / "sdist").mkdir(parents=True)
    sh(python, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps", project.dist, "-d", base / "sdist")
    (sdist,) = (base / "sdist").iterdir()
    with tarfile.open(sdist) as tar:
        tar.extractall(src_root, filter="data")
    src = next(src_root.iterdir())
    sh(python, "-m", "venv", venv)
    sh(py, "-m", "pip", "install", "-q", "--upgrade", "pip")
    sh(py, "-m", "pip", "install", "-q", f"{sdist}{project.extras}", *project.deps, "pytest-timeout", "-e", ROOT)
    if project.ini:
        (src / "pytest.ini").write_text(project.ini)
    stamp.touch()
    return src, py


SUMMARY = re.compile(r"^=+ (.*(passed|failed|error|skipped|deselected).*) in [\d.]+s", re.M)


def run(project: Project, mode: str, python: str, extra: list[str]) -> tuple[str, str]:
    src, py = prepare(project, python)
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    args = ["-m", "pytest", "-p", "no:cacheprovider", "-rfE", "--timeout=120", *project.args]
    if mode != "stock":  # stock: trio's own backend, to tell the suite's own failures apart
        args.append("--trio-uring")
    if mode not in ("none", "stock"):
        args += ["--trio-uring-faults", mode]
    args += [*project.tests, *extra]
    log = logs / f"{project.name}-{re.sub(r'[^A-Za-z0-9=.]+', '_', mode)}.log"
    start = time.monotonic()
    env = {**os.environ, **project.env, "PYTHONDONTWRITEBYTECODE": "1"}
    with log.open("w") as out:
        out.write(f"$ cd {src} && {py} {' '.join(args)}\n")
        out.flush()
        proc = subprocess.run([str(py), *args], cwd=src, stdout=out, stderr=subprocess.STDOUT, env=env)
    text = log.read_text()
    found = SUMMARY.findall(text)
    summary = found[-1][0] if found else f"exit {proc.returncode}, no pytest summary"
    return (
        summary,
        f"{time.monotonic() - start:.0f}s, {log}",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", action="append", choices=sorted(PROJECTS), help="default: all")
    parser.add_argument(
        "--mode",
        action="append",
        help=f"a --trio-uring-faults spec, 'none', or 'stock' for trio's own backend (default: {MODES})",
    )
    parser.add_argument("--python", default=sys.executable, help="the Python the venvs are made from")
    parser.add_argument("--list", action="store_true", help="list the projects and modes")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    opts = parser.parse_args()
    projects = [PROJECTS[name] for name in opts.project or PROJECTS]
    modes = opts.mode or list(MODES)
    if opts.list:
        for project in projects:
            print(project.dist, " ".join(project.tests), " ".join(project.args))
        print("modes:", *modes, sep="\n  ")
        return 0
    results = []
    for project in projects:
        for mode in modes if opts.mode else [*modes, *project.extra_modes]:
            summary, where = run(project, mode, opts.python, opts.pytest_args)
            line = f"{project.dist:24} {mode:55} {summary} ({where})"
            print(line, flush=True)
            results.append(line)
    print("\n".join(["", "peer-faults summary:", *results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
