"""One async function per io_uring operation on sockets, for trio.

Each function here writes ONE SQE and parks the calling task on it through the
current run's :meth:`UringIOManager.perform`, which implements trio's
cancellation rule on top of io_uring's asynchronous cancellation (see the
table in ``_manager.py``):

* cancelled while the operation is in the kernel: an ``ASYNC_CANCEL`` is sent
  and the task stays parked until the operation's final CQE.  If the kernel
  cancelled it (``-ECANCELED``), :exc:`trio.Cancelled` is raised and the
  operation had no effect: a cancelled :func:`recv` leaves every byte in the
  socket, a cancelled :func:`send` sent nothing, a cancelled :func:`accept`
  accepted nothing.
* if the operation completed anyway (it won the race against the cancel),
  its result is returned -- the bytes received, the count sent, the accepted
  fd, which is therefore never leaked -- and ``Cancelled`` is raised at the
  task's next checkpoint.

Arguments, results and errors follow the stdlib socket method of the same
name (and trio's): ``OSError`` with ``errno``/``strerror`` from the CQE,
``ValueError`` for negative sizes, ``TypeError`` for a buffer that cannot be
written.  Every function is a checkpoint, including when it fails on a bad
argument (as trio's socket methods are).

Memory the kernel reads or writes through a pointer -- the caller's buffer,
the ``struct msghdr`` and ``struct iovec`` of SENDMSG/RECVMSG, sockaddrs and
their lengths, the TIMEOUT's timespec -- lives in a :class:`_kernel.Buffer` or
:class:`_kernel.Memory` handed to ``perform`` as ``keep``, so it stays alive
until the final CQE even when the task has been cancelled
(uring-notes §5).

Addresses are those of ``AF_INET``, ``AF_INET6`` and ``AF_UNIX`` sockets, in
the stdlib's formats.  Host names are resolved with
:func:`trio.socket.getaddrinfo`, as trio's own sockets do.

Which opcodes the kernel has is the ring's kernel record (:mod:`._features`),
decided once at ring setup.  Where a newer feature is missing, a function
takes a fallback with the same results: :func:`recv` without provided-buffer
rings (before 5.19) is ``recv(2)``, after a readiness wait (POLL_ADD) if
nothing is waiting; :func:`ftruncate` without FTRUNCATE (before 6.9) is
``ftruncate(2)`` in a worker thread.  A function whose opcode the kernel lacks
and that has no fallback raises :class:`trio_uring.UnsupportedError` (cause
``"missing-opcode"``) naming the opcode, the release that has it and what to
call instead; at the floor (Linux 5.15) every function here has its opcode.

A few caveats where io_uring and the kernel differ from "it did not happen":

* :func:`connect`: a CONNECT cancelled in flight has already sent its SYN; the
  socket is in an indeterminate state, and should be closed (trio's own
  ``connect`` closes its socket in this case).
* :func:`sleep` sleeps on ``CLOCK_MONOTONIC``, not on trio's clock (so a
  ``MockClock`` does not affect it).
"""

from __future__ import annotations

import errno
import math
import operator
import os
import socket
import sys
from collections.abc import Iterable
from typing import Any, Final, overload

import trio
import trio.lowlevel

from . import _kernel as k
from . import _sockops
from ._entry import BAD_INPUT as _BAD_INPUT
from ._entry import FileDescriptorLike
from ._entry import fileno as _fileno
from ._entry import manager as _manager
from ._entry import raise_at_checkpoint as _raise_at_checkpoint
from ._fileops import (
    fallocate,
    fdatasync,
    fsync,
    ftruncate,
    linkat,
    mkdirat,
    openat,
    pread,
    pread_into,
    preadv,
    pwrite,
    pwritev,
    renameat,
    splice,
    statx,
    symlinkat,
    unlinkat,
)
from ._manager import UringIOManager
from ._sockaddr import SOCKADDR_MAX, c_int, control_space, pack_sockaddr

