"""Session-wide fault modes: ``pytest --trio-uring --trio-uring-faults SPEC``
and the ``trio_uring_faults`` ini option, run for real (pytest in a child
process on generated test files), and the spec's parser."""

from __future__ import annotations

import errno
import re

import pytest

from trio_uring._faultspec import OPCODES, FaultSpec, FaultSpecError, parse
from trio_uring._ring import Ring

from .helpers import slowness

pytest_plugins = ["pytester"]

# ---- the spec ---------------------------------------------------------------------


def test_parse_the_documented_forms() -> None:
    assert parse("short_io=1") == FaultSpec(short_io=1)
    spec = parse(" errno=RECV:ECONNRESET:0.01 , seed=42")
    assert spec == FaultSpec(errno_for={"RECV": (errno.ECONNRESET, 0.01)}, seed=42)
    spec = parse("short_io=3,errno=send:epipe,errno_at=7:ECONNRESET,errno=READ:EIO:0")
    assert spec.short_io == 3
    assert spec.errno_for == {"SEND": (errno.EPIPE, 1.0), "READ": (errno.EIO, 0.0)}
    assert spec.errno_at == {7: errno.ECONNRESET}
    # written back canonically, and that parses to the same spec
    assert str(spec) == "short_io=3,errno=SEND:EPIPE:1,errno=READ:EIO:0,errno_at=7:ECONNRESET,seed=0"
    assert parse(str(spec)) == spec
    assert parse("none").empty
    assert parse("").empty
    assert str(parse("none")) == "none"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("short_io=0", "'short_io=0': short_io must be at least 1"),
        ("short_io=many", "'short_io=many': short_io 'many' is not an integer"),
        ("short_io", "'short_io': expected short_io=N, errno=OPCODE:ERRNO[:P]"),
        ("short_io=1,short_io=2", "'short_io=2': short_io is given twice"),
        ("errno=RECV:ECONNREST:0.1", "'errno=RECV:ECONNREST:0.1': unknown errno 'ECONNREST'"),
        ("errno=RECV:123456:0.1", "unknown errno '123456'"),
        ("errno=RCV:ECONNRESET", "'errno=RCV:ECONNRESET': unknown opcode 'RCV' (one of ACCEPT, "),
        ("errno=POLL_ADD:EIO", "unknown opcode 'POLL_ADD'"),
        ("errno=RECV:ECONNRESET:1.5", "'errno=RECV:ECONNRESET:1.5': probability '1.5' is outside [0, 1]"),
        ("errno=RECV:ECONNRESET:-0.1", "probability '-0.1' is outside [0, 1]"),
        ("errno=RECV:ECONNRESET:nan", "probability 'nan' is outside [0, 1]"),
        ("errno=RECV:ECONNRESET:often", "probability 'often' is not a number"),
        ("errno=RECV", "'errno=RECV': expected errno=OPCODE:ERRNO or errno=OPCODE:ERRNO:P"),
        ("errno=RECV:EIO,errno=recv:EPIPE", "opcode RECV is given twice"),
        ("errno_at=-1:EIO", "operation index must be at least 0"),
        ("errno_at=1:EINTR", "'errno_at=1:EINTR': EINTR is how a cancelled request ends, never an error"),
        ("errno=RECV:ECANCELED", "ECANCELED is how a cancelled request ends"),
        ("seed=x", "seed 'x' is not an integer"),
        ("short_io=1,,seed=2", "'': expected"),
        ("delay=5", "'delay=5': unknown fault 'delay'"),
    ],
)
def test_parse_names_the_bad_part(text: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=re.escape(message)):
        parse(text)


def test_every_opcode_a_spec_may_name_is_one_the_ring_submits() -> None:
    for opcode in OPCODES:
        assert hasattr(Ring, f"prep_{opcode.lower()}"), opcode


def test_each_test_has_its_own_seeded_stream() -> None:
    spec = parse("seed=42")
    assert spec.seed_for("t.py::a") == parse("seed=42").seed_for("t.py::a")
    assert spec.seed_for("t.py::a") != spec.seed_for("t.py::b")
    assert spec.seed_for("t.py::a") != parse("seed=43").seed_for("t.py::a")


# ---- the session, in pytest -------------------------------------------------------

