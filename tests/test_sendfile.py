"""trio_uring.sendfile: file -> pipe -> socket with SPLICE, on real files and
sockets: every kind of destination and file, offsets and counts, file
positions as socket.sendfile leaves them, bad arguments, big offsets,
cancellation (nothing sent: Cancelled; some sent: the count), no leaked
pipe fds; and the static-file server example."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import termios
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trio_uring

from .filetools import outcome, write_bytes
from .helpers import fd_count, fill, ops_submitted, run, slowness

DATA = bytes(range(256)) * 4096 * 3 + b"tail"  # 3 MiB + 4


async def receive_exactly(sock: trio.socket.SocketType, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = await sock.recv(1 << 20)
        assert chunk
        got += chunk
    return bytes(got)


async def tcp_pair() -> tuple[trio.SocketStream, trio.socket.SocketType]:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stream = await trio.open_tcp_stream(*listener.getsockname())
    peer, _ = await listener.accept()
    listener.close()
    return stream, peer


@pytest.mark.parametrize("dest", ["stream", "trio-socket", "stdlib-socket", "fd"])
@pytest.mark.parametrize("source", ["uring-file", "trio-file", "python-file", "fd"])
def test_destinations_and_sources(tmp_path: Path, dest: str, source: str) -> None:
    write_bytes(tmp_path / "f", DATA)

    async def main() -> None:
        before = fd_count()
        stream, peer = await tcp_pair()
        target: Any = {
            "stream": stream,
            "trio-socket": stream.socket,
            "stdlib-socket": socket.socket(fileno=os.dup(stream.socket.fileno())),
            "fd": stream.socket.fileno(),
        }[dest]
        file: Any
        if source == "uring-file":
            file = await trio_uring.open_file(tmp_path / "f", "rb")
        elif source == "trio-file":
            file = await trio.open_file(tmp_path / "f", "rb")
        elif source == "python-file":
            file = open(tmp_path / "f", "rb")  # noqa: ASYNC230, SIM115
        else:
            file = os.open(tmp_path / "f", os.O_RDONLY)
        async with trio.open_nursery() as nursery:
            received: list[bytes] = []

            async def receive() -> None:
                received.append(await receive_exactly(peer, len(DATA) - 10 + 1000))

            nursery.start_soon(receive)
            assert await trio_uring.sendfile(target, file, 10) == len(DATA) - 10
            assert await trio_uring.sendfile(target, file, 0, 1000) == 1000
        assert received == [DATA[10:] + DATA[:1000]]
        # socket.sendfile's rule: a file object is left after the last byte sent
        if source == "fd":
            assert os.lseek(file, 0, os.SEEK_CUR) == 0
            os.close(file)
        elif source == "python-file":
            assert file.tell() == 1000
            file.close()
        else:
            assert await file.tell() == 1000
            await file.aclose()
        if dest == "stdlib-socket":
            target.close()
        await stream.aclose()
        peer.close()
        assert fd_count() == before
        assert ops_submitted()["SPLICE"] >= 4

    run(main)


def test_sizes_offsets_and_counts(tmp_path: Path) -> None:
    big = os.urandom(1 << 20) * 20 + b"!"
    write_bytes(tmp_path / "big", big)
    write_bytes(tmp_path / "empty", b"")

    async def main() -> None:
        stream, peer = await tcp_pair()
        async with trio.open_nursery() as nursery:
            got: list[bytes] = []
            nursery.start_soon(lambda: _collect(peer, got))
            fd = os.open(tmp_path / "big", os.O_RDONLY)
            empty = os.open(tmp_path / "empty", os.O_RDONLY)
            expected = b""
            for offset, count in ((0, None), (5, 1), (len(big) - 3, None), (len(big) - 3, 100), (len(big) + 5, None)):
                sent = await trio_uring.sendfile(stream, fd, offset, count)
                part = big[offset : None if count is None else offset + count]
                assert sent == len(part), (offset, count)
                expected += part
            assert await trio_uring.sendfile(stream, empty) == 0
            os.close(fd)
            os.close(empty)
            await stream.send_eof()
        assert b"".join(got) == expected
        await stream.aclose()
        peer.close()

    run(main)


async def _collect(sock: trio.socket.SocketType, into: list[bytes]) -> None:
    while chunk := await sock.recv(1 << 20):
        into.append(chunk)


def test_beyond_4_gib(tmp_path: Path) -> None:
    """Offsets past 32 and 31 bits, in a sparse file."""
    with open(tmp_path / "sparse", "wb") as f:
        f.seek((5 << 30) + 7)
        f.write(b"far away")

    async def main() -> None:
        stream, peer = await tcp_pair()
        fd = os.open(tmp_path / "sparse", os.O_RDONLY)
        try:
            assert await trio_uring.sendfile(stream, fd, (5 << 30) + 3) == 12
            assert await receive_exactly(peer, 12) == b"\0\0\0\0far away"
        finally:
            os.close(fd)
            await stream.aclose()
            peer.close()

    run(main)


def test_bad_arguments_as_socket_sendfile(tmp_path: Path) -> None:
    write_bytes(tmp_path / "f", b"x")

    async def main() -> None:
        a, b = socket.socketpair()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        text = open(tmp_path / "f")  # noqa: ASYNC230, SIM115
        binary = open(tmp_path / "f", "rb")  # noqa: ASYNC230, SIM115
        try:
            cases: list[tuple[Callable[[], Any], Any]] = [
                (lambda: a.sendfile(text), (a, text, 0, None)),
                (lambda: a.sendfile(binary, 0, 0), (a, binary, 0, 0)),
                (lambda: a.sendfile(binary, 0, -3), (a, binary, 0, -3)),
                (lambda: a.sendfile(binary, 0, "3"), (a, binary, 0, "3")),
                (lambda: udp.sendfile(binary), (udp, binary, 0, None)),
            ]
            for reference, args in cases:
                try:
                    reference()
                except Exception as exc:
                    expected = (type(exc).__name__, str(exc))
                else:
                    raise AssertionError("socket.sendfile accepted it")
                assert await outcome(trio_uring.sendfile, *args) == expected
            with pytest.raises(OSError, match="Invalid argument"):
                await trio_uring.sendfile(a, binary, -1)
            with pytest.raises(TypeError):
                await trio_uring.sendfile(object(), binary)
        finally:
            for x in (a, b, udp, text, binary):
                x.close()

    run(main)


def fill_for_splice(sock: socket.socket) -> bytes:
    """After ``fill``: splice 100-byte pieces into ``sock`` until splice(2)
    says EAGAIN too; return what went in.  On Linux 6.5+ that is nothing.
    Before 6.5 an AF_UNIX stream socket whose buffer is full (send(2) says
    EAGAIN) still takes spliced pages: unix_stream_sendpage appends them to
    the last buffer queued at the peer without looking at the send buffer,
    until that buffer has no room for another page fragment."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    sock.setblocking(False)  # as every trio socket is
    written = bytearray()
    try:
        for i in range(1000):
            piece = b"%099d\n" % i
            os.write(w, piece)
            written += piece
            try:
                os.splice(r, sock.fileno(), len(piece), flags=os.SPLICE_F_NONBLOCK)
            except BlockingIOError:
                try:
                    left = os.read(r, len(written))  # what the socket did not take
                except BlockingIOError:
                    left = b""
                return bytes(written[: len(written) - len(left)])
        raise AssertionError("splice(2) never said EAGAIN: the socket is not full")
    finally:
        sock.setblocking(True)
        os.close(r)
        os.close(w)