__all__ = [
    "accept",
    "close",
    "connect",
    "fallocate",
    "fdatasync",
    "fsync",
    "ftruncate",
    "linkat",
    "mkdirat",
    "openat",
    "pread",
    "pread_into",
    "preadv",
    "pwrite",
    "pwritev",
    "recv",
    "recv_into",
    "recvfrom",
    "recvmsg",
    "recvmsg_into",
    "renameat",
    "send",
    "sendmsg",
    "sendto",
    "shutdown",
    "sleep",
    "splice",
    "statx",
    "symlinkat",
    "unlinkat",
]


#: ``(host, port)``, ``(host, port, flowinfo, scope_id)``, or an AF_UNIX path.
Address = str | bytes | os.PathLike[str] | os.PathLike[bytes] | tuple[Any, ...]

# __kernel_timespec.tv_sec is s64; ktime saturates well below this.
_MAX_SLEEP_SEC: Final = 1 << 62

# ---- plumbing -------------------------------------------------------------------------


def _msg_flags(flags: object) -> int:
    """MSG_* flags as the stdlib takes them (a C int), for the SQE's u32.
    MSG_DONTWAIT is dropped: these functions wait, as trio's socket methods
    do (and trio_uring's UringSocket), instead of failing with EAGAIN."""
    return c_int(flags) & _FLAGS_KEPT


_FLAGS_KEPT: Final = 0xFFFFFFFF & ~int(socket.MSG_DONTWAIT)


# Arguments are checked in the stdlib's order: every argument converted to
# its C type first (TypeError, OverflowError), then the values (ValueError).


def _ssize(value: object) -> int:
    """``value`` as a C ssize_t (TypeError for non-integers, as the stdlib)."""
    n = operator.index(value)  # type: ignore[arg-type]
    if not -sys.maxsize - 1 <= n <= sys.maxsize:
        raise OverflowError("Python int too large to convert to C ssize_t")
    return n


def _nonnegative(n: int, what: str) -> int:
    if n < 0:
        raise ValueError(f"negative buffersize in {what}")
    return n


def _ancbufsize(n: int) -> int:
    if not 0 <= n <= 0x7FFFFFFF:  # the stdlib's limit (a socklen_t)
        raise ValueError("invalid ancillary data buffer length")
    return n


def _pin_writable(buffer: Any, what: str) -> k.Buffer:
    try:
        return k.Buffer(buffer, writable=True)
    except BufferError:
        raise TypeError(
            f"{what}() argument 1 must be read-write bytes-like object, not {type(buffer).__name__}"
        ) from None


def _family(sock: FileDescriptorLike, fd: int) -> int:
    """The address family of the socket ``fd`` (OSError EBADF / ENOTSOCK if
    it is not an open socket)."""
    family = getattr(sock, "family", None)
    if isinstance(family, int):
        return family
    if fd < 0:  # as the system calls answer (socket.socket would say ValueError)
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    # socket.socket(fileno=...) asks the kernel (SO_DOMAIN) and takes over
    # the fd; detach() gives it back without closing it.
    probe = socket.socket(fileno=fd)
    try:
        return int(probe.family)
    finally:
        probe.detach()


# ---- sockaddrs ------------------------------------------------------------------------


def _is_numeric(family: int, host: object) -> bool:
    if not isinstance(host, str):
        return False
    try:
        socket.inet_pton(family, host)
    except OSError:
        return False
    # (a NUL in the host raises ValueError here, as in trio's own resolution)
    return True


