"""The pytest plugin, run for real: pytest in a child process on generated
test files, which print the backend each trio run had (from inside the run)
and the io_uring operations it submitted.

Where io_uring has to be unavailable, the child installs a seccomp filter
(the one tests/test_support.py uses, as Docker's default profile does) before
pytest starts.
"""

from __future__ import annotations

import errno
import re
import sys

import pytest

from .helpers import slowness
from .test_support import SECCOMP_HELPER, _sysctl_lock

pytest_plugins = ["pytester"]

#: every test prints ``BACKEND <name> <backend> <CONNECT ops>`` from inside its run
TESTS = """
import socket

import pytest
import trio


def report(name):
    stats = trio.lowlevel.current_statistics().io_statistics
    print(f"\\nBACKEND {name} {stats.backend} {getattr(stats, 'ops_submitted', {}).get('CONNECT', 0)}")


async def connect_once():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        stream = await trio.open_tcp_stream(*listener.getsockname())
        await stream.aclose()


@pytest.mark.trio
async def test_pytest_trio():
    await connect_once()
    report("pytest_trio")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_anyio(anyio_backend):
    import anyio

    await anyio.sleep(0)
    if anyio_backend == "trio":
        await connect_once()
        report("anyio")


def test_plain_trio_run():
    async def main():
        await connect_once()
        report("plain")

    trio.run(main)


def test_no_trio():
    print("\\nBACKEND no_trio none 0")
"""

MARKED = """
import pytest
import trio

from test_common import connect_once, report


@pytest.mark.trio_uring
@pytest.mark.trio
async def test_marked_trio():
    await connect_once()
    report("marked_trio")


@pytest.mark.trio
async def test_unmarked_trio():
    await connect_once()
    report("unmarked_trio")


@pytest.fixture
def anyio_backend():
    return "trio"


@pytest.fixture
async def backend_in_fixture(anyio_backend):
    # an async fixture starts anyio's trio run during setup
    yield trio.lowlevel.current_statistics().io_statistics.backend


@pytest.mark.trio_uring
@pytest.mark.anyio
async def test_marked_anyio(backend_in_fixture):
    assert backend_in_fixture == "io_uring"
    await connect_once()
    report("marked_anyio")


@pytest.mark.trio_uring
def test_marked_plain():
    async def main():
        await connect_once()
        report("marked_plain")

    trio.run(main)


def test_unmarked_plain_after():
    async def main():
        report("unmarked_plain")

    trio.run(main)
"""

#: an anyio test whose backend only its (unparametrized) fixture knows
FIXTURE_BACKEND = """
import pytest

from test_common import connect_once, report



@pytest.fixture
def anyio_backend():
    return ("trio", {})


@pytest.mark.anyio
async def test_fixture_backend():
    await connect_once()
    report("fixture_backend")
"""

SECCOMP_PYTEST = SECCOMP_HELPER + f"\ndeny_io_uring({errno.EPERM})\nimport pytest, sys\nsys.exit(pytest.main())\n"


#: what TESTS print on trio's own backend
ON_EPOLL = {"pytest_trio": "epoll", "anyio": "epoll", "plain": "epoll", "no_trio": "none"}


def backends(result: pytest.RunResult) -> dict[str, tuple[str, int]]:
    found = {}
    for line in result.outlines:
        match = re.search(r"BACKEND (\w+) (\w+) (\d+)", line)
        if match:
            found[match[1]] = (match[2], int(match[3]))
    return found