def test_cancel_before_anything_is_sent(tmp_path: Path) -> None:
    """The socket's buffer is full: SPLICE says EAGAIN, sendfile waits for
    writability; cancelled there, nothing was sent: Cancelled, and the file
    position is where it was.  "Full" means full for SPLICE too: on Linux
    before 6.5 a full socketpair still takes some spliced pages (see
    fill_for_splice), and then the sendfile finished before the cancel."""
    write_bytes(tmp_path / "f", DATA)

    async def main() -> None:
        a, b = socket.socketpair()
        stuffed = fill(a) + fill_for_splice(a)
        before = fd_count()
        f = await trio_uring.open_file(tmp_path / "f", "rb")
        await f.seek(7)
        with trio.move_on_after(0.2) as scope:
            await trio_uring.sendfile(a, f, 100)
        assert scope.cancelled_caught
        assert await f.tell() == 100  # socket.sendfile: offset + 0 sent
        await f.aclose()
        b.setblocking(False)
        got = bytearray()
        try:
            while True:
                got += b.recv(1 << 20)
        except BlockingIOError:
            pass
        assert bytes(got) == stuffed  # not one byte of the file
        assert fd_count() == before  # (the pipe is closed)
        a.close()
        b.close()

    run(main)


async def stuck_waiting_to_write(peer: trio.socket.SocketType) -> None:
    """Return once a task waits to write and bytes have reached ``peer`` and
    stopped arriving.  A SPLICE in flight holds the fd's writer slot, so it
    counts as waiting to write even while the socket has room.  Under
    emulation (Linux 6.12 on qemu TCG) the test used to look only at that
    count; it could then cancel before a byte was sent, and sendfile then
    rightly raises Cancelled (what the 6.12 run showed: ``sent == []``)."""
    queued = -1
    for _ in range(100_000):
        await trio.sleep(0.005)
        now = int.from_bytes(fcntl.ioctl(peer.fileno(), termios.FIONREAD, bytes(4)), sys.byteorder)
        waiting = trio.lowlevel.current_statistics().io_statistics.tasks_waiting_write
        if waiting and now > 0 and now == queued:
            return
        queued = now


