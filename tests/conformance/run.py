"""Run trio's own test suite on stock trio and on trio_uring, and compare.

trio ships its tests inside the package.  We run them twice from the
installed package, with the configuration trio's pyproject gives them:
once as they are, once with ``--trio-uring`` (trio_uring's pytest plugin,
which calls ``trio_uring.install()``).  The script fails if any test that
passes on stock trio does not pass on trio_uring, except those listed in
allowed_failures.txt, or if the trio_uring run did not actually run trio on
io_uring.

    python tests/conformance/run.py [--only uring] [--profiles native,5.15] [extra pytest args]

``--profiles`` runs the trio_uring side once per kernel profile
(``TRIO_URING_KERNEL``, docs/kernel-support.md) and compares each with the
one stock run.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent

PYTEST_INI = """\
[pytest]
addopts = --strict-markers -p trio._tests.pytest_plugin -p no:cacheprovider -p no:trio
faulthandler_timeout = 60
markers =
    redistributors_should_skip: tests that should be skipped by downstream redistributors
xfail_strict = true
"""


#: Not used: a per-test timeout (pytest-timeout).  Tried: its SIGALRM
#: raises inside trio.run, which leaves trio's run context set, and every
#: later test of the session then fails on both sides -- so a timed-out
#: test on stock trio silently weakens the comparison for every test after
#: it.  A hung suite is caught by TRIO_URING_CONFORMANCE_TIMEOUT instead.


def sigint_as_python_starts_it() -> None:
    """Let the suites' processes start with SIGINT's default disposition.

    A job that a non-interactive shell starts in the background (``cmd &``
    in a script, ``nohup cmd &``) has SIGINT ignored (POSIX, "Shell Command
    Language", 2.11: without job control an asynchronous list ignores SIGINT
    and SIGQUIT), and an ignored signal stays ignored across exec(2).  Python
    then leaves SIGINT ignored instead of installing KeyboardInterrupt, trio
    does not install its handler, and trio's own KeyboardInterrupt tests wait
    for an interrupt that never comes: ``test_ki_protection_works`` loops in
    ``trio.run`` for ever, on stock trio and on trio_uring alike.  A handler
    that is a function is reset to SIG_DFL at exec, so installing Python's
    own here gives every child the disposition a terminal would."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def allowed_failures() -> set[str]:
    lines = (HERE / "allowed_failures.txt").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def run_suite(
    workdir: Path, label: str, extra: list[str], env: dict[str, str] | None = None
) -> tuple[dict[str, str], str]:
    junit = workdir / f"{label}.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(workdir / "pytest.ini"),
        "--rootdir",
        str(workdir),
        "--pyargs",
        "trio",
        "-q",
        "-rfE",
        # trio's optional-import tests run static tools (jedi, pylint, mypy)
        # over trio's source; they test no I/O and are skipped on both runs.
        "--skip-optional-imports",
        # trio's slow tests too: they exercise the IO manager hardest.
        "--run-slow",
        f"--junitxml={junit}",
        *extra,
    ]
    print(f"== trio's suite on {label}: {' '.join(cmd[3:])}", flush=True)
    # A guard against a hung suite, not a speed limit: on a loaded machine one
    # side can take far longer (TRIO_URING_CONFORMANCE_TIMEOUT, seconds).
    timeout = float(os.environ.get("TRIO_URING_CONFORMANCE_TIMEOUT", "1800"))
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    out = proc.stdout + proc.stderr
    tail = [line for line in out.splitlines() if not re.match(r"^(sent|received) \d+$", line)]
    print("\n".join(tail[-15:]), flush=True)
    return parse_junit(junit), out


def parse_junit(path: Path) -> dict[str, str]:
    results: dict[str, str] = {}
    if not path.exists():
        return results
    for case in ET.parse(path).getroot().iter("testcase"):
        classname = case.get("classname", "")
        name = case.get("name", "")
        # classname: trio._core._tests.test_io  ->  _core/_tests/test_io.py
        parts = classname.split(".")
        if parts and parts[0] == "trio":
            parts = parts[1:]
        module_parts = []
        for part in parts:
            module_parts.append(part)
            if part.startswith("test_"):
                break
        rest = parts[len(module_parts) :]
        node = "/".join(module_parts) + ".py::" + "::".join([*rest, name])
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                break
            if child.tag == "skipped":
                outcome = "xfailed" if "xfail" in (child.get("type") or "") else "skipped"
        results[node] = outcome
    return results


