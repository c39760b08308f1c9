"""trio_uring.lowlevel: one io_uring operation per call, on real sockets.

Each operation's normal path, its cancellation while in flight (checking byte
for byte that a cancelled operation had no effect), the result that won the
race against the cancel, bad input, and the statistics."""

from __future__ import annotations

import errno
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.lowlevel
import trio.testing

import trio_uring
from trio_uring import lowlevel as ll

from .helpers import drain, fd_count, fill, ipv6_available, kernel, nothing_pending, ops_submitted, run, tcp_pair

# ---- normal paths ----------------------------------------------------------------------


def test_recv_send_recv_into(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair

    async def main() -> None:
        assert await ll.send(a, b"hello world") == 11
        assert await ll.recv(b, 5) == b"hello"
        buf = bytearray(10)
        assert await ll.recv_into(b.fileno(), buf) == 6
        assert buf[:6] == b" world"
        # send accepts any bytes-like object; recv_into honours nbytes
        assert await ll.send(a.fileno(), memoryview(bytearray(b"abcdef"))[1:]) == 5
        buf = bytearray(10)
        assert await ll.recv_into(b, memoryview(buf)[2:], 3) == 3
        assert buf == b"\0\0bcd\0\0\0\0\0"
        assert await ll.recv(b, 100, socket.MSG_PEEK) == b"ef"
        assert await ll.recv(b, 100) == b"ef"
        # zero-length operations
        assert await ll.send(a, b"") == 0
        assert await ll.recv_into(b, bytearray()) == 0
        assert await ll.recv(b, 0) == b""
        # EOF
        await ll.shutdown(a, socket.SHUT_WR)
        assert await ll.recv(b, 10) == b""
        stats = ops_submitted()
        assert stats["SEND"] == 3
        # recv() without a provided-buffer ring (before 5.19): recv(2), after a readiness wait if needed
        assert stats.get("RECV", 0) == (6 if kernel().buf_ring else 2)
        assert stats["SHUTDOWN"] == 1

    run(main)


def test_recv_works_on_nonblocking_trio_socket() -> None:
    async def main() -> None:
        a, b = trio.socket.socketpair()
        with a, b:

            async def later() -> None:
                await trio.sleep(0.05)
                await b.send(b"late")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(later)
                assert await ll.recv(a, 10) == b"late"  # io_uring polls, no EAGAIN

    run(main)


@pytest.mark.parametrize("family", ["inet", "inet6", "unix"])
def test_sendto_recvfrom(family: str, tmp_path: Path) -> None:
    if family == "inet6" and not ipv6_available():
        pytest.skip("no IPv6 loopback")
    if family == "unix":
        rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        rx.bind(str(tmp_path / "rx"))
        tx.bind(str(tmp_path / "tx"))
    else:
        fam, host = (socket.AF_INET, "127.0.0.1") if family == "inet" else (socket.AF_INET6, "::1")
        rx = socket.socket(fam, socket.SOCK_DGRAM)
        tx = socket.socket(fam, socket.SOCK_DGRAM)
        rx.bind((host, 0))
        tx.bind((host, 0))

    async def main() -> None:
        with rx, tx:
            assert await ll.sendto(tx, b"datagram one", rx.getsockname()) == 12
            assert await ll.sendto(tx.fileno(), b"two", 0, rx.getsockname()) == 3
            data, address = await ll.recvfrom(rx, 100)
            assert data == b"datagram one"
            assert address == tx.getsockname()
            # a short buffer truncates the datagram, as recvfrom(2) does
            data, address = await ll.recvfrom(rx.fileno(), 2)
            assert (data, address) == (b"tw", tx.getsockname())
            stats = ops_submitted()
            assert stats["SENDMSG"] == 2
            assert stats["RECVMSG"] == 2

    run(main)


def test_sendto_resolves_host_names() -> None:
    async def main() -> None:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
        ):
            rx.bind(("127.0.0.1", 0))
            await ll.sendto(tx, b"by name", ("localhost", rx.getsockname()[1]))
            data, address = await ll.recvfrom(rx, 100)
            assert data == b"by name"
            assert address == ("127.0.0.1", tx.getsockname()[1])  # tx was bound implicitly

    run(main)