async def _resolve(sock: FileDescriptorLike, fd: int, family: int, address: Address) -> Address:
    """Resolve a host name the way trio's sockets do; numeric addresses and
    AF_UNIX paths are returned without a checkpoint."""
    if family == socket.AF_UNIX:
        if not isinstance(address, (str, bytes, os.PathLike)):
            raise TypeError(f"AF_UNIX address must be str, bytes or path-like, not {type(address).__name__!r}")
        return os.fspath(address)
    if family == socket.AF_INET:
        if not isinstance(address, tuple) or len(address) != 2:
            raise ValueError("address should be a (host, port) tuple")
    elif family == socket.AF_INET6:
        if not isinstance(address, tuple) or not 2 <= len(address) <= 4:
            raise ValueError("address should be a (host, port, [flowinfo, [scopeid]]) tuple")
    else:
        raise ValueError(f"unsupported address family {family!r}: only AF_INET, AF_INET6 and AF_UNIX")
    host, port, *rest = address
    if isinstance(port, int) and _is_numeric(family, host):
        return address
    if host == "":
        host = None
    elif host == "<broadcast>":
        host = "255.255.255.255"
    flags = 0
    if family == socket.AF_INET6:
        flags |= socket.AI_V4MAPPED
    sock_type = getattr(sock, "type", None)
    if not isinstance(sock_type, int):
        probe = socket.socket(fileno=fd)
        try:
            sock_type = int(probe.type)
        finally:
            probe.detach()
    infos = await trio.socket.getaddrinfo(host, port, family, sock_type, 0, flags)
    normed: tuple[Any, ...] = tuple(infos[0][4])
    if family == socket.AF_INET6 and rest:
        normed = (*normed[:2], *rest, *normed[2 + len(rest) :])
    return normed


# ---- receiving --------------------------------------------------------------------------


async def recv(sock: FileDescriptorLike, nbytes: int, flags: int = 0) -> bytes:
    """``sock.recv(nbytes, flags)`` as one IORING_OP_RECV.

    The data lands in a buffer the kernel picks from trio_uring's
    provided-buffer ring when it arrives, so a task parked here holds no
    buffer; one call returns at most 64 KiB.  (Before 5.19, without
    provided-buffer rings: ``recv(2)``, after a POLL_ADD readiness wait if
    nothing is waiting -- no buffer held while waiting either.)
    """
    m = _manager("RECV")
    try:
        fd = _fileno(sock)
        n = _ssize(nbytes)
        flags = _msg_flags(flags)
        _nonnegative(n, "recv")
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    if n == 0:
        # recv(2) of 0 bytes returns at once, but io_uring's RECV of 0 bytes
        # waits until the socket is readable; CPython answers without a
        # system call, and so do we.
        await trio.lowlevel.checkpoint()
        return b""
    data, _more = await _sockops.recv(m, fd, n, flags)
    return data


