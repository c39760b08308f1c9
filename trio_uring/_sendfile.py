"""``trio_uring.sendfile``: a file to a socket with no copy through Python.

io_uring has no sendfile(2).  It has SPLICE, which moves pages between an fd
and a pipe inside the kernel, so we send a file the way sendfile(2) works
internally: file -> pipe -> socket, one SPLICE each way per pipe-full
(``SPLICE_F_MOVE``; ``SPLICE_F_MORE`` while more is coming, the MSG_MORE of
splice(2)).  The pipe is ours: created close-on-exec, enlarged to 1 MiB if
the kernel allows (fcntl(2), F_SETPIPE_SZ), and closed before returning.

io_uring runs SPLICE in an io-wq worker (io_uring/splice.c); splicing into
a non-blocking socket (every trio socket is one) whose buffer is full fails
with EAGAIN instead of waiting, so then we wait for writability and go on.

Cancellation reports what happened, like a write:

* cancelled before any byte reached the socket: ``Cancelled`` (and the file
  position, for a file object, is back at ``offset``);
* cancelled after some did: the count sent is returned, the file position
  is ``offset + count`` and ``Cancelled`` comes at the next checkpoint.
  Bytes that were already in the pipe but not sent are dropped with it.

``socket.sendfile``'s conventions: ``count=None`` means to the end of the
file; the return value is the number of bytes sent; for a file *object*
the position is left after the last byte sent (an int fd's is not used).
"""

from __future__ import annotations

import errno
import fcntl
import operator
import os
import socket
from typing import Any, Final

import trio

from . import _fileops as fo
from . import _kernel as k
from ._file import current_manager
from ._manager import WRITER, UringIOManager
from ._trio_compat import AsyncIOWrapper

__all__ = ["sendfile"]

_PIPE_SIZE: Final = 1 << 20
_FALLBACK_CHUNK: Final = 1 << 20


def _socket_fd(target: Any) -> tuple[int | None, Any]:
    """``(fd, stream)``: the fd to splice into, or None and the stream to
    ``send_all`` into (a stream that is not a plain socket, e.g. TLS)."""
    if isinstance(target, trio.SocketStream):
        target = target.socket
    if isinstance(target, (trio.socket.SocketType, socket.socket)):
        if not target.type & socket.SOCK_STREAM:
            raise ValueError("only SOCK_STREAM type sockets are supported")
        return target.fileno(), None
    if isinstance(target, trio.abc.SendStream):
        return None, target
    if isinstance(target, int):
        return target, None
    fileno = getattr(target, "fileno", None)
    if fileno is None:
        raise TypeError(f"expected a stream, a socket or a file descriptor, not {type(target).__name__!r}")
    return operator.index(fileno()), None


def _check_count(count: int | None) -> None:
    # socket.sendfile's checks, word for word
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")


async def sendfile(stream_or_socket: Any, file: Any, offset: int = 0, count: int | None = None) -> int:
    """Send ``count`` bytes (or everything up to the end) of ``file`` from
    ``offset`` to ``stream_or_socket``; return the number of bytes sent.

    ``stream_or_socket``: a ``trio.SocketStream``, a trio or stdlib stream
    socket, or an fd-like; any other ``trio.abc.SendStream`` (TLS) gets the
    data through ``send_all``.  ``file``: a file from
    :func:`trio_uring.open_file` or ``trio.open_file`` (binary), a Python
    binary file object, or an fd.  Outside an io_uring run, the copy runs
    through ``os.sendfile`` / reads in a worker thread.
    """
    out_fd, stream = _socket_fd(stream_or_socket)
    _check_count(count)
    offset = operator.index(offset)
    if offset < 0:
        raise fo.oserror(errno.EINVAL)
    if isinstance(file, int):
        in_fd, position = file, None
    else:
        if "b" not in getattr(file, "mode", "b"):
            raise ValueError("file should be opened in binary mode")
        if isinstance(file, AsyncIOWrapper) and file.writable():
            await file.flush()  # what it has buffered belongs in the file first
        position = file
        in_fd = operator.index(file.fileno())
    m = current_manager("SPLICE", "POLL_ADD")
    sent = 0
    try:
        if out_fd is None or m is None:
            sent = await _fallback(stream, out_fd, in_fd, offset, count)
        else:
            sent = await _splice_all(m, out_fd, in_fd, offset, count)
    finally:
        if position is not None:
            with trio.CancelScope(shield=True):
                await _set_position(position, offset + sent)
    return sent


async def _set_position(file: Any, pos: int) -> None:
    if isinstance(file, AsyncIOWrapper):
        await file.seek(pos)
    else:
        file.seek(pos)


async def _splice_all(m: UringIOManager, out_fd: int, in_fd: int, offset: int, count: int | None) -> int:
    pipe_r, pipe_w = os.pipe2(os.O_CLOEXEC)
    sent = 0
    try:
        try:
            fcntl.fcntl(pipe_w, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:
            pass  # above /proc/sys/fs/pipe-max-size for this user: keep the default
        size = fcntl.fcntl(pipe_w, fcntl.F_GETPIPE_SZ)
        # Where the data ends, so the last send goes without SPLICE_F_MORE
        # (MSG_MORE would hold the final segment back).
        end = offset + count if count is not None else (await fo.fstat(m, in_fd)).st_size
        pos = offset
        while count is None or sent < count:
            want = size if count is None else min(size, count - sent)
            n = await fo.splice_fds(m, in_fd, pos, pipe_w, -1, want, k.SPLICE_F_MOVE)
            if n == 0:
                break  # end of file
            pos += n
            left = n
            flags = k.SPLICE_F_MOVE | (k.SPLICE_F_MORE if pos < end else 0)
            while left:
                try:
                    op = await m.perform(out_fd, m.ring.prep_splice, -1, pipe_r, -1, left, flags, slot=WRITER)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(out_fd)
                    continue
                if op.res == 0:
                    raise fo.oserror(errno.EPIPE)
                left -= op.res
                sent += op.res
    except trio.Cancelled:
        if not sent:
            raise
        # Some bytes went out: report them; Cancelled comes at the next
        # checkpoint (cancellation is level-triggered).
    finally:
        os.close(pipe_r)
        os.close(pipe_w)
    return sent


async def _fallback(stream: Any, out_fd: int | None, in_fd: int, offset: int, count: int | None) -> int:
    """Threads: os.sendfile into an fd, or pread + send_all into a stream."""
    sent = 0
    while count is None or sent < count:
        want = _FALLBACK_CHUNK if count is None else min(_FALLBACK_CHUNK, count - sent)
        if out_fd is not None:
            try:
                n = await trio.to_thread.run_sync(os.sendfile, out_fd, in_fd, offset + sent, want)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(out_fd)
                continue
        else:
            data = await trio.to_thread.run_sync(os.pread, in_fd, want, offset + sent)
            n = len(data)
            if n:
                await stream.send_all(data)
        if n == 0:
            break
        sent += n
    return sent
