"""The ring alone, with no trio: real pipes and sockets on the real kernel."""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterator

import pytest

from trio_uring import _kernel as k
from trio_uring._ring import Ring

from .helpers import needs_mode


@pytest.fixture(params=["defer", "coop", "plain"])
def ring(request: pytest.FixtureRequest) -> Iterator[Ring]:
    needs_mode(request.param)
    with Ring(8, 16, mode=request.param) as r:
        yield r


def wait_for(r: Ring, n: int, timeout: float = 2.0) -> list[tuple[int, int, int]]:
    got: list[tuple[int, int, int]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        r.submit_and_wait(0.1, 1)
        got.extend(r.reap())
    return got


def test_modes_and_flags(ring: Ring) -> None:
    flags = ring.describe()["setup_flags"]
    assert isinstance(flags, list)
    if ring.mode == "defer":
        assert {"SINGLE_ISSUER", "DEFER_TASKRUN"} <= set(flags)
    elif ring.mode == "coop":
        assert "COOP_TASKRUN" in flags
        assert "DEFER_TASKRUN" not in flags
    else:
        assert not {"COOP_TASKRUN", "DEFER_TASKRUN", "SINGLE_ISSUER"} & set(flags)
    assert ring.sq_entries == 8
    assert ring.cq_entries == 16


def test_ring_fd_is_cloexec(ring: Ring) -> None:
    import fcntl

    assert fcntl.fcntl(ring.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


def test_probe_reports_core_opcodes(ring: Ring) -> None:
    for name in ("NOP", "READ", "WRITE", "POLL_ADD", "ASYNC_CANCEL", "RECV", "SEND", "ACCEPT", "CONNECT"):
        assert ring.supports(name), name
    assert k.opcode_number("RECV") == 27
    with pytest.raises(ValueError, match="unknown io_uring opcode"):
        ring.supports("NOT_AN_OP")


def test_read_from_pipe(ring: Ring) -> None:
    rfd, wfd = os.pipe()
    try:
        buf = bytearray(16)
        pin = k.Buffer(buf, writable=True)
        ring.prep_read(7, rfd, pin.address, 16, -1)
        # nothing there yet: the wait times out, the read stays in flight
        ring.submit_and_wait(0.05, 1)
        assert ring.reap() == []
        os.write(wfd, b"hello ring")
        assert wait_for(ring, 1) == [(7, 10, 0)]
        assert bytes(buf[:10]) == b"hello ring"
    finally:
        os.close(rfd)
        os.close(wfd)


def test_write_and_error_results(ring: Ring) -> None:
    rfd, wfd = os.pipe()
    try:
        data = k.Buffer(b"payload", writable=False)
        ring.prep_write(1, wfd, data.address, data.length, -1)
        ring.prep_write(2, rfd, data.address, data.length, -1)  # wrong end: EBADF
        got = dict((ud, res) for ud, res, _ in wait_for(ring, 2))
        assert got == {1: 7, 2: -errno.EBADF}
        assert os.read(rfd, 100) == b"payload"
    finally:
        os.close(rfd)
        os.close(wfd)


def test_timeout_ext_arg_is_honoured(ring: Ring) -> None:
    start = time.monotonic()
    ring.submit_and_wait(0.2, 1)
    elapsed = time.monotonic() - start
    assert 0.15 < elapsed < 2.0
    assert ring.reap() == []


def test_full_sq_is_flushed_not_dropped(ring: Ring) -> None:
    # 8 SQ entries, 100 NOPs queued in one "tick": the ring flushes as it goes.
    for i in range(100):
        ring.prep_nop(1000 + i)
    got = wait_for(ring, 100)
    assert sorted(ud for ud, _, _ in got) == list(range(1000, 1100))
    assert ring.op_counts[k.IORING_OP.NOP] == 100


def test_cq_overflow_is_survived(ring: Ring) -> None:
    # 16 CQ entries; 200 completions arrive before we reap any of them.
    for i in range(200):
        ring.prep_nop(i + 1)
    ring.submit()
    ring.get_events_now()
    got = ring.reap()
    assert [ud for ud, _, _ in got] == list(range(1, 201))
    assert all(res == 0 for _, res, _ in got)


def test_cancel_in_flight_read(ring: Ring) -> None:
    rfd, wfd = os.pipe()
    try:
        buf = bytearray(8)
        pin = k.Buffer(buf, writable=True)
        ring.prep_read(5, rfd, pin.address, 8, -1)
        ring.submit_and_wait(0, 0)
        ring.prep_cancel(6, 5)
        got = {ud: res for ud, res, _ in wait_for(ring, 2)}
        assert got[6] == 0
        assert -got[5] in k.INTERRUPTED
        # the data written afterwards is still in the pipe, not lost
        os.write(wfd, b"kept")
        assert os.read(rfd, 8) == b"kept"
    finally:
        os.close(rfd)
        os.close(wfd)


def test_multishot_poll_on_socket(ring: Ring) -> None:
    a, b = socket.socketpair()
    with a, b:
        ring.prep_poll_add(9, a.fileno(), k.POLLIN, multishot=True)
        ring.submit_and_wait(0, 0)
        b.send(b"x")
        first = wait_for(ring, 1)
        assert first
        assert first[0][0] == 9
        assert first[0][1] & k.POLLIN
        assert first[0][2] & k.IORING_CQE_F_MORE
        a.recv(10)
        ring.prep_cancel(10, 9)
        final = wait_for(ring, 2)
        assert any(ud == 9 and not flags & k.IORING_CQE_F_MORE for ud, _, flags in final)


def test_close_releases_everything() -> None:
    before = set(os.listdir("/proc/self/fd"))
    r = Ring(8, 16)
    fd = r.fd
    r.close()
    r.close()  # idempotent
    assert set(os.listdir("/proc/self/fd")) <= before
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)


def test_bad_sizes() -> None:
    with pytest.raises(ValueError, match="sq_entries"):
        Ring(0, 16)
    with pytest.raises(ValueError, match="sq_entries"):
        Ring(32, 16)


def test_buffer_pinning() -> None:
    ba = bytearray(b"abc")
    pin = k.Buffer(ba, writable=True)
    assert pin.length == 3
    assert pin.address
    with pytest.raises(BufferError):
        ba.extend(b"more")  # the kernel may still write into it
    del pin
    ba.extend(b"more")
    with pytest.raises(TypeError, match="writable"):
        k.Buffer(b"readonly", writable=True)
    with pytest.raises(TypeError, match="writable"):
        k.Buffer(memoryview(b"readonly"), writable=True)
    with pytest.raises(TypeError):
        k.Buffer(12345, writable=False)
