"""Inside a VM booted by tools/test_kernels.py: run the suites, write results.json.

    python tools/kernel_guest.py --out DIR --suites report,ours,trio [-- pytest args]

The host's file system is shared read-only, so everything written goes to
``--out`` (the VM's one writable host folder) or to the guest's /tmp.
Suites:

- ``report``: ``python -m trio_uring --json``;
- ``ours``: our pytest suite (or the files given after ``--``).  Where io_uring is
  unavailable (a kernel below the floor) only tests/test_kernel_floor.py runs:
  the refusal's message and ``install(fallback=True)``;
- ``trio``: trio's own suite, stock and on trio_uring (tests/conformance/run.py);
  skipped where io_uring is unavailable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FLOOR_TESTS = ["tests/test_kernel_floor.py"]


def say(msg: str) -> None:
    print(f"[guest] {msg}", flush=True)


def run(cmd: list[str], log: Path, timeout: float) -> tuple[int | None, str, float]:
    """Run ``cmd``, its output written to ``log`` as it comes (the host can follow
    it, and a run killed at the host's deadline keeps what it had done)."""
    say("$ " + " ".join(cmd))
    start = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
    out = log.read_text(errors="replace")
    if code is None:
        out += f"\n[guest] timed out after {timeout:.0f} s\n"
        log.write_text(out)
    return code, out, time.monotonic() - start


def junit_counts(path: Path) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    if not path.exists():
        return counts
    for case in ET.parse(path).getroot().iter("testcase"):
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            counts["failed"] += 1
        elif "skipped" in tags:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts


def failures(path: Path) -> list[str]:
    if not path.exists():
        return []
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        if any(child.tag in ("failure", "error") for child in case):
            out.append(f"{case.get('classname')}::{case.get('name')}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--suites", default="report,ours,trio")
    parser.add_argument("--trio-args", default="", help="arguments for tests/conformance/run.py, one string")
    args, pytest_args = parser.parse_known_args()
    if pytest_args and pytest_args[0] == "--":
        pytest_args = pytest_args[1:]
    suites = args.suites.split(",")
    out: Path = args.out
    results: dict[str, Any] = {"suites": []}

    def save() -> None:
        (out / "results.json").write_text(json.dumps(results, indent=2))

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # the file system /tmp is on: the longest mount point above it (in an
    # initramfs guest /tmp is a folder of the root, whose type is "rootfs")
    with open("/proc/mounts") as mounts:
        points = {line.split()[1]: line.split()[2] for line in mounts}
    above = [p for p in points if p == "/tmp" or "/tmp".startswith(p.rstrip("/") + "/")]
    tmpfs = points[max(above, key=len)] if above else "?"
    results["guest"] = {"uname": platform.release(), "nofile": [soft, hard], "tmp_fs": tmpfs, "cpus": os.cpu_count()}
    say(f"kernel {platform.release()}, RLIMIT_NOFILE {soft}/{hard}, /tmp on {tmpfs}, {os.cpu_count()} CPUs")
    save()

    py = sys.executable
    code, text, secs = run([py, "-m", "trio_uring", "--json"], out / "report.log", 600)
    try:
        report = json.loads(text[text.index("{") :])
    except ValueError:
        report = {}
    usable = report.get("io_uring") == "usable"
    refused = report.get("io_uring") == "unavailable"  # e.g. a kernel below the floor
    results["report"] = report
    if usable:
        verdict = f"usable ({report.get('ring_mode')})"
    elif refused:
        verdict = f"unavailable: {report.get('cause')}"
    else:
        verdict = f"no report (exit {code}; see report.log)"
    if "report" in suites:
        result = "ok" if usable or refused else "failed"
        results["suites"].append({"suite": "report", "result": result, "verdict": verdict, "seconds": secs})
    say(f"python -m trio_uring: {verdict}")
    subprocess.run([py, "-m", "trio_uring"], cwd=REPO, check=False)
    save()

    if "ours" in suites:
        junit = out / "ours.xml"
        files = FLOOR_TESTS if refused else (pytest_args or ["tests"])
        # faulthandler_timeout: pyproject's 120 s is a quiet machine's; under
        # TCG many tests take longer, and each dump walks the other threads'
        # frames while they run (an emulated arm64 guest crashed in one).
        cmd = [py, "-m", "pytest", "-v", "-rfEs", "-p", "no:cacheprovider", "-o", "faulthandler_timeout=1800"]
        cmd += [f"--junitxml={junit}", *files]
        code, text, secs = run(cmd, out / "ours.log", 3 * 3600)
        counts = junit_counts(junit)
        summary = text.strip().splitlines()[-1] if text.strip() else ""
        say(f"our suite: {summary}")
        for name in failures(junit):
            say(f"  FAILED {name}")
        result = "ok" if code == 0 else ("timeout" if code is None else "failed")
        results["suites"].append(
            {
                "suite": "ours (floor)" if refused else "ours",
                "result": result,
                **counts,
                "seconds": secs,
                "failures": failures(junit),
            }
        )
        save()

    if "trio" in suites and usable:
        trio_cmd = [py, "tests/conformance/run.py", *shlex.split(args.trio_args)]
        code, text, secs = run(trio_cmd, out / "trio.log", 3 * 3600)
        # run.py's summary line, "trio_uring: 1 failed, 827 passed, ..." (the
        # pytest plugin's "trio_uring: N trio runs on io_uring ..." comes first)
        summaries = re.findall(r"^trio_uring: (.*\b\d+ passed.*)$", text, re.M)
        trio_summary = summaries[-1] if summaries else ""
        counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (\w+)", trio_summary)}
        regressions = re.findall(r"^  (\S+): ", text, re.M) if "FAIL" in text else []
        say("trio's suite: " + (trio_summary or "no summary") + f", exit {code}")
        for line in text.splitlines():
            if line.startswith(("OK:", "FAIL", "allowed difference", "trio runs during", "failed on trio_uring")):
                say("  " + line)
        results["suites"].append(
            {
                "suite": "trio",
                "result": "ok" if code == 0 else ("timeout" if code is None else "failed"),
                "passed": counts.get("passed", 0),
                "failed": counts.get("failed", 0),
                "skipped": counts.get("skipped", 0) + counts.get("xfailed", 0),
                "seconds": secs,
                "failures": regressions,
            }
        )
        save()
    results["done"] = True
    save()
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
