"""trio_uring.testing: the cancellation sweep, short I/O, injected errors."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest
import trio

import trio_uring
from trio_uring.testing import Region, faults, sweep

from .helpers import fd_count, run, slowness

pytest_plugins = ["pytester"]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import framing  # noqa: E402


def test_the_sweep_finds_the_naive_readers_bug_and_passes_the_fixed_one() -> None:
    naive = sweep(framing.check_reader, framing.NaiveReader, short_io=3)
    fixed = sweep(framing.check_reader, framing.BufferedReader, short_io=3)
    # the counting run saw the region's receives, each one a RECV in framing.py
    assert len(naive.ops) > 20
    assert {op.opcode for op in naive.ops} == {"RECV"}
    assert all("framing.py" in op.site for op in naive.ops)
    assert naive.failures, "the sweep should catch the reader that loses partial messages"
    failure = naive.failures[0]
    assert failure.op is not None
    assert "framing.py" in failure.op.site
    assert "_exactly" in failure.op.site
    assert "ProtocolError" in failure.error or "AssertionError" in failure.error
    with pytest.raises(AssertionError, match="sweep runs failed"):
        naive.raise_for_failures()
    # both outcomes were exercised at every operation of the fixed reader
    assert fixed.runs == 1 + 2 * len(fixed.ops)
    assert fixed.failures == []
    assert fixed.unreached == []
    fixed.raise_for_failures()


def test_sweep_is_deterministic() -> None:
    first = sweep(framing.check_reader, framing.NaiveReader, short_io=5)
    second = sweep(framing.check_reader, framing.NaiveReader, short_io=5)
    assert [str(f) for f in first.failures] == [str(f) for f in second.failures]


def test_cancelled_outcome_had_no_effect_and_completed_outcome_delivered() -> None:
    """One receive in the region: cut as "cancelled" the bytes stay in the
    socket; cut as "completed" the receive returns them and Cancelled comes
    at the next checkpoint."""
    seen: dict[str, object] = {}

    async def body(region: Region) -> None:
        a, b = trio.socket.socketpair()
        with a, b:
            await b.send(b"payload")
            got = None
            with region:
                got = await a.recv(100)
                await trio.lowlevel.checkpoint()
            remaining = b""
            if got is None:
                remaining = await a.recv(100)
            seen[("cut" if region.cancelled_by_sweep else "plain") + f"-{len(seen)}"] = (got, remaining)

    report = sweep(body)
    assert report.ok
    assert report.unreached == []
    assert list(seen.values()) == [
        (b"payload", b""),  # the counting run
        (None, b"payload"),  # "cancelled": nothing received, the data stayed
        (b"payload", b""),  # "completed": delivered, then Cancelled at the checkpoint
    ]


def test_an_operation_that_never_completes_is_reported_unreached_not_hung() -> None:
    async def body(region: Region) -> None:
        a, b = trio.socket.socketpair()
        with a, b, region, trio.move_on_after(0.05):
            await a.recv(10)  # nobody ever sends

    report = sweep(body, timeout=5)
    assert report.ok
    assert report.unreached == [(0, "completed")]


def test_a_body_that_fails_without_cancellation_is_reported_once() -> None:
    async def body(region: Region) -> None:
        with region:
            await trio.lowlevel.checkpoint()
        raise ValueError("broken before any cut")

    report = sweep(body)
    assert report.runs == 1
    assert "broken before any cut" in report.failures[0].error


def test_short_io_exposes_code_that_assumes_whole_reads() -> None:
    async def whole_read_assumed() -> bytes:
        a, b = trio.socket.socketpair()
        with a, b:
            await b.send(b"0123456789")
            return await a.recv(10)  # assumes one receive gets all ten bytes

    assert run(whole_read_assumed) == b"0123456789"
    with faults(short_io=4) as log:
        assert run(whole_read_assumed) == b"0123"
    assert log.shortened >= 1

    async def stream_roundtrip() -> bytes:
        a, b = trio.socket.socketpair()
        sa, sb = trio.SocketStream(a), trio.SocketStream(b)
        await sa.send_all(b"x" * 1000)  # send_all copes with short sends
        got = b""
        while len(got) < 1000:
            got += await sb.receive_some(4096)
        await sa.aclose()
        await sb.aclose()
        return got

    with faults(short_io=7) as log:
        assert run(stream_roundtrip) == b"x" * 1000
    # 1000 bytes in 7-byte sends and receives
    assert sum(op.opcode == "SEND" for op in log.ops) >= 1000 // 7
    assert sum(op.opcode == "RECV" for op in log.ops) >= 1000 // 7


def test_errno_injection_at_an_operation_and_by_opcode() -> None:
    async def receive_via_stream() -> str:
        a, b = trio.socket.socketpair()
        sa, sb = trio.SocketStream(a), trio.SocketStream(b)
        try:
            await sa.send_all(b"hello")
            return (await sb.receive_some()).decode()
        except trio.BrokenResourceError as exc:
            return f"broken: {exc.__cause__!r}"
        finally:
            await sa.aclose()
            await sb.aclose()

    baseline = fd_count()
    with faults(errno_at={1: errno.ECONNRESET}) as log:  # op 0 is the SEND, op 1 the RECV
        result = run(receive_via_stream)
    assert result.startswith("broken: ConnectionResetError")
    assert [(op.opcode, e) for op, e in log.injected] == [("RECV", errno.ECONNRESET)]
    assert fd_count() == baseline

    # every RECV fails with probability 1/2, drawn from the seed: the same
    # seed gives the same faults
    def outcomes(seed: int) -> list[str]:
        results = []
        with faults(errno_for={"RECV": (errno.ECONNRESET, 0.5)}, seed=seed):
            for _ in range(12):
                results.append(run(receive_via_stream))
        return results

    first = outcomes(7)
    assert first == outcomes(7)
    assert any(r == "hello" for r in first)
    assert any(r.startswith("broken") for r in first)


def test_injected_write_error_on_a_send() -> None:
    async def send_once() -> None:
        a, b = trio.socket.socketpair()
        with a, b:
            await a.send(b"x")

    with faults(errno_for={"SEND": (errno.EPIPE, 1.0)}), pytest.raises(BrokenPipeError):
        run(send_once)


def test_faults_reach_only_trio_uring_runs_in_the_block() -> None:
    async def one_send() -> int:
        a, b = trio.socket.socketpair()
        with a, b:
            return await a.send(b"abc")

    with faults(short_io=1) as log:
        assert run(one_send) == 1
        assert trio.run(one_send) == 3  # trio's own backend: untouched
    assert run(one_send) == 3  # after the block: untouched
    assert len(log.ops) == 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="short_io"), faults(short_io=0):
        pass
    with pytest.raises(ValueError, match="outcome"):
        sweep(framing.check_reader, framing.BufferedReader, outcomes=("maybe",))  # type: ignore[arg-type]

    async def body(region: Region) -> None:
        with region:
            pass
        with region:
            pass

    report = sweep(body)
    assert "entered once" in report.failures[0].error
    assert trio_uring.testing.Region is Region


FAULTS_FROM_PYTEST = """
import errno
import pytest
import trio
import trio_uring
from trio_uring.testing import Region