#: every test prints ``GOT <name> <what one recv(10) of ten waiting bytes gave>``
TESTS = """
import pytest
import trio


async def one_receive():
    a, b = trio.socket.socketpair()
    with a, b:
        await b.send(b"0123456789")
        try:
            return (await a.recv(10)).decode()
        except OSError as exc:
            return type(exc).__name__


def report(name, got):
    print(f"\\nGOT {name} {got}")


def test_plain_trio_run():
    report("plain", trio.run(one_receive))


@pytest.mark.trio
async def test_pytest_trio():
    report("pytest_trio", await one_receive())


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_anyio(anyio_backend):
    report("anyio", await one_receive())


@pytest.fixture
def from_a_fixture():
    return trio.run(one_receive)


def test_fixture(from_a_fixture):
    report("fixture", from_a_fixture)


@pytest.mark.trio_uring_faults(short_io=4)
def test_marker_wins():
    report("marker", trio.run(one_receive))
"""

#: a trio run outside any test's phases: in a hook, at the start and the end
CONFTEST = """
import trio

from test_session import one_receive


def pytest_collection_finish(session):
    print("\\nGOT hook_start", trio.run(one_receive))


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line("GOT hook_end " + trio.run(one_receive))
"""


def got(result: pytest.RunResult) -> dict[str, str]:
    return dict(re.findall(r"^GOT (\w+) (\S+)$", result.stdout.str(), re.M))


def run_pytest(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-s", "-rfE", "-p", "no:cacheprovider", *args, timeout=120 * slowness())


@pytest.fixture
def session(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_session=TESTS)
    pytester.makeconftest(CONFTEST)
    return pytester


def test_short_io_for_every_test_and_nothing_else(session: pytest.Pytester) -> None:
    result = run_pytest(session, "--trio-uring", "--trio-uring-faults", "short_io=1")
    result.assert_outcomes(passed=5)
    assert got(result) == {
        # each kind of trio run inside a test, fixtures included: one byte
        "plain": "0",
        "pytest_trio": "0",
        "anyio": "0",
        "fixture": "0",
        # the marker's faults instead of the session's
        "marker": "0123",
        # runs outside the tests' phases: untouched
        "hook_start": "0123456789",
        "hook_end": "0123456789",
    }
    # each of the four tests: its SEND (10 -> 1 byte) and its RECV shortened
    result.stdout.fnmatch_lines(
        [
            "trio_uring faults: short_io=1,seed=0 (each test seeded from seed=0 and its node id)",
            "  short_io=1: 8 transfers shortened, in 4 tests",
            "  8 io_uring operations in 4 tests",
        ]
    )

    # without the option: no faults anywhere, no summary
    result = run_pytest(session, "--trio-uring")
    result.assert_outcomes(passed=5)
    assert set(got(result).values()) == {"0123456789", "0123"}
    assert "trio_uring faults" not in result.stdout.str()


def test_errno_mode_and_its_summary(session: pytest.Pytester) -> None:
    result = run_pytest(session, "--trio-uring", "--trio-uring-faults", "errno=RECV:ECONNRESET:1,seed=5")
    result.assert_outcomes(passed=5)
    results = got(result)
    assert {name: results[name] for name in ("plain", "pytest_trio", "anyio", "fixture")} == dict.fromkeys(
        ("plain", "pytest_trio", "anyio", "fixture"), "ConnectionResetError"
    )
    assert results["hook_start"] == results["hook_end"] == "0123456789"
    result.stdout.fnmatch_lines(
        [
            "trio_uring faults: errno=RECV:ECONNRESET:1,seed=5 (each test seeded from seed=5 and its node id)",
            "  errno=RECV:ECONNRESET:1: 4 of 4 RECV operations failed, in 4 tests",
            "  8 io_uring operations in 4 tests",
        ]
    )


SEEDED = """
import trio


async def twenty_receives():
    a, b = trio.socket.socketpair()
    pattern = ""
    with a, b:
        for _ in range(20):
            await b.send(b"x")
            while True:
                try:
                    await a.recv(1)
                    pattern += "."
                    break
                except ConnectionResetError:
                    pattern += "R"  # an injected error consumed nothing: again
    return pattern


def test_first():
    print("\\nPATTERN first", trio.run(twenty_receives))


def test_second():
    print("\\nPATTERN second", trio.run(twenty_receives))
"""


def test_a_seeded_failure_repeats_when_the_test_runs_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_seeded=SEEDED)

    def patterns(spec: str, *args: str) -> dict[str, str]:
        result = run_pytest(pytester, "--trio-uring", "--trio-uring-faults", spec, *args)
        return dict(re.findall(r"^PATTERN (\w+) (\S+)$", result.stdout.str(), re.M))

    both = patterns("errno=RECV:ECONNRESET:0.5,seed=42")
    assert set(both) == {"first", "second"}
    for pattern in both.values():
        assert pattern.count(".") == 20
    # the second test alone meets exactly the faults it met after the first
    assert patterns("errno=RECV:ECONNRESET:0.5,seed=42", "test_seeded.py::test_second") == {"second": both["second"]}
    # each test has a stream of its own; another seed draws other faults
    other = patterns("errno=RECV:ECONNRESET:0.5,seed=43")
    assert both["first"] != both["second"] or both["first"] != other["first"]
    assert both != other


