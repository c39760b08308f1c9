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

Opcodes are checked lazily: the first call of a function whose opcode the
kernel lacks raises :class:`trio_uring.UnsupportedError` (cause
``"missing-opcode"``).

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
import os
import socket
import struct
from typing import Any, Final, NoReturn, Protocol, overload

import trio
import trio.lowlevel

from . import _kernel as k
from ._manager import UringIOManager
from ._support import UnsupportedError

__all__ = [
    "accept",
    "close",
    "connect",
    "recv",
    "recv_into",
    "recvfrom",
    "send",
    "sendto",
    "shutdown",
    "sleep",
]


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


FileDescriptorLike = int | _HasFileno
#: ``(host, port)``, ``(host, port, flowinfo, scope_id)``, or an AF_UNIX path.
Address = str | bytes | os.PathLike[str] | os.PathLike[bytes] | tuple[Any, ...]

# struct msghdr (x86_64, 56 bytes): msg_name, msg_namelen (+pad), msg_iov,
# msg_iovlen, msg_control, msg_controllen, msg_flags (+pad).
_MSGHDR: Final = struct.Struct("<QI4xQQQQi4x")
# struct iovec: iov_base, iov_len
_IOVEC: Final = struct.Struct("<QQ")
_NAMELEN_OFFSET: Final = 8
assert _MSGHDR.size == 56
# sizeof(struct sockaddr_storage)
_SOCKADDR_MAX: Final = 128
# offsetof(struct sockaddr_un, sun_path) and sizeof(sun_path)
_SUN_PATH_OFFSET: Final = 2
_SUN_PATH_MAX: Final = 108
# The kernel transfers at most MAX_RW_COUNT bytes per call; sqe.len is a u32.
_MAX_LEN: Final = 0x7FFFF000
# __kernel_timespec.tv_sec is s64; ktime saturates well below this.
_MAX_SLEEP_SEC: Final = 1 << 62

_NOT_IN_URING_RUN: Final = "must be called from inside trio_uring.run / an installed trio run"

# Errors from argument checking, raised after a checkpoint (as trio does).
_BAD_INPUT: Final = (TypeError, ValueError, OverflowError, OSError)


# ---- plumbing -------------------------------------------------------------------------


def _manager(opcode_name: str) -> UringIOManager:
    """The current run's io_uring manager, after checking the kernel has the op."""
    try:
        io: object = trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager
    except AttributeError:
        io = None
    if not isinstance(io, UringIOManager):
        raise RuntimeError(_NOT_IN_URING_RUN)
    if k.opcode_number(opcode_name) not in io.ring.probe():
        raise UnsupportedError(
            "missing-opcode",
            f"this kernel's io_uring lacks the opcode {opcode_name}",
            "upgrade to Linux 5.19 or newer, or use trio's own socket methods",
        )
    return io


async def _raise_at_checkpoint(exc: BaseException) -> NoReturn:
    """Fail like trio's socket methods do on a bad argument: a checkpoint
    first (so a cancelled task gets Cancelled), then the error."""
    await trio.lowlevel.checkpoint()
    raise exc


def _fileno(sock: FileDescriptorLike) -> int:
    if isinstance(sock, int):
        return sock
    fileno = getattr(sock, "fileno", None)
    if fileno is None:
        raise TypeError(f"expected an int file descriptor or an object with fileno(), not {type(sock).__name__!r}")
    fd = fileno()
    if not isinstance(fd, int):
        raise TypeError(f"fileno() returned {type(fd).__name__!r}, not int")
    return fd


def _nbytes(nbytes: int, what: str) -> int:
    n = int(nbytes)
    if n < 0:
        raise ValueError(f"negative buffersize in {what}")
    return n


def _family(sock: FileDescriptorLike, fd: int) -> int:
    """The address family of the socket ``fd`` (OSError EBADF / ENOTSOCK if
    it is not an open socket)."""
    family = getattr(sock, "family", None)
    if isinstance(family, int):
        return family
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
    except (OSError, ValueError):
        return False
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