def counts(results: dict[str, str]) -> str:
    tally: dict[str, int] = {}
    for outcome in results.values():
        tally[outcome] = tally.get(outcome, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(tally.items()))


def main() -> int:
    sigint_as_python_starts_it()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["stock", "uring"], help="run only one side (no comparison)")
    parser.add_argument(
        "--profiles",
        default="",
        help="comma-separated kernel profiles for the trio_uring side (default: as the environment says)",
    )
    args, extra = parser.parse_known_args()
    profiles = [p for p in args.profiles.split(",") if p] or [os.environ.get("TRIO_URING_KERNEL", "")]
    with tempfile.TemporaryDirectory(prefix="trio-conformance-") as tmp:
        workdir = Path(tmp)
        (workdir / "pytest.ini").write_text(PYTEST_INI)
        stock: dict[str, str] = {}
        if args.only != "uring":
            stock, _ = run_suite(workdir, "stock", extra)
        if args.only == "stock":
            print(f"stock trio: {counts(stock)}")
            return 0
        ok = True
        for profile in profiles:
            env = dict(os.environ)
            label = "trio_uring"
            if profile:
                env["TRIO_URING_KERNEL"] = profile
                label = f"trio_uring-kernel-{profile}"
            uring, out = run_suite(workdir, label, ["--trio-uring", *extra], env)
            print(f"-- kernel profile: {profile or 'as the environment says (none)'}")
            ok = compare(stock, uring, out, args.only == "uring") and ok
    return 0 if ok else 1


def compare(stock: dict[str, str], uring: dict[str, str], out: str, uring_only: bool) -> bool:
    """Print the comparison of one trio_uring run with the stock run; False on a failure."""
    match = re.search(r"trio_uring: (\d+) trio runs on io_uring, (\d+) on trio's own backend", out)
    if not uring or not match:
        print("FAIL: the trio_uring run produced no results, or no report of which backend ran")
        return False
    on_uring, on_stock = int(match.group(1)), int(match.group(2))
    print(f"trio runs during the trio_uring session: {on_uring} on io_uring, {on_stock} on trio's own backend")
    if on_uring == 0:
        print("FAIL: no trio run used io_uring")
        return False
    print(f"trio_uring: {counts(uring)}")
    if uring_only:
        # No stock run to compare with: name what failed (the allowed one
        # marked), and fail on anything else -- stricter than the comparison,
        # since a test that fails on stock trio here fails this too.
        allowed = allowed_failures()
        failed = sorted(t for t, o in uring.items() if o == "failed")
        for test in failed:
            print(f"failed on trio_uring: {test}" + (" (the allowed difference)" if test in allowed else ""))
        others = [t for t in failed if t not in allowed]
        if others:
            print(f"FAIL: {len(others)} test(s) failed on trio_uring (no stock run to compare with)")
            return False
        print("OK: no test failed on trio_uring but the allowed difference (no stock run to compare with)")
        return True
    print(f"stock trio: {counts(stock)}")
    # tests that do not pass on stock trio here (an older trio's suite with
    # today's Python and pytest, say) are not compared; name them
    for test in sorted(t for t, o in stock.items() if o == "failed"):
        print(f"fails on stock trio too: {test} (trio_uring: {uring.get(test, 'missing')})")
    allowed = allowed_failures()
    regressions = sorted(t for t, o in stock.items() if o == "passed" and uring.get(t) != "passed" and t not in allowed)
    allowed_hit = sorted(t for t, o in stock.items() if o == "passed" and uring.get(t) != "passed" and t in allowed)
    for test in allowed_hit:
        print(f"allowed difference: {test} ({uring.get(test)})")
    if regressions:
        print(f"FAIL: {len(regressions)} test(s) pass on stock trio but not on trio_uring:")
        for test in regressions:
            print(f"  {test}: {uring.get(test, 'missing')}")
        return False
    print("OK: every test that passes on stock trio passes on trio_uring")
    return True


if __name__ == "__main__":
    sys.exit(main())