FAILING = """
import trio



async def strict_reader():
    a, b = trio.socket.socketpair()
    with a, b:
        await b.send(b"0123456789")
        assert await a.recv(10) == b"0123456789"


def test_assumes_whole_reads():
    trio.run(strict_reader)
"""


def test_a_failing_tests_report_says_what_was_injected_and_how_to_repeat_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_failing=FAILING)
    result = run_pytest(pytester, "--trio-uring", "--trio-uring-faults", "short_io=2,errno_at=1:ECONNRESET")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- trio_uring faults -*",
            "faults: short_io=2,errno_at=1:ECONNRESET,seed=0 (this test's stream: seed *)",
            "2 io_uring operations so far, 1 transfers shortened, 1 errors injected",
            "  ECONNRESET injected at op 1 (RECV) at *test_failing.py:* in strict_reader",
            "again: pytest --trio-uring --trio-uring-faults short_io=2,errno_at=1:ECONNRESET,seed=0 "
            "test_failing.py::test_assumes_whole_reads",
            "  errno_at=1:ECONNRESET: operation 1 failed in 1 tests",
        ]
    )


def test_the_ini_option_and_the_command_line_over_it(session: pytest.Pytester) -> None:
    session.makeini("[pytest]\ntrio_uring_faults = short_io=2\n")
    result = run_pytest(session, "--trio-uring")
    result.assert_outcomes(passed=5)
    assert got(result)["plain"] == "01"
    result.stdout.fnmatch_lines(["trio_uring faults: short_io=2,seed=0 *"])
    # the command line wins, and 'none' turns the ini's faults off
    result = run_pytest(session, "--trio-uring", "--trio-uring-faults", "none")
    assert got(result)["plain"] == "0123456789"
    assert "trio_uring faults" not in result.stdout.str()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--trio-uring", "--trio-uring-faults", "errno=RECV:ECONNRESET:1.5"],
            "ERROR: --trio-uring-faults: 'errno=RECV:ECONNRESET:1.5': probability '1.5' is outside [0, 1]",
        ),
        (
            ["--trio-uring", "--trio-uring-faults", "errno=RECEIVE:ECONNRESET"],
            "ERROR: --trio-uring-faults: 'errno=RECEIVE:ECONNRESET': unknown opcode 'RECEIVE' (one of *)",
        ),
        (
            ["--trio-uring", "--trio-uring-faults", "short_io=1,errno=SEND:EPIPES"],
            "ERROR: --trio-uring-faults: 'errno=SEND:EPIPES': unknown errno 'EPIPES' *",
        ),
        (
            ["--trio-uring", "--trio-uring-faults", "short_io:1"],
            "ERROR: --trio-uring-faults: 'short_io:1': expected short_io=N, *",
        ),
        (
            ["--trio-uring-faults", "short_io=1"],
            "ERROR: --trio-uring-faults needs --trio-uring: faults reach only trio runs on io_uring *",
        ),
    ],
)
def test_a_bad_spec_is_a_usage_error_at_start_up(pytester: pytest.Pytester, args: list[str], error: str) -> None:
    pytester.makepyfile(test_never="def test_never():\n    raise AssertionError('ran')\n")
    # in this process: the usage error comes before anything is installed
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([error])
    assert "Traceback" not in result.stderr.str()
    assert "ran" not in result.stdout.str()


def test_a_bad_ini_spec_is_a_usage_error_too(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_uring_faults = short_io=0\n")
    result = run_pytest(pytester, "--trio-uring")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: the trio_uring_faults ini option: 'short_io=0': short_io must be at least 1"])
    result = run_pytest(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: the trio_uring_faults ini option: *"])
    pytester.makeini("[pytest]\ntrio_uring_faults = short_io=1\n")
    result = run_pytest(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: the trio_uring_faults ini option needs --trio-uring: *"])