async def recv_into(sock: FileDescriptorLike, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
    """``sock.recv_into(buffer, nbytes, flags)`` as one IORING_OP_RECV.

    ``buffer`` must be a writable, C-contiguous bytes-like object; it stays
    pinned (cannot be resized) until the kernel has finished with it.
    """
    m = _manager("RECV")
    try:
        fd = _fileno(sock)
        pin = _pin_writable(buffer, "recv_into")
        n = _ssize(nbytes)
        flags = _msg_flags(flags)
        if _nonnegative(n, "recv_into") == 0:
            n = pin.length
        elif n > pin.length:
            raise ValueError("buffer too small for requested bytes")
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    if n == 0:
        # As in recv(): io_uring's RECV of 0 bytes would wait for readability.
        await trio.lowlevel.checkpoint()
        return 0
    return await _sockops.recv_into(m, fd, pin, n, flags)


async def recvfrom(sock: FileDescriptorLike, nbytes: int, flags: int = 0) -> tuple[bytes, Any]:
    """``sock.recvfrom(nbytes, flags)`` as one IORING_OP_RECVMSG.  The
    address is ``None`` when the kernel reports none (connected stream
    sockets)."""
    m = _manager("RECVMSG")
    try:
        fd = _fileno(sock)
        n = _ssize(nbytes)
        flags = _msg_flags(flags)
        _nonnegative(n, "recvfrom")
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    data, _anc, _flags, address = await _sockops.recvmsg_bytes(m, fd, n, 0, flags)
    return data, address


async def recvmsg(
    sock: FileDescriptorLike, bufsize: int, ancbufsize: int = 0, flags: int = 0
) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
    """``sock.recvmsg(bufsize, ancbufsize, flags)`` as one IORING_OP_RECVMSG:
    ``(data, ancdata, msg_flags, address)``.  File descriptors received with
    ``SCM_RIGHTS`` belong to the caller (as with the stdlib, they are not
    close-on-exec unless ``MSG_CMSG_CLOEXEC`` is passed)."""
    m = _manager("RECVMSG")
    try:
        fd = _fileno(sock)
        n = _ssize(bufsize)
        anc = _ssize(ancbufsize)
        flags = _msg_flags(flags)
        if n < 0:
            raise ValueError("negative buffer size in recvmsg()")
        _ancbufsize(anc)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    return await _sockops.recvmsg_bytes(m, fd, n, anc, flags)


async def recvmsg_into(
    sock: FileDescriptorLike, buffers: Iterable[Any], ancbufsize: int = 0, flags: int = 0
) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
    """``sock.recvmsg_into(buffers, ancbufsize, flags)`` as one
    IORING_OP_RECVMSG scattering into ``buffers`` (pinned until the end)."""
    m = _manager("RECVMSG")
    try:
        fd = _fileno(sock)
        anc = _ssize(ancbufsize)
        flags = _msg_flags(flags)
        pins = [_pin_writable(b, "recvmsg_into") for b in buffers]
        _ancbufsize(anc)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    return await _sockops.recvmsg(m, fd, pins, anc, flags)


async def accept(sock: FileDescriptorLike) -> tuple[int, Any]:
    """``sock.accept()`` as one IORING_OP_ACCEPT: returns ``(fd, address)``
    where ``fd`` is a new blocking, close-on-exec socket the caller owns.

    If the accept completes although the task was cancelled meanwhile, the
    new fd is returned (never leaked) and ``Cancelled`` comes at the next
    checkpoint.
    """
    m = _manager("ACCEPT")
    try:
        fd = _fileno(sock)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    return await _sockops.accept(m, fd)


# ---- sending ----------------------------------------------------------------------------


async def send(sock: FileDescriptorLike, data: Any, flags: int = 0) -> int:
    """``sock.send(data, flags)`` as one IORING_OP_SEND; returns the number of
    bytes sent (possibly fewer than ``len(data)``, as send(2))."""
    m = _manager("SEND")
    try:
        fd = _fileno(sock)
        pin = k.Buffer(data, writable=False)
        flags = _msg_flags(flags)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    return await _sockops.send(m, fd, pin, flags)


@overload
async def sendto(sock: FileDescriptorLike, data: Any, address: Address, /) -> int: ...


@overload
async def sendto(sock: FileDescriptorLike, data: Any, flags: int, address: Address, /) -> int: ...


async def sendto(sock: FileDescriptorLike, data: Any, *args: Any) -> int:
    """``sock.sendto(data[, flags], address)`` as one IORING_OP_SENDMSG whose
    msghdr names the destination."""
    m = _manager("SENDMSG")
    try:
        if len(args) == 1:
            flags, address = 0, args[0]
        elif len(args) == 2:
            flags, address = args
        else:
            raise TypeError(f"sendto() takes 3 or 4 arguments ({2 + len(args)} given)")
        fd = _fileno(sock)
        family = _family(sock, fd)
        # trio's order: the address is resolved first, then the stdlib
        # checks the data, the flags and the resolved address
        resolved = await _resolve(sock, fd, family, address)
        pin = k.Buffer(data, writable=False)
        flags = _msg_flags(flags)
        pack_sockaddr(family, resolved, memoryview(bytearray(SOCKADDR_MAX)))
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    return await _sendmsg(m, fd, [pin], (), flags, family, resolved)


async def sendmsg(
    sock: FileDescriptorLike,
    buffers: Iterable[Any],
    ancdata: Iterable[tuple[int, int, Any]] = (),
    flags: int = 0,
    address: Address | None = None,
) -> int:
    """``sock.sendmsg(buffers, ancdata, flags, address)`` as one
    IORING_OP_SENDMSG: gathers ``buffers``, sends ancillary data (e.g.
    ``SCM_RIGHTS``), to ``address`` if given."""
    m = _manager("SENDMSG")
    try:
        fd = _fileno(sock)
        family = _family(sock, fd)
        # trio's order: the address is resolved first; then the stdlib
        # checks the flags, the resolved address, the buffers, the ancdata
        resolved = None if address is None else await _resolve(sock, fd, family, address)
        flags = _msg_flags(flags)
        if resolved is not None:
            pack_sockaddr(family, resolved, memoryview(bytearray(SOCKADDR_MAX)))
        pins = [k.Buffer(b, writable=False) for b in buffers]
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    return await _sendmsg(m, fd, pins, ancdata, flags, family, resolved)


async def _sendmsg(
    m: UringIOManager,
    fd: int,
    pins: list[k.Buffer],
    ancdata: Iterable[tuple[int, int, Any]],
    flags: int,
    family: int,
    address: Any,
) -> int:
    try:
        items, control_len = control_space(ancdata)
        # the sockaddr is packed (and checked) before anything is submitted
        if address is not None:
            pack_sockaddr(family, address, memoryview(bytearray(SOCKADDR_MAX)))
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    return await _sockops.sendmsg(m, fd, pins, items, control_len, int(flags), family, address)


# ---- connection management ---------------------------------------------------------------


async def connect(sock: FileDescriptorLike, address: Address) -> None:
    """``sock.connect(address)`` as one IORING_OP_CONNECT.

    If cancelled while in flight, the connection attempt has already begun
    and the socket is left in an indeterminate state: close it (trio's
    ``connect`` does so itself).
    """
    m = _manager("CONNECT")
    try:
        fd = _fileno(sock)
        family = _family(sock, fd)
        resolved = await _resolve(sock, fd, family, address)
        mem = k.Memory(SOCKADDR_MAX)
        addrlen = pack_sockaddr(family, resolved, mem.view)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    await _sockops.connect(m, fd, mem, addrlen)


async def shutdown(sock: FileDescriptorLike, how: int) -> None:
    """``sock.shutdown(how)`` as one IORING_OP_SHUTDOWN."""
    m = _manager("SHUTDOWN")
    try:
        fd = _fileno(sock)
        how = c_int(how) & 0xFFFFFFFF
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    await m.perform(fd, m.ring.prep_shutdown, how)


async def close(sock: int | socket.socket | trio.socket.SocketType) -> None:
    """Close a file descriptor with IORING_OP_CLOSE.

    Every task waiting on it first gets :exc:`trio.ClosedResourceError`
    (:func:`trio.lowlevel.notify_closing`).  A socket object is detached
    first, so it will not close the (possibly reused) fd number again.  If
    this raises ``Cancelled``, nothing was done: the fd is still open.
    """
    m = _manager("CLOSE")
    detach = None
    try:
        if isinstance(sock, int):
            fd = sock
        else:
            fd = _fileno(sock)
            detach = getattr(sock, "detach", None)
            if detach is None:
                raise TypeError(f"close() needs an int fd or a socket with detach(), not {type(sock).__name__!r}")
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    # Cancelled here means the fd is untouched; after this point nothing can
    # raise Cancelled before the CLOSE is queued (perform's own check sees
    # the same, unchanged cancel status).
    await trio.lowlevel.checkpoint_if_cancelled()
    trio.lowlevel.notify_closing(fd)
    if detach is not None:
        detach()
    await m.perform(fd, m.ring.prep_close)


# ---- time ---------------------------------------------------------------------------------


async def sleep(seconds: float) -> None:
    """Sleep ``seconds`` (on CLOCK_MONOTONIC) with one IORING_OP_TIMEOUT."""
    m = _manager("TIMEOUT")
    try:
        if math.isnan(seconds):
            raise ValueError("`seconds` must not be NaN")
        if seconds < 0:
            raise ValueError("`seconds` must be non-negative")
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    if seconds >= _MAX_SLEEP_SEC:
        sec, nsec = _MAX_SLEEP_SEC, 0
    else:
        sec = int(seconds)
        nsec = min(int((seconds - sec) * 1e9), 999_999_999)
    ts = k.Memory(k.TIMESPEC.size)
    k.TIMESPEC.pack_into(ts.view, 0, sec, nsec)
    ring = m.ring

    def prep_timeout(user_data: int, _fd: int, ts_addr: int) -> None:
        ring.prep_timeout(user_data, ts_addr)

    try:
        await m.perform(-1, prep_timeout, ts.address, keep=ts)
    except OSError as exc:
        # -ETIME is how a TIMEOUT reports that its time is up.
        if exc.errno != errno.ETIME:
            raise
