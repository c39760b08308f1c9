"""What trio_uring assumes of the running CPython, asked of it directly, so
that ``make test-matrix`` (every supported Python) shows which assumption
broke on which release: ctypes pinning and addresses, the ``Py_buffer``
layout behind read-only pins, ``struct`` layouts of the kernel ABI, the
``socket`` module's constants and ancillary-data helpers, and exception
groups from io_uring operations failing in a nursery."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import sys
from pathlib import Path

import pytest
import trio

from trio_uring import _anyio_wrap
from trio_uring import _kernel as k
from trio_uring._sockaddr import IOVEC

from .helpers import run


def test_bytes_are_pinned_in_place_not_copied() -> None:
    """``Buffer(bytes)`` hands the kernel the bytes object's own storage
    (``ctypes.c_char_p``), which must lie inside the object."""
    data = b"payload on " + sys.version.encode()
    pin = k.Buffer(data, writable=False)
    assert pin.length == len(data)
    assert ctypes.string_at(pin.address, pin.length) == data
    assert id(data) < pin.address < id(data) + sys.getsizeof(data)


def test_writable_pin_blocks_resizing_until_released() -> None:
    """``from_buffer`` holds an export: the bytearray cannot move while the
    kernel may write into it."""
    ba = bytearray(b"0123456789")
    pin = k.Buffer(ba, writable=True)
    ctypes.memmove(pin.address, b"AB", 2)
    assert ba[:2] == b"AB"
    with pytest.raises(BufferError):
        ba.extend(b"x" * 4096)
    del pin
    ba.extend(b"x")  # released


def test_read_only_pin_uses_this_pythons_py_buffer_layout() -> None:
    """A read-only export goes through PyObject_GetBuffer with our copy of
    ``Py_buffer``; its address and length must be the real ones, and the
    export must hold and then release the exporter."""
    ba = bytearray(b"read-only view of a bytearray")
    view = memoryview(ba).toreadonly()
    pin = k.Buffer(view[5:], writable=False)
    assert pin.length == len(ba) - 5
    assert ctypes.string_at(pin.address, pin.length) == bytes(ba[5:])
    view.release()
    with pytest.raises(BufferError):
        ba.extend(b"x" * 4096)  # still exported by the pin
    del pin
    ba.extend(b"x")


@pytest.mark.parametrize("bad", [b"bytes", memoryview(b"ro"), 12345, "text"])
def test_writable_pin_refuses_what_the_stdlib_refuses(bad: object) -> None:
    with pytest.raises((TypeError, BufferError)):
        socket.socket().recv_into(bad)  # type: ignore[arg-type]
    with pytest.raises((TypeError, BufferError)):
        k.Buffer(bad, writable=True)


def test_struct_layouts_of_the_kernel_abi() -> None:
    """The sizes io_uring's ABI fixes (linux/io_uring.h, linux/uio.h)."""
    assert IOVEC.size == 16
    assert struct.calcsize("<QQ") == 16
    assert ctypes.sizeof(ctypes.c_void_p) == 8
    assert ctypes.sizeof(k._PyBuffer) == 80


def test_socket_constants_and_cmsg_helpers() -> None:
    """The flags trio_uring passes through as plain ints, and the CMSG
    arithmetic it uses for ancillary data, are the C library's."""
    for name in ("MSG_PEEK", "MSG_DONTWAIT", "MSG_NOSIGNAL", "MSG_TRUNC", "MSG_CMSG_CLOEXEC", "MSG_MORE"):
        assert isinstance(int(getattr(socket, name)), int)
    assert socket.CMSG_SPACE(4) == 24
    assert socket.CMSG_LEN(4) == 20


def test_exception_groups_from_io_uring_operations() -> None:
    """Two tasks whose io_uring operations fail in one nursery: the same
    ExceptionGroup on io_uring as on stock trio, and ``except*`` sees both."""

    async def main() -> list[tuple[str, int | None]]:
        caught: list[tuple[str, int | None]] = []
        a, b = trio.socket.socketpair()
        a.close()
        try:
            async with trio.open_nursery() as nursery:
                for sock in (a, b):
                    nursery.start_soon(sock.send, b"x")  # EBADF on a (closed), EPIPE on b (its peer is)
        except* OSError as group:
            caught += sorted((type(e).__name__, e.errno) for e in group.exceptions if isinstance(e, OSError))
        except* Exception as group:
            caught += sorted((type(e).__name__, None) for e in group.exceptions)
        finally:
            b.close()
        return caught

    stock = trio.run(main)
    assert stock == run(main)
    assert [name for name, _ in stock] == ["BrokenPipeError", "OSError"]


def test_closed_socket_errno_is_ebadf() -> None:
    async def main() -> int | None:
        a, b = trio.socket.socketpair()
        a.close()
        b.close()
        try:
            await a.recv(1)
        except OSError as exc:
            return exc.errno
        return None

    assert run(main) == trio.run(main) == errno.EBADF


def test_buffered_objects_as_wrap_file_assumes(tmp_path: Path) -> None:
    """``anyio.wrap_file`` of a plain buffered file (``_anyio_wrap``) reads
    the buffer size from ``__sizeof__`` (struct plus buffer), predicts
    which writes stay in the buffer and which are written (through
    ``largest_buffered_write``, which asks this CPython), and empties the
    buffer, unwritten, by calling ``__init__`` again."""
    path = tmp_path / "f"
    for bufsize in (3, 8, 100):
        largest = _anyio_wrap.largest_buffered_write(bufsize)
        for pending in range(bufsize):
            for n in (0, 1, bufsize - pending, bufsize - 1, bufsize, bufsize + 1, 2 * bufsize + 1):
                with open(path, "wb", bufsize) as w:
                    assert _anyio_wrap._bufsize(w) == bufsize
                    w.write(b"p" * pending)
                    w.write(b"n" * n)
                    on_disk = os.path.getsize(path)
                    type(w).__init__(w, w.raw, bufsize)  # drops what it holds
                    assert w.tell() == on_disk
                assert os.path.getsize(path) == on_disk  # closing wrote nothing
                if pending + n <= bufsize and n <= largest:
                    expected = 0  # all in the buffer
                elif n > largest:
                    expected = pending + n  # written back, then straight through
                else:
                    expected = pending  # written back, n in the buffer
                assert on_disk == expected, (bufsize, pending, n)
        with open(path, "rb", bufsize) as r:
            assert _anyio_wrap._bufsize(r) == bufsize
