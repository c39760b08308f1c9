"""Short I/O is faithful: under ``faults(short_io=N)`` every transfer shows
only behaviour the kernel itself can show, on real sockets, pipes and files.

- a short read returns between 1 and N bytes while data is waiting, and
  b"" only at the end of the stream, after every byte;
- a short write accepts between 1 and N bytes, and the rest, written by the
  next calls, arrives intact and in order;
- the end of the stream, errors and cancellation mean what they mean
  without faults (the same exception, nothing lost or duplicated);
- where the kernel never moves part of a request (a datagram, a receive
  with ``MSG_WAITALL``), nothing is shortened.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_uring
from trio_uring import _fileops, lowlevel
from trio_uring import _kernel as k
from trio_uring.testing import faults

from .helpers import STRESS, fd_count, manager, run

PROPERTY = settings(max_examples=25 * STRESS, deadline=None, suppress_health_check=[HealthCheck.too_slow])

payloads = st.binary(min_size=1, max_size=3000)
short_ios = st.integers(min_value=1, max_value=64)
asks = st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=20)


def stream_pair(kind: str) -> tuple[trio.socket.SocketType, trio.socket.SocketType]:
    if kind == "unix":
        a, b = socket.socketpair()
    else:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            a = socket.create_connection(listener.getsockname())
            b, _ = listener.accept()
    return trio.socket.from_stdlib_socket(a), trio.socket.from_stdlib_socket(b)


async def send_all(sock: trio.socket.SocketType, data: bytes) -> int:
    """Send every byte, however short each send is; returns the sends made."""
    view = memoryview(data)
    sends = 0
    while view:
        view = view[await sock.send(view) :]
        sends += 1
    return sends


async def read_to_end(read: Callable[[int], Awaitable[bytes]], sizes: list[int]) -> list[tuple[int, bytes]]:
    """``read(n)`` with the sizes in turn until it returns b"": each size
    asked for and what came back."""
    got = []
    for i in itertools.count():
        ask = sizes[i % len(sizes)]
        chunk = await read(ask)
        got.append((ask, chunk))
        if not chunk:
            return got
    raise AssertionError("unreachable")


def under_faults(short_io: int, fn: Callable[..., Awaitable[Any]], *args: Any) -> tuple[Any, int]:
    """``fn(*args)`` in a trio_uring run under ``faults(short_io=...)``:
    its result and how many transfers were shortened."""
    with faults(short_io=short_io) as log:
        result = run(fn, *args)
    return result, log.shortened


# ---- reads -----------------------------------------------------------------------


@PROPERTY
@given(data=payloads, short_io=short_ios, sizes=asks, kind=st.sampled_from(["unix", "tcp"]))
def test_a_short_receive_is_never_empty_before_the_end(data: bytes, short_io: int, sizes: list[int], kind: str) -> None:
    async def main() -> list[tuple[int, bytes]]:
        a, b = stream_pair(kind)
        with a, b:

            async def write_then_close() -> None:
                await send_all(b, data)
                b.shutdown(socket.SHUT_WR)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(write_then_close)
                got = await read_to_end(a.recv, sizes)
            # after the end, the end again
            assert await a.recv(10) == b""
        return got

    got, shortened = under_faults(short_io, main)
    received = b"".join(chunk for _, chunk in got)
    assert received == data
    # every receive but the last returned 1..min(ask, N) bytes; the last, b""
    *middle, (_, last) = got
    assert last == b""
    for ask, chunk in middle:
        assert 1 <= len(chunk) <= min(ask, short_io), (ask, len(chunk))
    assert shortened >= sum(ask > short_io for ask, _ in middle)


@PROPERTY
@given(data=payloads, short_io=short_ios, sizes=asks)
def test_a_short_read_of_a_pipe_is_never_empty_before_the_end(data: bytes, short_io: int, sizes: list[int]) -> None:
    """READs (offset -1) of a pipe, as the file layer issues them."""

    async def main() -> list[bytes]:
        r, w = os.pipe()
        try:
            m = manager()
            written = 0
            while written < len(data):  # the pipe holds 64 KiB: all of it fits
                piece = k.Buffer(memoryview(data)[written:], writable=False)
                n = await _fileops.write_from(m, w, piece.address, piece.length, -1, piece)
                assert 1 <= n <= short_io
                written += n
            os.close(w)
            w = -1
            got = []
            i = 0
            while True:
                buf = bytearray(sizes[i % len(sizes)])
                pin = k.Buffer(buf, writable=True)
                n = await _fileops.read_into(m, r, pin.address, len(buf), -1, pin)
                assert 0 <= n <= min(len(buf), short_io)
                got.append(bytes(buf[:n]))
                i += 1
                if n == 0:
                    return got
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)

    got, _ = under_faults(short_io, main)
    assert b"".join(got) == data
    assert all(got[:-1])
    assert got[-1] == b""


@PROPERTY
@given(data=payloads, short_io=short_ios, sizes=asks, buffering=st.sampled_from([0, -1, 7]))
def test_file_reads_under_short_io_are_what_io_returns(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, short_io: int, sizes: list[int], buffering: int
) -> None:
    """A file's read(n) returns what io's returns (n bytes, or what is left
    at the end): the short READs underneath are read again, as the kernel's
    own short reads of a regular file would have to be."""
    path = tmp_path_factory.mktemp("short") / "data"
    path.write_bytes(data)

    async def main() -> list[tuple[int, bytes]]:
        async with await trio_uring.open_file(path, "rb", buffering=buffering) as f:
            return await read_to_end(f.read, sizes)

    got, shortened = under_faults(short_io, main)
    assert b"".join(chunk for _, chunk in got) == data
    assert got[-1][1] == b""
    with open(path, "rb", buffering=buffering) as f:
        assert [chunk for _, chunk in got] == [f.read(ask) for ask, _ in got]
    assert shortened >= (len(data) > short_io)


# ---- writes ----------------------------------------------------------------------


@PROPERTY
@given(data=payloads, short_io=short_ios, kind=st.sampled_from(["unix", "tcp"]))
def test_a_short_send_accepts_part_and_the_rest_follows(data: bytes, short_io: int, kind: str) -> None:
    async def main() -> tuple[list[int], bytes, bytes]:
        a, b = stream_pair(kind)
        counts = []
        with a, b:
            view = memoryview(data)
            received = bytearray()
            while view:  # a send_all by hand: each call writes the rest
                n = await a.send(view)
                counts.append(n)
                view = view[n:]
                received += await b.recv(65536)
            a.shutdown(socket.SHUT_WR)
            while chunk := await b.recv(65536):
                received += chunk
            # and the high-level stream, on the same kind of connection
            c, d = stream_pair(kind)
            sc, sd = trio.SocketStream(c), trio.SocketStream(d)
            await sc.send_all(data)
            await sc.send_eof()
            streamed = bytearray()
            while chunk := await sd.receive_some():
                streamed += chunk
            await sc.aclose()
            await sd.aclose()
        return counts, bytes(received), bytes(streamed)

    (counts, received, streamed), shortened = under_faults(short_io, main)
    assert received == data
    assert streamed == data
    assert sum(counts) == len(data)
    assert all(1 <= n <= short_io for n in counts)
    assert len(counts) == -(-len(data) // short_io)  # every send took exactly N, the last the rest
    assert shortened >= len(counts) - 1


@PROPERTY
@given(data=payloads, short_io=short_ios, offset=st.integers(min_value=0, max_value=100))
def test_a_short_file_write_leaves_the_file_as_io_would(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, short_io: int, offset: int
) -> None:
    path = tmp_path_factory.mktemp("short") / "data"
    path.write_bytes(b"\0" * offset)

    async def main() -> None:
        async with await trio_uring.open_file(path, "r+b") as f:
            await f.seek(offset)
            await f.write(data)

    _, shortened = under_faults(short_io, main)
    assert path.read_bytes() == b"\0" * offset + data
    assert shortened >= (len(data) > short_io)


# ---- the end, errors, cancellation -----------------------------------------------


def outcome_of(fn: Callable[..., Awaitable[Any]]) -> tuple[str, Any]:
    try:
        return "returned", run(fn)
    except Exception as exc:
        return "raised", (type(exc), getattr(exc, "errno", None))


@pytest.mark.parametrize("short_io", [1, 3])
def test_errors_are_the_same_under_short_io(short_io: int) -> None:
    async def receive_after_reset() -> tuple[bytes, int | None]:
        a, b = stream_pair("tcp")
        with a, b:
            await send_all(b, b"abc")
            # close with SO_LINGER 0: the peer sends RST
            b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            b.close()
            got = b""
            try:
                while chunk := await a.recv(10):
                    got += chunk
            except OSError as exc:
                return got, exc.errno
            return got, None

    async def send_after_peer_closed() -> int:
        a, b = stream_pair("unix")
        with a, b:
            b.close()
            return await a.send(b"0123456789")

    async def receive_on_a_shut_down_socket() -> bytes:
        a, b = stream_pair("unix")
        with a, b:
            a.shutdown(socket.SHUT_RD)
            return await a.recv(10)

    baseline = fd_count()
    for fn in (receive_after_reset, send_after_peer_closed, receive_on_a_shut_down_socket):
        plain = outcome_of(fn)
        with faults(short_io=short_io):
            shortened = outcome_of(fn)
        assert shortened == plain, fn.__name__
    assert outcome_of(send_after_peer_closed) == ("raised", (BrokenPipeError, errno.EPIPE))
    assert fd_count() == baseline


@PROPERTY
@given(data=payloads, short_io=short_ios, cuts=st.lists(st.integers(min_value=0, max_value=5), max_size=8))
def test_a_cancelled_short_receive_loses_nothing(data: bytes, short_io: int, cuts: list[int]) -> None:
    """Receives cancelled while in the kernel (nothing to receive yet) take
    nothing; those that complete keep their bytes; all arrive, in order."""

    async def main() -> bytes:
        a, b = stream_pair("unix")
        received = bytearray()
        with a, b:
            view = memoryview(data)
            for cut in cuts:
                # a receive cancelled once every task waits: in the kernel
                # (cancelled there) or completed first, with what was sent
                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as nursery:

                        async def cancel_when_blocked(scope: trio.CancelScope = scope) -> None:
                            await trio.testing.wait_all_tasks_blocked()
                            scope.cancel()

                        nursery.start_soon(cancel_when_blocked)
                        received += await a.recv(4096)
                piece, view = view[:cut], view[cut:]
                await send_all(b, bytes(piece))
            await send_all(b, bytes(view))
            b.shutdown(socket.SHUT_WR)
            while chunk := await a.recv(4096):
                received += chunk
        return bytes(received)

    got, _ = under_faults(short_io, main)
    assert got == data


def test_a_shortened_receive_cancelled_in_flight_keeps_the_bytes_in_the_socket() -> None:
    async def main() -> tuple[bytes, bytes]:
        a, b = stream_pair("tcp")
        with a, b:
            with trio.move_on_after(0.05):
                await a.recv(100)  # nothing sent yet: in the kernel until cancelled
            await send_all(b, b"0123456789")
            first = await a.recv(100)
            b.shutdown(socket.SHUT_WR)
            rest = b""
            while chunk := await a.recv(100):
                rest += chunk
        return first, rest

    with faults(short_io=4) as log:
        first, rest = run(main)
    assert (first, rest) == (b"0123", b"456789")
    assert log.shortened >= 3


# ---- what the kernel never shortens ----------------------------------------------


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_SEQPACKET])
def test_messages_are_never_cut(kind: int) -> None:
    async def main() -> list[bytes]:
        a, b = socket.socketpair(socket.AF_UNIX, kind)
        ta, tb = trio.socket.from_stdlib_socket(a), trio.socket.from_stdlib_socket(b)
        with ta, tb:
            assert await ta.send(b"one whole message") == 17
            await ta.send(b"two")
            return [await tb.recv(100), await tb.recv(100)]

    with faults(short_io=1) as log:
        assert run(main) == [b"one whole message", b"two"]
    assert log.shortened == 0
    assert {op.opcode for op in log.ops} == {"SEND", "RECV"}


def test_msg_waitall_is_never_cut() -> None:
    async def main() -> bytes:
        a, b = socket.socketpair()
        with a, b:
            b.sendall(b"0123456789")
            return await lowlevel.recv(a, 10, socket.MSG_WAITALL)  # one RECV with the flag

    with faults(short_io=1) as log:
        assert run(main) == b"0123456789"
    assert [op.opcode for op in log.ops] == ["RECV"]
    assert log.shortened == 0