def test_recvfrom_without_address(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair

    async def main() -> None:
        a.send(b"stream")
        assert await ll.recvfrom(b, 100) == (b"stream", None)

    run(main)


def test_tcp_accept_connect_close() -> None:
    async def main() -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            client = socket.socket()
            with client:
                await ll.connect(client, listener.getsockname())
                fd, address = await ll.accept(listener)
                assert address == client.getsockname()
                assert not os.get_inheritable(fd)
                with socket.socket(fileno=fd) as server_side:
                    assert server_side.getpeername() == client.getsockname()
                    assert await ll.send(fd, b"ping") == 4
                    assert await ll.recv(client, 10) == b"ping"
                    # close the accepted socket via io_uring: the peer sees EOF
                    await ll.close(server_side)
                    assert server_side.fileno() == -1  # detached, not closed twice
                    assert await ll.recv(client, 10) == b""
                with pytest.raises(OSError, match="Bad file descriptor") as info:
                    os.fstat(fd)
                assert info.value.errno == errno.EBADF
            stats = ops_submitted()
            assert stats["ACCEPT"] == 1
            assert stats["CONNECT"] == 1
            assert stats["CLOSE"] == 1

    run(main)


def test_connect_by_host_name_and_refused() -> None:
    async def main() -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]
            with socket.socket() as client:
                await ll.connect(client, ("localhost", port))
                fd, _ = await ll.accept(listener)
                os.close(fd)
        with socket.socket() as client:
            with pytest.raises(ConnectionRefusedError) as info:
                await ll.connect(client, ("127.0.0.1", port))
            assert info.value.errno == errno.ECONNREFUSED
            assert info.value.strerror == os.strerror(errno.ECONNREFUSED)

    run(main)


@pytest.mark.parametrize("abstract", [False, True])
def test_unix_accept_connect(abstract: bool, tmp_path: Path) -> None:
    path: str | bytes = b"\0trio_uring-%d" % os.getpid() if abstract else str(tmp_path / "sock")

    async def main() -> None:
        with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as client:
            listener.bind(path)
            listener.listen()
            await ll.connect(client.fileno(), path)
            fd, address = await ll.accept(listener.fileno())
            assert address == ""  # an unnamed client, as socket.accept() says
            await ll.send(client, b"over unix")
            assert await ll.recv(fd, 100) == b"over unix"
            await ll.close(fd)
            assert await ll.recv(client, 10) == b""

    run(main)


def test_close_wakes_waiters_with_closed_resource_error() -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        with b:
            fd = a.detach()
            caught: list[BaseException] = []

            async def reader() -> None:
                try:
                    await ll.recv(fd, 10)
                except trio.ClosedResourceError as exc:
                    caught.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await trio.testing.wait_all_tasks_blocked()
                await ll.close(fd)
            assert len(caught) == 1
            assert b.recv(10) == b""  # the kernel let go of the socket

    run(main)


def test_sleep() -> None:
    async def main() -> None:
        start = time.monotonic()
        await ll.sleep(0.05)
        assert time.monotonic() - start >= 0.045
        await ll.sleep(0)
        assert ops_submitted()["TIMEOUT"] == 2

    run(main)


# ---- every function is a checkpoint ------------------------------------------------------


def test_every_function_is_a_checkpoint(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.send(b"kept")

    async def main() -> None:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: ll.recv(b, 10),
            lambda: ll.recv_into(b, bytearray(10)),
            lambda: ll.recvfrom(b, 10),
            lambda: ll.send(a, b"never"),
            lambda: ll.shutdown(a, socket.SHUT_RDWR),
            lambda: ll.close(a.fileno()),
            lambda: ll.accept(a),
            lambda: ll.sleep(0),
            lambda: ll.recv(b, -1),  # bad input is a checkpoint too
        ]
        for call in calls:
            with trio.CancelScope() as cs:
                cs.cancel()
                await call()
            assert cs.cancelled_caught
        # none of them did anything
        assert a.fileno() >= 0
        os.fstat(a.fileno())
        assert b.recv(10) == b"kept"
        assert nothing_pending(b)

    run(main)


# ---- cancelled while in flight: nothing happened -------------------------------------------


