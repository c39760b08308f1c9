"""Helpers shared by the file tests (test_fileops, test_files, test_path,
test_sendfile): plain blocking file checks for use inside async test bodies,
and cancelling an operation once it is parked in the kernel."""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio
import trio.testing

if TYPE_CHECKING:
    from trio_uring.testing import Region


def exists(path: str | os.PathLike[str]) -> bool:
    return os.path.exists(path)


def isdir(path: str | os.PathLike[str]) -> bool:
    return os.path.isdir(path)


def islink(path: str | os.PathLike[str]) -> bool:
    return os.path.islink(path)


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def nowait_reads_work(path: str | os.PathLike[str]) -> bool:
    """Does the file system under ``path``, on this kernel, serve a read of
    cached data with preadv2(RWF_NOWAIT)?  Asked of the kernel: read the
    file once (now it is cached), then again with RWF_NOWAIT.  Not every file
    system takes the flag (Linux 6.1's tmpfs answers EOPNOTSUPP), and where it
    is refused every read of a trio_uring file is an io_uring READ."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.pread(fd, 4096, 0)
        try:
            os.preadv(fd, [bytearray(4096)], 0, os.RWF_NOWAIT)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EOPNOTSUPP):
                return False
            raise
        return True
    finally:
        os.close(fd)


def drop_cache(path: str | os.PathLike[str]) -> None:
    """Evict the file's pages (after writing them back), so that the next
    read has to wait for the disk: posix_fadvise(2), POSIX_FADV_DONTNEED."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


async def outcome(fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """``("ok", value)`` or ``(exception type name, message)``."""
    try:
        value = await fn(*args, **kwargs)
    except Exception as exc:
        return type(exc).__name__, str(exc)
    return "ok", value


async def cancel_in_flight(fn: Callable[[], Awaitable[Any]]) -> tuple[bool, Any]:
    """Run ``fn()`` in a task and cancel it once every task is blocked (its
    operation submitted and parked in the kernel).  Returns ``(cancelled,
    result)``: ``cancelled`` if ``fn`` raised Cancelled, else its result."""
    result: list[Any] = []
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:

            async def go() -> None:
                result.append(await fn())

            nursery.start_soon(go)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
    return (not result), (result[0] if result else None)


# ---- sweep bodies shared by the file tests (trio_uring.testing.sweep) ----


async def read_lines_in_region(region: Region, f: Any, whole: str | bytes) -> None:
    """Six ``readline`` calls inside ``region`` (which the sweep cancels at
    each operation in turn), then ``read()`` of the rest: the lines read
    and the rest add up to ``whole``, nothing lost, nothing twice.  Closes
    ``f``."""
    try:
        got: list[Any] = []
        with region:
            for _ in range(6):
                got.append(await f.readline())
        rest = await f.read()
        assert whole[:0].join(got) + rest == whole
    finally:
        await f.aclose()


async def write_chunks_in_region(region: Region, f: Any, path: str | os.PathLike[str]) -> None:
    """Chunks of 3 B to 200 KB written to ``f`` inside ``region``; after
    closing, the file at ``path`` holds exactly what the writes reported."""
    chunks = [bytes([65 + i]) * size for i, size in enumerate((10, 70_000, 3, 200_000, 5))]
    reported: list[int] = []
    try:
        with region:
            for chunk in chunks:
                reported.append(await f.write(chunk))
    finally:
        await f.aclose()
    expected = b"".join(chunk[:n] for chunk, n in zip(chunks, reported, strict=False))
    assert read_bytes(path) == expected  # exactly what the writes reported


async def cancel_a_write_in_flight(f: Any, path: str | os.PathLike[str], data: bytes) -> bool:
    """``f`` (a binary file just opened for writing on ``path``) gets
    ``b"head"``, then a write of ``data`` cancelled while in flight.  Either
    it was cancelled and wrote nothing, or it returns its count: ``tell()``
    and the bytes on disk after close agree.  Returns whether it was
    cancelled."""
    await f.write(b"head")
    cancelled, n = await cancel_in_flight(lambda: f.write(data))
    if cancelled:
        assert await f.tell() == 4
    else:
        assert 0 < n <= len(data)
        assert await f.tell() == 4 + n
    await f.aclose()
    assert read_bytes(path) == b"head" + (b"" if cancelled else data[:n])
    return bool(cancelled)