def run_pytest(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    with _sysctl_lock(shared=True):
        return pytester.runpytest_subprocess("-s", "-rfEsw", "-p", "no:cacheprovider", *args, timeout=60 * slowness())


def run_pytest_without_io_uring(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """pytest in a child whose io_uring syscalls a seccomp filter refuses (EPERM)."""
    argv = ["-c", SECCOMP_PYTEST, "-s", "-rfEsw", "-p", "no:cacheprovider", *args]
    return pytester.run(sys.executable, *argv, timeout=60 * slowness())


@pytest.fixture
def common(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_common=TESTS)
    return pytester


def test_option_puts_every_trio_run_on_io_uring(common: pytest.Pytester) -> None:
    result = run_pytest(common, "--trio-uring")
    result.assert_outcomes(passed=5)
    # each run on io_uring, its CONNECT an io_uring request
    assert backends(result) == {
        "pytest_trio": ("io_uring", 1),
        "anyio": ("io_uring", 1),
        "plain": ("io_uring", 1),
        "no_trio": ("none", 0),
    }
    result.stdout.fnmatch_lines(["trio_uring: 3 trio runs on io_uring, 0 on trio's own backend"])

    result = run_pytest(common)
    result.assert_outcomes(passed=5)
    assert {name: backend for name, (backend, _) in backends(result).items()} == ON_EPOLL
    assert "trio_uring:" not in result.stdout.str()


def test_trio_mode_tests_too(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(
        test_mode="""
        import trio

        async def test_auto_marked():
            stats = trio.lowlevel.current_statistics().io_statistics
            print("\\nBACKEND trio_mode", stats.backend, 0)
        """
    )
    result = run_pytest(pytester, "--trio-uring")
    result.assert_outcomes(passed=1)
    assert backends(result) == {"trio_mode": ("io_uring", 0)}


def test_marker_opts_one_test_in(common: pytest.Pytester) -> None:
    common.makepyfile(test_marked=MARKED)
    result = run_pytest(common, "test_marked.py")
    result.assert_outcomes(passed=5)
    assert backends(result) == {
        "marked_trio": ("io_uring", 1),
        "unmarked_trio": ("epoll", 0),
        "marked_anyio": ("io_uring", 1),
        "marked_plain": ("io_uring", 1),
        "unmarked_plain": ("epoll", 0),  # uninstalled after the marked test
    }
    result.stdout.fnmatch_lines(["trio_uring: 3 trio runs on io_uring, 0 on trio's own backend"])


def test_marker_is_registered(common: pytest.Pytester) -> None:
    result = run_pytest(common, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.trio_uring: run this test's trio runs on io_uring*"])
    common.makepyfile(test_marked=MARKED)
    # where io_uring works, --trio-uring-skip-unsupported changes nothing
    result = run_pytest(common, "--strict-markers", "--trio-uring-skip-unsupported", "test_marked.py")
    result.assert_outcomes(passed=5)
    assert backends(result)["marked_anyio"] == ("io_uring", 1)


# ---- io_uring unavailable ----------------------------------------------------------

UNAVAILABLE = "io_uring is unavailable: *seccomp*"


def test_option_without_io_uring_is_a_usage_error(common: pytest.Pytester) -> None:
    result = run_pytest_without_io_uring(common, "--trio-uring")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --trio-uring: {UNAVAILABLE}"])
    assert "Traceback" not in result.stderr.str()


def test_option_without_io_uring_can_skip(common: pytest.Pytester) -> None:
    common.makepyfile(test_fixture_backend=FIXTURE_BACKEND)
    result = run_pytest_without_io_uring(common, "--trio-uring", "--trio-uring-skip-unsupported")
    # the trio tests skip with the reason; the others run, on trio's own backend
    result.assert_outcomes(passed=3, skipped=3)
    assert backends(result) == {"plain": ("epoll", 0), "no_trio": ("none", 0)}
    result.stdout.fnmatch_lines(
        [
            f"trio_uring: tests that use trio were skipped: {UNAVAILABLE}",
            f"SKIPPED [[]1[]] test_common.py:*: trio_uring: {UNAVAILABLE}",
            f"SKIPPED [[]1[]] test_common.py:*: trio_uring: {UNAVAILABLE}",
            # known only once its anyio_backend fixture has run: skipped from the plugin
            f"SKIPPED [[]1[]] *pytest_plugin.py:*: trio_uring: {UNAVAILABLE}",
        ]
    )
    result.stdout.no_fnmatch_line("*test_anyio?asyncio?*SKIPPED*")


def test_option_without_io_uring_can_fall_back(common: pytest.Pytester) -> None:
    result = run_pytest_without_io_uring(common, "--trio-uring", "--trio-uring-fallback")
    result.assert_outcomes(passed=5)
    assert {name: backend for name, (backend, _) in backends(result).items()} == ON_EPOLL
    result.stderr.fnmatch_lines(
        [f"*RuntimeWarning: trio_uring not installed, trio's own backend stays in use: {UNAVAILABLE}"]
    )


def test_marked_test_without_io_uring_fails_or_skips(common: pytest.Pytester) -> None:
    common.makepyfile(test_marked=MARKED)
    result = run_pytest_without_io_uring(common, "test_marked.py")
    # each marked test errors in its setup with the message, before its fixtures
    result.assert_outcomes(passed=2, errors=3)
    for name in ("test_marked_trio", "test_marked_anyio", "test_marked_plain"):
        result.stdout.fnmatch_lines([f"*ERROR at setup of {name}*", f"trio_uring: {UNAVAILABLE}"])
    assert backends(result) == {"unmarked_trio": ("epoll", 0), "unmarked_plain": ("epoll", 0)}

    result = run_pytest_without_io_uring(common, "--trio-uring-skip-unsupported", "test_marked.py")
    result.assert_outcomes(passed=2, skipped=3)
    result.stdout.fnmatch_lines([f"SKIPPED [[]1[]] test_marked.py:*: trio_uring: {UNAVAILABLE}"])


def test_fallback_and_skip_exclude_each_other(common: pytest.Pytester) -> None:
    result = run_pytest(common, "--trio-uring-fallback", "--trio-uring-skip-unsupported")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --trio-uring-fallback and --trio-uring-skip-unsupported exclude each other"])