def test_cancelled_recv_leaves_bytes_for_the_next_recv(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair

    async def main() -> None:
        for op in (
            lambda: ll.recv(b, 100),
            lambda: ll.recv_into(b, bytearray(100)),
            lambda: ll.recvfrom(b, 100),
        ):
            with trio.move_on_after(0.05) as cs:
                await op()
            assert cs.cancelled_caught
            a.send(b"after the cancel")
            assert await ll.recv(b, 100) == b"after the cancel"
        assert ops_submitted().get("ASYNC_CANCEL", 0) >= 3
        stats = trio.lowlevel.current_statistics().io_statistics
        assert isinstance(stats, trio_uring.UringStatistics)
        assert stats.ops_in_flight == 1  # the wakeup poll

    run(main)


def test_cancelled_recvfrom_keeps_the_datagram() -> None:
    async def main() -> None:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
        ):
            rx.bind(("127.0.0.1", 0))
            tx.bind(("127.0.0.1", 0))
            with trio.move_on_after(0.05) as cs:
                await ll.recvfrom(rx, 100)
            assert cs.cancelled_caught
            tx.sendto(b"still here", rx.getsockname())
            assert await ll.recvfrom(rx, 100) == (b"still here", tx.getsockname())

    run(main)


def test_cancelled_send_sent_nothing(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair

    async def main() -> None:
        before = fill(a)
        with trio.move_on_after(0.05) as cs:
            await ll.send(a, b"X" * 1000)
        assert cs.cancelled_caught
        assert drain(b, len(before)) == before
        assert nothing_pending(b)
        await ll.send(a, b"next")
        assert await ll.recv(b, 100) == b"next"

    run(main)


def test_cancelled_sendto_sent_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx,
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as tx,
        ):
            rx.bind(str(tmp_path / "rx"))
            tx.setblocking(False)
            queued = 0
            try:
                while True:
                    tx.sendto(b"%d" % queued, str(tmp_path / "rx"))
                    queued += 1
            except BlockingIOError:
                pass
            tx.setblocking(True)
            with trio.move_on_after(0.05) as cs:
                await ll.sendto(tx, b"cancelled", str(tmp_path / "rx"))
            assert cs.cancelled_caught
            got = [rx.recv(100) for _ in range(queued)]
            assert got == [b"%d" % i for i in range(queued)]
            rx.setblocking(False)
            with pytest.raises(BlockingIOError):
                rx.recv(100)  # the cancelled datagram was never queued

    run(main)


def test_cancelled_accept_accepts_nothing() -> None:
    async def main() -> None:
        baseline = fd_count()
        with socket.create_server(("127.0.0.1", 0)) as listener:
            with trio.move_on_after(0.05) as cs:
                await ll.accept(listener)
            assert cs.cancelled_caught
            assert fd_count() == baseline + 1  # just the listener
            with socket.create_connection(listener.getsockname()) as client:
                fd, address = await ll.accept(listener)
                assert address == client.getsockname()
                os.close(fd)
        assert fd_count() == baseline

    run(main)


def test_cancelled_connect() -> None:
    # A listener with a full accept queue drops SYNs, so the CONNECT stays in
    # flight (the kernel retransmits after a second).
    async def main() -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(0)
            fillers = []
            for _ in range(3):
                s = socket.socket()
                s.setblocking(False)
                try:
                    s.connect(listener.getsockname())
                except BlockingIOError:
                    pass
                fillers.append(s)
            try:
                with socket.socket() as client:
                    with trio.move_on_after(0.1) as cs:
                        await ll.connect(client, listener.getsockname())
                    assert cs.cancelled_caught
            finally:
                for s in fillers:
                    s.close()

    run(main)


def test_cancelled_sleep() -> None:
    async def main() -> None:
        start = time.monotonic()
        with trio.move_on_after(0.05) as cs:
            await ll.sleep(100)
        assert cs.cancelled_caught
        assert time.monotonic() - start < 5

    run(main)


