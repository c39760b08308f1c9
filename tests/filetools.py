"""Helpers shared by the file tests (test_fileops, test_files, test_path,
test_sendfile): plain blocking file checks for use inside async test bodies,
and cancelling an operation once it is parked in the kernel."""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing


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