def _pack_sockaddr(family: int, address: Address, buf: memoryview) -> int:
    """Write ``address`` as a ``struct sockaddr_*`` into ``buf``; return its length."""
    if family == socket.AF_UNIX:
        assert isinstance(address, (str, bytes))
        path = os.fsencode(address)
        abstract = path[:1] == b"\0"
        if len(path) > _SUN_PATH_MAX or (not abstract and len(path) >= _SUN_PATH_MAX):
            raise OSError(errno.ENAMETOOLONG, "AF_UNIX path too long")
        struct.pack_into("<H", buf, 0, socket.AF_UNIX)
        buf[_SUN_PATH_OFFSET : _SUN_PATH_OFFSET + len(path)] = path
        return _SUN_PATH_OFFSET + len(path)
    assert isinstance(address, tuple)
    host, port, *rest = address
    if not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__!r}")
    if not 0 <= port <= 0xFFFF:
        raise OverflowError("port must be 0-65535.")
    if family == socket.AF_INET:
        struct.pack_into("<H", buf, 0, socket.AF_INET)
        struct.pack_into(">H4s8x", buf, 2, port, socket.inet_pton(socket.AF_INET, host))
        return 16
    flowinfo = int(rest[0]) if rest else 0
    scope_id = int(rest[1]) if len(rest) > 1 else 0
    if not 0 <= flowinfo <= 0xFFFFF:
        raise OverflowError("flowinfo must be 0-1048575.")
    struct.pack_into("<H", buf, 0, socket.AF_INET6)
    struct.pack_into(">HI16s", buf, 2, port, flowinfo, socket.inet_pton(socket.AF_INET6, host))
    struct.pack_into("<I", buf, 24, scope_id)
    return 28


def _parse_sockaddr(buf: memoryview, length: int) -> Any:
    """A ``struct sockaddr`` as the stdlib returns it (``None`` when empty)."""
    if length <= 0:
        return None
    length = min(length, len(buf))
    (family,) = struct.unpack_from("<H", buf, 0)
    if family == socket.AF_INET and length >= 16:
        (port,) = struct.unpack_from(">H", buf, 2)
        return (socket.inet_ntop(socket.AF_INET, bytes(buf[4:8])), port)
    if family == socket.AF_INET6 and length >= 24:
        port, flowinfo = struct.unpack_from(">HI", buf, 2)
        scope_id = struct.unpack_from("<I", buf, 24)[0] if length >= 28 else 0
        return (socket.inet_ntop(socket.AF_INET6, bytes(buf[8:24])), port, flowinfo, scope_id)
    if family == socket.AF_UNIX:
        path = bytes(buf[_SUN_PATH_OFFSET:length])
        if path[:1] == b"\0":
            return path  # Linux abstract namespace
        return os.fsdecode(path.split(b"\0", 1)[0])
    return bytes(buf[:length])


def _msghdr(mem: k.Memory, name_off: int, namelen: int, iov_off: int, data: k.Buffer, nbytes: int) -> None:
    """Fill a msghdr at offset 0 of ``mem`` with one iovec at ``iov_off``."""
    name = mem.address + name_off if namelen else 0
    _MSGHDR.pack_into(mem.view, 0, name, namelen, mem.address + iov_off, 1, 0, 0, 0)
    _IOVEC.pack_into(mem.view, iov_off, data.address, nbytes)


# ---- receiving --------------------------------------------------------------------------


async def recv(sock: FileDescriptorLike, nbytes: int, flags: int = 0) -> bytes:
    """``sock.recv(nbytes, flags)`` as one IORING_OP_RECV."""
    m = _manager("RECV")
    try:
        fd = _fileno(sock)
        n = _nbytes(nbytes, "recv")
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    if n == 0:
        # recv(2) of 0 bytes returns at once, but io_uring's RECV of 0 bytes
        # waits until the socket is readable; CPython answers without a
        # system call, and so do we.
        await trio.lowlevel.checkpoint()
        return b""
    buf = bytearray(n)
    pin = k.Buffer(buf, writable=True)
    op = await m.perform(fd, m.ring.prep_recv, pin.address, min(n, _MAX_LEN), flags, keep=pin)
    if op.res == n:
        return bytes(buf)
    return bytes(memoryview(buf)[: op.res])