@pytest.mark.parametrize(("kind", "seed"), [("socketpair", 0), ("socketpair", 1), ("tcp", 2), ("tcp", 3)])
def test_random_cancellation_loses_no_byte(kind: str, seed: int) -> None:
    rng = random.Random(seed)
    payload = rng.randbytes(200_000)
    received = bytearray()
    counts = {"recv": 0, "send": 0}

    async def main() -> None:
        a, b = socket.socketpair() if kind == "socketpair" else tcp_pair()
        # small buffers, so that the writer blocks and its sends get cancelled too
        size = 4096 if kind == "socketpair" else 8192
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

        async def writer() -> None:
            view = memoryview(payload)
            while view:
                n = min(len(view), rng.randrange(1, 20_000))
                with trio.move_on_after(rng.random() / 2000) as cs:
                    sent = await ll.send(a, view[:n])
                    view = view[sent:]
                if cs.cancelled_caught:
                    counts["send"] += 1
                if rng.random() < 0.3:
                    await trio.sleep(rng.random() / 500)
            await ll.shutdown(a, socket.SHUT_WR)

        with a, b:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                while True:
                    with trio.move_on_after(rng.random() / 1000) as cs:
                        if rng.random() < 0.5:
                            chunk = await ll.recv(b, rng.randrange(1, 5000))
                        else:
                            buf = bytearray(rng.randrange(1, 5000))
                            chunk = bytes(buf[: await ll.recv_into(b, buf)])
                        if not chunk:
                            break
                        received.extend(chunk)
                    if cs.cancelled_caught:
                        counts["recv"] += 1
                    if rng.random() < 0.05:
                        await trio.sleep(rng.random() / 200)  # let the writer block

    run(main)
    assert bytes(received) == payload
    # the test exercised the cancel path (which side depends on timing; the
    # deterministic per-operation cancel tests above cover each one)
    assert counts["recv"] + counts["send"] > 0


# ---- the result that won the race ------------------------------------------------------------


class _ActThenCancel(trio.abc.Instrument):
    """Right before the next io wait -- after the op's SQE was written but
    before it was submitted -- make the op completable, then cancel: the
    kernel completes the op inline when it is submitted, ahead of the
    ASYNC_CANCEL queued behind it, which then finds nothing."""

    def __init__(self, act: Callable[[], object]) -> None:
        self.act = act
        self.scope: trio.CancelScope | None = None

    def before_io_wait(self, timeout: float) -> None:
        if self.scope is not None:
            scope, self.scope = self.scope, None
            self.act()
            scope.cancel()