def test_cancel_after_some_is_sent_reports_it(tmp_path: Path) -> None:
    """The reader stops after a while: sendfile has sent part of the file,
    then waits; cancelled, it returns the count sent, and exactly those
    bytes arrive."""
    write_bytes(tmp_path / "f", DATA * 4)

    async def main() -> None:
        stream, peer = await tcp_pair()
        f = await trio_uring.open_file(tmp_path / "f", "rb")
        before = fd_count()
        sent: list[int] = []
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def send() -> None:
                    sent.append(await trio_uring.sendfile(stream, f, 3))
                    await trio.lowlevel.checkpoint()  # Cancelled comes here
                    sent.append(-1)

                nursery.start_soon(send)
                # nobody reads: sendfile fills the socket, then waits for it
                with trio.fail_after(60):
                    await stuck_waiting_to_write(peer)
                scope.cancel()
        assert len(sent) == 1
        n = sent[0]
        assert 0 < n < len(DATA * 4) - 3
        assert await f.tell() == 3 + n
        await stream.send_eof()
        got: list[bytes] = []
        await _collect(peer, got)
        assert b"".join(got) == (DATA * 4)[3 : 3 + n]
        assert fd_count() == before
        await f.aclose()
        await stream.aclose()
        peer.close()

    run(main)


def test_not_a_socket_stream_and_not_uring(tmp_path: Path) -> None:
    """A stream that is not a socket (TLS, memory) gets pread + send_all;
    outside an io_uring run, everything goes through threads."""
    write_bytes(tmp_path / "f", DATA)

    async def with_memory_stream() -> None:
        send, receive = trio.testing.memory_stream_pair()
        fd = os.open(tmp_path / "f", os.O_RDONLY)
        async with trio.open_nursery() as nursery:
            got: list[bytes] = []

            async def collect() -> None:
                while chunk := await receive.receive_some():
                    got.append(chunk)

            nursery.start_soon(collect)
            assert await trio_uring.sendfile(send, fd, 1) == len(DATA) - 1
            await send.aclose()
        os.close(fd)
        assert b"".join(got) == DATA[1:]

    run(with_memory_stream)
    trio.run(with_memory_stream)

    async def plain_socket() -> None:
        stream, peer = await tcp_pair()
        async with await trio_uring.open_file(tmp_path / "f", "rb") as f:
            async with trio.open_nursery() as nursery:
                got: list[bytes] = []
                nursery.start_soon(lambda: _collect(peer, got))
                assert await trio_uring.sendfile(stream, f, 2, 1000) == 1000
                await stream.send_eof()
            assert b"".join(got) == DATA[2:1002]
        await stream.aclose()
        peer.close()

    trio.run(plain_socket)


def test_static_server_example() -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "static_server.py"
    proc = subprocess.run(
        [sys.executable, str(example), "--selftest", "--clients", "3"],
        capture_output=True,
        text=True,
        timeout=120 * slowness(),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "selftest passed" in proc.stdout
    assert "backend: io_uring" in proc.stdout