async def recv_into(sock: FileDescriptorLike, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
    """``sock.recv_into(buffer, nbytes, flags)`` as one IORING_OP_RECV.

    ``buffer`` must be a writable, C-contiguous bytes-like object; it stays
    pinned (cannot be resized) until the kernel has finished with it.
    """
    m = _manager("RECV")
    try:
        fd = _fileno(sock)
        try:
            pin = k.Buffer(buffer, writable=True)
        except BufferError:
            raise TypeError(
                f"recv_into() argument 1 must be read-write bytes-like object, not {type(buffer).__name__}"
            ) from None
        n = _nbytes(nbytes, "recv_into")
        if n == 0:
            n = pin.length
        elif n > pin.length:
            raise ValueError("buffer too small for requested bytes")
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    if n == 0:
        # As in recv(): io_uring's RECV of 0 bytes would wait for readability.
        await trio.lowlevel.checkpoint()
        return 0
    op = await m.perform(fd, m.ring.prep_recv, pin.address, min(n, _MAX_LEN), flags, keep=pin)
    return op.res


async def recvfrom(sock: FileDescriptorLike, nbytes: int, flags: int = 0) -> tuple[bytes, Any]:
    """``sock.recvfrom(nbytes, flags)`` as one IORING_OP_RECVMSG.  The
    address is ``None`` when the kernel reports none (connected stream
    sockets, unnamed AF_UNIX peers)."""
    m = _manager("RECVMSG")
    try:
        fd = _fileno(sock)
        n = _nbytes(nbytes, "recvfrom")
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    buf = bytearray(n)
    pin = k.Buffer(buf, writable=True)
    iov_off = _MSGHDR.size
    name_off = iov_off + _IOVEC.size
    # msghdr, iovec and the sockaddr the kernel writes (with msg_namelen).
    mem = k.Memory(name_off + _SOCKADDR_MAX)
    _msghdr(mem, name_off, _SOCKADDR_MAX, iov_off, pin, min(n, _MAX_LEN))
    op = await m.perform(fd, m.ring.prep_recvmsg, mem.address, flags, keep=(mem, pin))
    (namelen,) = struct.unpack_from("<I", mem.view, _NAMELEN_OFFSET)
    address = _parse_sockaddr(mem.view[name_off:], namelen)
    return bytes(memoryview(buf)[: op.res]), address


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
    # sockaddr_storage, then the socklen_t the kernel reads and rewrites.
    mem = k.Memory(_SOCKADDR_MAX + 4)
    struct.pack_into("<I", mem.view, _SOCKADDR_MAX, _SOCKADDR_MAX)
    op = await m.perform(
        fd, m.ring.prep_accept, mem.address, mem.address + _SOCKADDR_MAX, socket.SOCK_CLOEXEC, keep=mem
    )
    new_fd = op.res
    try:
        (addrlen,) = struct.unpack_from("<I", mem.view, _SOCKADDR_MAX)
        address = _parse_sockaddr(mem.view[:_SOCKADDR_MAX], addrlen)
    except BaseException:
        os.close(new_fd)
        raise
    return new_fd, address


# ---- sending ----------------------------------------------------------------------------


async def send(sock: FileDescriptorLike, data: Any, flags: int = 0) -> int:
    """``sock.send(data, flags)`` as one IORING_OP_SEND; returns the number of
    bytes sent (possibly fewer than ``len(data)``, as send(2))."""
    m = _manager("SEND")
    try:
        fd = _fileno(sock)
        pin = k.Buffer(data, writable=False)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    op = await m.perform(fd, m.ring.prep_send, pin.address, min(pin.length, _MAX_LEN), flags, keep=pin)
    return op.res


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
            flags, address = int(args[0]), args[1]
        else:
            raise TypeError(f"sendto() takes 3 or 4 arguments ({2 + len(args)} given)")
        fd = _fileno(sock)
        pin = k.Buffer(data, writable=False)
        family = _family(sock, fd)
        resolved = await _resolve(sock, fd, family, address)
        iov_off = _MSGHDR.size
        name_off = iov_off + _IOVEC.size
        mem = k.Memory(name_off + _SOCKADDR_MAX)
        namelen = _pack_sockaddr(family, resolved, mem.view[name_off:])
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    _msghdr(mem, name_off, namelen, iov_off, pin, min(pin.length, _MAX_LEN))
    op = await m.perform(fd, m.ring.prep_sendmsg, mem.address, flags, keep=(mem, pin))
    return op.res


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
        mem = k.Memory(_SOCKADDR_MAX)
        addrlen = _pack_sockaddr(family, resolved, mem.view)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    await m.perform(fd, m.ring.prep_connect, mem.address, addrlen, keep=mem)


async def shutdown(sock: FileDescriptorLike, how: int) -> None:
    """``sock.shutdown(how)`` as one IORING_OP_SHUTDOWN."""
    m = _manager("SHUTDOWN")
    try:
        fd = _fileno(sock)
        how = int(how)
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
