"""The socket operations themselves: one SQE each, through ``perform``
(except :func:`recv` where the kernel has no provided-buffer rings, before
5.19: a readiness wait, then ``recv(2)``).

Arguments arrive checked and resolved: :mod:`.lowlevel` (the public
functions on fds) and :mod:`.socket` (trio's socket methods) do that, each
the way its callers expect, and both end up here.

Every operation takes the fd's reader or writer slot, as trio's own socket
methods do by waiting for readability / writability: a second task
receiving on the same socket while one waits gets ``BusyResourceError``.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any, Final

from trio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled

from . import _kernel as k
from ._manager import READER, WRITER, UringIOManager
from ._sockaddr import MAX_LEN, SOCKADDR_MAX, MsgMemory, parse_sockaddr

__all__ = ["accept", "connect", "recv", "recv_into", "recvmsg", "recvmsg_bytes", "send", "sendmsg", "syscall_first"]

_F_BUFFER: Final = k.IORING_CQE_F_BUFFER
_BUFFER_SHIFT: Final = k.IORING_CQE_BUFFER_SHIFT
_F_SOCK_NONEMPTY: Final = k.IORING_CQE_F_SOCK_NONEMPTY


async def syscall_first(call: Callable[..., Any], *args: Any) -> Any:
    """The system call at once, as trio's own methods do: a cancel check, the
    call, a schedule point.  None if it would block (no schedule point yet:
    the io_uring request that follows parks).  The hottest paths
    (``UringSocket.recv``/``send``, ``SocketStream``'s) write this out."""
    await checkpoint_if_cancelled()
    try:
        result = call(*args)
    except BlockingIOError:
        return None
    except BaseException:
        await cancel_shielded_checkpoint()
        raise
    await cancel_shielded_checkpoint()
    return result


async def recv(
    m: UringIOManager, fd: int, nbytes: int, flags: int, recv_now: Callable[[int, int], bytes] | None = None
) -> tuple[bytes, bool]:
    """RECV of up to ``nbytes`` (> 0) into a provided buffer: while the task
    waits, no memory is set aside for it (see :mod:`._bufring`).  Returns
    the data, and whether the kernel said more is waiting in the socket
    (``IORING_CQE_F_SOCK_NONEMPTY``).

    ``recv_now(nbytes, flags)`` is a non-blocking ``recv(2)`` on the same
    socket, used when the buffer ring was empty: more receives completed in
    one ``io_uring_enter`` than it has buffers.  (io_uring selects the
    buffer when the data is there, so the data is waiting in the socket.)
    """
    if not m.kernel.buf_ring:
        return await _recv_when_readable(m, fd, nbytes, flags, recv_now)
    bufs = m.buffers()
    while True:
        try:
            op = await m.perform(
                fd, m.ring.prep_recv_select, min(nbytes, bufs.buf_size), flags, 0, keep=None, slot=READER
            )
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
        else:
            if op.flags & _F_BUFFER:
                return bufs.take(op.flags >> _BUFFER_SHIFT, op.res), bool(op.flags & _F_SOCK_NONEMPTY)
            return b"", False
        # -ENOBUFS: nothing was received.  The task already parked once.
        await checkpoint_if_cancelled()
        if recv_now is None:
            buf = bytearray(nbytes)
            n = await recv_into(m, fd, k.Buffer(buf, writable=True), nbytes, flags)
            return bytes(memoryview(buf)[:n]), False
        try:
            data = recv_now(nbytes, flags | socket.MSG_DONTWAIT)
            return data, len(data) == nbytes
        except BlockingIOError:
            pass  # gone after all: wait again, for a buffer from the ring


async def _recv_when_readable(
    m: UringIOManager, fd: int, nbytes: int, flags: int, recv_now: Callable[[int, int], bytes] | None
) -> tuple[bytes, bool]:
    """:func:`recv` where the kernel has no provided-buffer rings (before
    5.19): wait for readability (one POLL_ADD, which holds no buffer), then
    ``recv(2)`` without blocking.  Idle connections still hold no memory,
    and cancelling the wait loses nothing (the poll is simply forgotten).
    Under trio_uring.testing (``force_ring``) the receive is a RECV into a
    buffer of its own instead, so that faults can reach it."""
    if m.force_ring:
        buf = bytearray(nbytes)
        n = await recv_into(m, fd, k.Buffer(buf, writable=True), nbytes, flags)
        return bytes(memoryview(buf)[:n]), False
    if recv_now is None:
        # lowlevel.recv: nobody asked the socket yet.  Ask it first, as
        # trio's own methods do: its errors (ENOTSOCK, EBADF ...) are then
        # recv(2)'s, where a readiness wait on a non-socket might never end.
        recv_now = _fd_recv(fd)
        data = await syscall_first(recv_now, nbytes, flags | socket.MSG_DONTWAIT)
        if data is not None:
            return data, len(data) == nbytes
    while True:
        await m.wait_readable(fd)
        try:
            data = recv_now(nbytes, flags | socket.MSG_DONTWAIT)
        except BlockingIOError:
            continue  # another reader got there first, or a spurious wakeup
        return data, len(data) == nbytes


def _fd_recv(fd: int) -> Callable[[int, int], bytes]:
    """``recv(2)`` on a bare fd, as the stdlib does it."""

    def recv_now(nbytes: int, flags: int) -> bytes:
        if fd < 0:  # as recv(2) says (socket.socket would say ValueError)
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        sock = socket.socket(fileno=fd)
        try:
            return sock.recv(nbytes, flags)
        finally:
            sock.detach()

    return recv_now


async def recv_into(m: UringIOManager, fd: int, pin: k.Buffer, nbytes: int, flags: int) -> int:
    """RECV into the caller's (pinned) buffer."""
    op = await m.perform(fd, m.ring.prep_recv, pin.address, min(nbytes, MAX_LEN), flags, keep=pin, slot=READER)
    return op.res


async def recvmsg(
    m: UringIOManager, fd: int, pins: list[k.Buffer], ancbufsize: int, flags: int
) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
    """RECVMSG scattering into ``pins``: ``(nbytes, ancdata, msg_flags,
    address)`` as ``socket.recvmsg_into`` returns them."""
    msg = MsgMemory(pins, ancbufsize)
    op = await m.perform(fd, m.ring.prep_recvmsg, msg.address, flags, keep=msg, slot=READER)
    return op.res, msg.result_ancillary(), msg.result_flags(), msg.result_address()


async def recvmsg_bytes(
    m: UringIOManager, fd: int, bufsize: int, ancbufsize: int, flags: int
) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
    """RECVMSG into a fresh buffer of ``bufsize``: ``(data, ancdata,
    msg_flags, address)`` as ``socket.recvmsg`` returns them."""
    buf = bytearray(bufsize)
    n, ancdata, msg_flags, address = await recvmsg(m, fd, [k.Buffer(buf, writable=True)], ancbufsize, flags)
    return bytes(memoryview(buf)[:n]), ancdata, msg_flags, address


async def send(m: UringIOManager, fd: int, pin: k.Buffer, flags: int) -> int:
    """SEND from the caller's (pinned) buffer; returns the count sent."""
    op = await m.perform(fd, m.ring.prep_send, pin.address, min(pin.length, MAX_LEN), flags, keep=pin, slot=WRITER)
    return op.res


async def sendmsg(
    m: UringIOManager,
    fd: int,
    pins: list[k.Buffer],
    ancdata: Iterable[tuple[int, int, Any]],
    control_len: int,
    flags: int,
    family: int,
    address: Any,
) -> int:
    """SENDMSG gathering from ``pins``, with ancillary data and an optional
    (resolved) destination."""
    msg = MsgMemory(pins, control_len)
    msg.set_name(family, address)
    if control_len:
        msg.set_control(ancdata)
    op = await m.perform(fd, m.ring.prep_sendmsg, msg.address, flags, keep=msg, slot=WRITER)
    return op.res


async def accept(m: UringIOManager, fd: int) -> tuple[int, Any]:
    """One ACCEPT: ``(new fd, peer address)``; the fd is close-on-exec and
    owned by the caller, even if the task was cancelled meanwhile."""
    # sockaddr_storage, then the socklen_t the kernel reads and rewrites.
    mem = k.Memory(SOCKADDR_MAX + 4)
    mem.view[SOCKADDR_MAX : SOCKADDR_MAX + 4] = SOCKADDR_MAX.to_bytes(4, "little")
    op = await m.perform(
        fd, m.ring.prep_accept, mem.address, mem.address + SOCKADDR_MAX, socket.SOCK_CLOEXEC, keep=mem, slot=READER
    )
    new_fd = op.res
    try:
        addrlen = int.from_bytes(mem.view[SOCKADDR_MAX : SOCKADDR_MAX + 4], "little")
        address = parse_sockaddr(mem.view[:SOCKADDR_MAX], addrlen)
    except BaseException:
        os.close(new_fd)
        raise
    return new_fd, address


async def connect(m: UringIOManager, fd: int, sockaddr: k.Memory, addrlen: int) -> None:
    """CONNECT to the packed sockaddr.  Cancelled in flight, the attempt has
    begun anyway: the socket's state is indeterminate."""
    await m.perform(fd, m.ring.prep_connect, sockaddr.address, addrlen, keep=sockaddr, slot=WRITER)