def test_recv_that_won_the_race_is_delivered(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    got: list[object] = []
    instrument = _ActThenCancel(lambda: a.send(b"raced"))

    async def main() -> None:
        with trio.CancelScope() as cs:
            instrument.scope = cs
            got.append(await ll.recv(b, 100))
            try:
                await trio.lowlevel.checkpoint()
            except trio.Cancelled:
                got.append("cancelled at next checkpoint")
                raise
        assert cs.cancelled_caught
        assert ops_submitted()["ASYNC_CANCEL"] >= 1

    run(main, instruments=[instrument])
    if kernel().buf_ring:
        assert got == [b"raced", "cancelled at next checkpoint"]
        assert nothing_pending(b)
    else:
        # Before 5.19 the receive waits with a readiness poll, which is
        # abandoned at once when cancelled: Cancelled, the bytes still queued.
        assert got == []
        assert b.recv(100) == b"raced"


def test_accept_that_won_the_race_is_delivered_not_leaked() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    clients: list[socket.socket] = []
    got: list[object] = []

    def connect() -> None:
        clients.append(socket.create_connection(listener.getsockname()))

    instrument = _ActThenCancel(connect)

    async def main() -> None:
        with trio.CancelScope() as cs:
            instrument.scope = cs
            got.append(await ll.accept(listener))
            try:
                await trio.lowlevel.checkpoint()
            except trio.Cancelled:
                got.append("cancelled at next checkpoint")
                raise
        assert cs.cancelled_caught

    baseline = fd_count()
    try:
        run(main, instruments=[instrument])
        assert len(got) == 2
        assert got[1] == "cancelled at next checkpoint"
        accepted = got[0]
        assert isinstance(accepted, tuple)
        fd, address = accepted
        assert address == clients[0].getsockname()
        # the accepted connection is ours: one fd for it and one for the client
        assert fd_count() == baseline + 2
        with socket.socket(fileno=fd) as server_side:
            assert server_side.getpeername() == clients[0].getsockname()
        assert fd_count() == baseline + 1
    finally:
        listener.close()
        for c in clients:
            c.close()


# ---- bad input --------------------------------------------------------------------------------


def test_bad_sizes_and_buffers(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair

    async def main() -> None:
        with pytest.raises(ValueError, match=r"negative buffersize in recv$"):
            await ll.recv(b, -1)
        with pytest.raises(ValueError, match="negative buffersize in recvfrom"):
            await ll.recvfrom(b, -1)
        with pytest.raises(ValueError, match="negative buffersize in recv_into"):
            await ll.recv_into(b, bytearray(4), -1)
        with pytest.raises(ValueError, match="buffer too small"):
            await ll.recv_into(b, bytearray(4), 5)
        for bad in (b"read-only", memoryview(b"read-only"), "text", 42, memoryview(bytearray(8))[::2]):
            with pytest.raises(TypeError):
                await ll.recv_into(b, bad)
        with pytest.raises(TypeError):
            await ll.send(a, "text")
        with pytest.raises(TypeError):
            await ll.recv(object(), 1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="non-negative"):
            await ll.sleep(-1)
        with pytest.raises(ValueError, match="NaN"):
            await ll.sleep(float("nan"))
        with pytest.raises(ValueError, match=r"\(host, port\)"):
            await ll.connect(socket.socket(), "not a tuple")
        with pytest.raises(OverflowError):
            await ll.connect(socket.socket(), ("127.0.0.1", 70000))
        # nothing was consumed or sent by any of that
        assert nothing_pending(a)
        assert nothing_pending(b)

    run(main)


def test_closed_fd_is_ebadf() -> None:
    async def main() -> None:
        s = socket.socket()
        fd = s.fileno()
        s.close()
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: ll.recv(fd, 10),
            lambda: ll.recv_into(fd, bytearray(10)),
            lambda: ll.recvfrom(fd, 10),
            lambda: ll.send(fd, b"x"),
            lambda: ll.sendto(fd, b"x", ("127.0.0.1", 9)),
            lambda: ll.accept(fd),
            lambda: ll.connect(fd, ("127.0.0.1", 9)),
            lambda: ll.shutdown(fd, socket.SHUT_RDWR),
            lambda: ll.close(fd),
        ]
        for call in calls:
            with pytest.raises(OSError, match=r"^\[Errno 9\] Bad file descriptor$") as info:
                await call()
            assert info.value.errno == errno.EBADF
            assert info.value.strerror == os.strerror(errno.EBADF)

    run(main)


def test_non_socket_fd_is_enotsock() -> None:
    async def main() -> None:
        r, w = os.pipe()
        try:
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: ll.recv(r, 10),
                lambda: ll.recv_into(r, bytearray(10)),
                lambda: ll.recvfrom(r, 10),
                lambda: ll.send(w, b"x"),
                lambda: ll.sendto(w, b"x", ("127.0.0.1", 9)),
                lambda: ll.accept(r),
                lambda: ll.connect(w, ("127.0.0.1", 9)),
                lambda: ll.shutdown(w, socket.SHUT_RDWR),
            ]
            for call in calls:
                with pytest.raises(OSError, match=r"^\[Errno 88\] Socket operation on non-socket$") as info:
                    await call()
                assert info.value.errno == errno.ENOTSOCK
        finally:
            os.close(r)
            os.close(w)

    run(main)


def test_other_kernel_errors_are_oserrors(pair: tuple[socket.socket, socket.socket]) -> None:
    async def main() -> None:
        with socket.socket() as s:
            with pytest.raises(OSError, match="Invalid argument") as info:
                await ll.accept(s)  # not listening
            assert info.value.errno == errno.EINVAL
            with pytest.raises(OSError, match="not connected") as info:
                await ll.shutdown(s, socket.SHUT_RDWR)  # not connected
            assert info.value.errno == errno.ENOTCONN
        a, _b = pair
        with pytest.raises(OSError, match="Invalid argument") as info:
            await ll.shutdown(a, 17)
        assert info.value.errno == errno.EINVAL

    run(main)


def test_outside_an_io_uring_run_is_a_runtime_error() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match=r"must be called from inside trio_uring\.run"):
            await ll.sleep(0)

    trio.run(main)  # trio's own (epoll) backend
    coro = ll.recv(0, 1)
    with pytest.raises(RuntimeError, match=r"must be called from inside trio_uring\.run"):
        coro.send(None)
