"""What the ``trio-uring run`` start-up hook costs a Python process that never imports trio.

    python benchmarks/startup.py [--rounds N] [--quick] [--json PATH]

The hook is one line in ``trio_uring-startup.pth``, which ``site`` executes
at every interpreter start wherever trio_uring is installed.  This measures
the wall time of ``python -c pass`` (start-up and shut-down, fork and exec
included) in a scratch virtual environment created for the purpose, so that
nothing else in site-packages (an editable install's finder, other ``.pth``
files) weighs on the numbers, in three configurations:

- ``no hook``: no ``trio_uring-startup.pth`` in site-packages;
- ``hook, variable unset``: the file is there (every process on a machine
  with trio_uring installed);
- ``hook, TRIO_URING_RUN=1``: under the launcher, in a process that never
  imports trio: the hook module is imported and puts its finder on
  ``sys.meta_path``, nothing more.

Each round runs the three once, in a shuffled order (the file is renamed in
and out between runs), so that a change in the machine's load hits all of
them alike; the result is the median of each and the median of the paired
differences against ``no hook``, with their interquartile ranges.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PTH_NAME = "trio_uring-startup.pth"
PTH_LINE = "import os; 'TRIO_URING_RUN' in os.environ and __import__('_trio_uring_startup').activate()\n"
CONFIGS = ("no hook", "hook, variable unset", "hook, TRIO_URING_RUN=1")


def make_venv(where: Path) -> tuple[Path, Path]:
    """A bare virtual environment (no pip) with the hook module; (python, site-packages)."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    site = Path(purelib)
    shutil.copy(ROOT / "trio_uring" / "_startup.py", site / "_trio_uring_startup.py")
    # pip compiles what it installs: so do we (PYTHONDONTWRITEBYTECODE would
    # otherwise make every run compile the module from source)
    subprocess.run([str(python), "-m", "compileall", "-q", str(site / "_trio_uring_startup.py")], check=True)
    (site / (PTH_NAME + ".off")).write_text(PTH_LINE)
    return python, site


def time_once(python: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child: user + system) of one ``python -c pass``."""
    started = time.perf_counter()
    pid = os.posix_spawn(str(python), [str(python), "-c", "pass"], env)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{python} -c pass failed")
    return elapsed, usage.ru_utime + usage.ru_stime


def measure(rounds: int, warmup: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="trio_uring-startup-") as scratch:
        python, site = make_venv(Path(scratch) / "venv")
        on, off = site / PTH_NAME, site / (PTH_NAME + ".off")
        env_unset = {k: v for k, v in os.environ.items() if k not in ("TRIO_URING_RUN", "PYTHONPATH")}
        env_set = {**env_unset, "TRIO_URING_RUN": "1"}
        wall: dict[str, list[float]] = {name: [] for name in CONFIGS}
        cpu: dict[str, list[float]] = {name: [] for name in CONFIGS}
        rng = random.Random(0)
        for i in range(warmup + rounds):
            order = list(CONFIGS)
            rng.shuffle(order)
            for name in order:
                if name == "no hook":
                    if on.exists():
                        on.rename(off)
                elif off.exists():
                    off.rename(on)
                elapsed, cpu_s = time_once(python, env_set if name.endswith("=1") else env_unset)
                if i >= warmup:
                    wall[name].append(elapsed)
                    cpu[name].append(cpu_s)
        if off.exists():
            off.rename(on)
        # the hook really ran in the last configuration, and imported no trio
        check = subprocess.run(
            [str(python), "-c", "import sys; print(type(sys.meta_path[0]).__name__, 'trio' in sys.modules)"],
            env=env_set,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if check != ["TrioImportFinder", "False"]:
            raise SystemExit(f"the hook did not run as expected: {check}")
    return {
        "python": sys.version.split()[0],
        "rounds": rounds,
        "load_average": os.getloadavg(),
        "wall": summarize(wall),
        "cpu": summarize(cpu),
    }


def summarize(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per configuration: median and IQR (ms), and the median paired difference against no hook."""
    base = samples["no hook"]
    out = {}
    for name, values in samples.items():
        diffs = [a - b for a, b in zip(values, base, strict=True)]
        out[name] = {
            "median_ms": round(statistics.median(values) * 1e3, 3),
            "iqr_ms": round(iqr(values) * 1e3, 3),
            "difference_ms": round(statistics.median(diffs) * 1e3, 3),
            "difference_iqr_ms": round(iqr(diffs) * 1e3, 3),
        }
    return out


def iqr(values: list[float]) -> float:
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="200 rounds: a smoke run")
    parser.add_argument("--json", metavar="PATH", help="also write the result here")
    args = parser.parse_args()
    rounds = 200 if args.quick else args.rounds
    result = measure(rounds, warmup=max(5, rounds // 50))
    load = ", ".join(f"{x:.1f}" for x in result["load_average"])  # type: ignore[attr-defined]
    print(f"python {result['python']} -c pass, {rounds} rounds alternating, load average {load}")
    print(f"{'':<26} {'wall median':>12} {'(IQR)':>9} {'CPU median':>12} {'(IQR)':>9} {'CPU diff':>10} {'(IQR)':>9}")
    wall, cpu = result["wall"], result["cpu"]
    assert isinstance(wall, dict)
    assert isinstance(cpu, dict)
    for name in CONFIGS:
        w, c = wall[name], cpu[name]
        diff = "" if name == "no hook" else f"{c['difference_ms']:+10.3f} {c['difference_iqr_ms']:9.3f}"
        print(
            f"{name:<26} {w['median_ms']:9.3f} ms {w['iqr_ms']:9.3f} {c['median_ms']:9.3f} ms {c['iqr_ms']:9.3f} {diff}"
        )
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
