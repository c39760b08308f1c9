"""The public API as a user's code meets it, checked by ``mypy --strict`` on
every supported Python (``make test-matrix``, ``make test-versions``): each
``assert_type`` fails the type check if a public signature stops giving the
type a user relies on.  It also runs (``python tests/typing/usage.py``, and
tests/test_typing_usage.py runs it), so the types asserted are the ones the
values really have.
"""

from __future__ import annotations

import io
import os
import socket
import tempfile
import warnings
from typing import assert_type

import trio
import trio.lowlevel

import trio_uring
from trio_uring import lowlevel


async def files(directory: str) -> None:
    name = os.path.join(directory, "usage.txt")
    async with await trio_uring.open_file(name, "w") as text_out:
        assert_type(await text_out.write("hello\n"), int)
    async with await trio_uring.open_file(name) as text_in:
        assert_type(await text_in.read(), str)
    async with await trio_uring.open_file(name, "rb") as binary:
        assert_type(await binary.read(5), bytes)
        assert_type(await binary.seek(0), int)
    async with await trio_uring.open_file(name, "rb", buffering=0) as raw:
        assert_type(raw.wrapped, io.FileIO)

    path = trio_uring.Path(directory) / "usage.bin"
    assert_type(path, trio_uring.Path)
    await path.write_bytes(b"\x00\x01")
    assert_type(await path.read_bytes(), bytes)
    assert_type(await path.exists(), bool)
    assert_type((await path.stat()).st_size, int)

    fd = await lowlevel.openat(name, os.O_RDONLY)
    try:
        assert_type(fd, int)
        assert_type(await lowlevel.pread(fd, 5, 0), bytes)
        buf = bytearray(5)
        assert_type(await lowlevel.pread_into(fd, buf, 0), int)
        assert_type(await lowlevel.statx(fd), os.stat_result)
    finally:
        os.close(fd)


async def sockets() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert_type(await lowlevel.send(a, b"ping"), int)
        assert_type(await lowlevel.recv(b, 10), bytes)
        buf = bytearray(4)
        await lowlevel.send(a, b"pong")
        assert_type(await lowlevel.recv_into(b, buf), int)
    left, right = trio.socket.socketpair()
    async with trio.SocketStream(left) as out, trio.SocketStream(right) as inp:
        await out.send_all(b"x")
        assert_type(await inp.receive_some(), bytes)
    stats = trio.lowlevel.current_statistics().io_statistics
    assert isinstance(stats, trio_uring.UringStatistics)  # narrows trio's IOStatistics
    assert_type(stats.ops_submitted, dict[str, int])
    assert_type(stats.backend, str)


async def main() -> str:
    with tempfile.TemporaryDirectory() as directory:
        await files(directory)
    await sockets()
    return "ok"


def support() -> None:
    assert_type(trio_uring.is_supported(), bool)
    assert_type(trio_uring.check_support(), dict[str, object])
    try:
        trio_uring.check_support(["SEND_ZC"])
    except trio_uring.UnsupportedError as exc:
        assert_type(exc, trio_uring.UnsupportedError)
        assert_type(exc.cause, str)
        assert_type(exc.remedy, str)
        assert_type(exc.errno, int | None)  # an OSError
    warnings.simplefilter("error", trio_uring.UntestedTrioWarning)
    warnings.resetwarnings()


def installing() -> None:
    assert_type(trio_uring.install(fallback=True), bool)
    assert_type(trio_uring.is_installed(), bool)
    trio_uring.uninstall()
    with trio_uring.installed() as ok:
        assert_type(ok, bool)
        assert_type(trio.run(trio.sleep, 0), None)


def anyio_program() -> int:
    async def answer(n: int) -> int:
        return n * 2

    result = trio_uring.anyio_run(answer, 21)
    assert_type(result, int)
    return result


if __name__ == "__main__":
    support()
    installing()
    assert anyio_program() == 42
    print(assert_type(trio_uring.run(main), str))