async def one_receive() -> bytes:
    a, b = trio.socket.socketpair()
    with a, b:
        await b.send(b"0123456789")
        return await a.recv(10)


@pytest.mark.trio_uring
@pytest.mark.trio_uring_faults(short_io=3)
def test_short_reads_from_a_marker():
    assert trio.run(one_receive) == b"012"


@pytest.mark.trio_uring
@pytest.mark.trio_uring_faults(errno_for={"RECV": (errno.ECONNRESET, 1.0)})
def test_injected_error_from_a_marker():
    with pytest.raises(ConnectionResetError):
        trio.run(one_receive)


def test_no_marker_no_faults():
    assert trio_uring.run(one_receive) == b"0123456789"


async def losing_body(region: Region) -> None:
    a, b = trio.socket.socketpair()
    with a, b:
        await b.send(b"abcdef")
        got = b""
        with region:
            got = await a.recv(3)
            got += await a.recv(3)
        if len(got) < 6:
            got = b""  # the bug: a cut drops what was already received
            got += await a.recv(6)
        assert got == b"abcdef", got


def test_sweep_fixture_reports_the_failing_cut(trio_uring_sweep):
    with pytest.raises(AssertionError, match=r"sweep runs failed") as info:
        trio_uring_sweep(losing_body)
    assert "in losing_body" in str(info.value)
"""


def test_pytest_marker_and_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_faults=FAULTS_FROM_PYTEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=120 * slowness())
    result.assert_outcomes(passed=4)


def test_an_operation_in_a_shielded_scope_is_unreached_not_hung() -> None:
    """A region's cancel cannot interrupt an op under a shield (an aclose()
    does its closing I/O shielded): the sweep performs it and reports the
    cut unreached, rather than leaving a stand-in nobody can cancel."""

    async def body(region: Region) -> None:
        a, b = trio.socket.socketpair()
        with a, b:
            await b.send(b"x")
            with region, trio.CancelScope(shield=True):
                assert await a.recv(1) == b"x"

    report = sweep(body, timeout=5)
    assert report.ok
    assert report.unreached == [(0, "cancelled"), (0, "completed")]
