"""trio's socket class, with its I/O submitted to io_uring.

Which sockets
-------------

trio makes every socket object in one place: ``trio._socket._SocketType``
(``trio.socket.socket``, ``socketpair``, ``fromfd``, ``from_stdlib_socket``
-- which anyio uses for its listeners -- ``accept`` and ``dup`` all construct
it).  While trio_uring is installed, that name is :class:`UringSocket`, a
subclass, so ``trio.open_tcp_stream``, ``trio.serve_tcp``,
``trio.SocketStream``, ``trio.open_unix_socket`` and anyio on trio all get
one.  Methods that do no I/O are trio's own, unchanged.

What each I/O method does
-------------------------

Inside a run on io_uring, every receive and send first makes the system
call itself, without blocking, as trio's own methods do: data that is
already waiting (or room in the send buffer) is taken at once, with one
``recv(2)``/``send(2)`` and no trip through the ring.  Only if that would
block does the task park, on ONE io_uring request through
``UringIOManager.perform`` (see :mod:`._sockops`): ``recv`` a RECV into a
provided buffer (the kernel picks it when data arrives, so a waiting
receive holds no memory), ``recv_into`` a RECV into the caller's buffer,
the ``recvfrom``/``recvmsg`` family RECVMSG, ``send`` SEND,
``sendto``/``sendmsg`` SENDMSG.  ``connect`` is one CONNECT, and
``accept`` is ``accept4(2)``, then one ACCEPT if the backlog is empty (below).
Cancellation follows the table in ``_manager.py``: ``Cancelled`` means
the operation did not happen; an operation that completed first is
delivered.  Under :mod:`trio_uring.testing` every call is an io_uring
request (no system call first), so that injected faults reach it.

Where the kernel lacks a feature (the ring's kernel record,
:mod:`._features`), the same methods take a fallback with the same
results: without provided-buffer rings (before 5.19) a ``recv`` that has
to wait waits for readiness with a POLL_ADD -- which holds no buffer and
is simply forgotten when cancelled -- and then calls ``recv(2)``; without
multishot ACCEPT (before 5.19) ``TRIO_URING_ACCEPT=multishot`` changes nothing.

Anything the io_uring path would answer differently from trio goes to
trio's own method instead, so errors and edge cases are trio's exactly:
arguments that are not plain (a non-int size, a buffer that cannot be
pinned, flags such as ``MSG_WAITALL`` or ``MSG_ERRQUEUE`` whose io_uring
semantics differ), a closed socket, a run on trio's own backend, and a
``_sock`` that is not a plain ``socket.socket``.  ``MSG_DONTWAIT`` is
dropped: trio's methods wait anyway.

accept
------

Each ``accept()`` first calls ``accept4(2)`` without blocking, as trio's own
method does; only if the backlog is empty does the task park, on one ACCEPT
request, which the kernel completes with the next connection.  That request
sits in the listening socket's wait queue only while a task waits, so
several processes sharing one listener (hypercorn ``--workers``, a
pre-forked server) take connections in turn.

``TRIO_URING_ACCEPT=multishot`` (read when a run starts; 5.19+, ignored
before) keeps one multishot ACCEPT armed per listener instead: the kernel
accepts connections as they arrive, one CQE each, and keeps the request
armed -- also while no task is in ``accept()``.  Use it only for a listener
one process owns: a multishot ACCEPT stays first in the socket's exclusive
wait queue, so with a shared listener one process gets every connection.
Connections no ``accept()`` is waiting for are kept in order
for the next call; a cancelled ``accept()`` therefore loses nothing (the
connection waits, as it would in the kernel's backlog).  At 16 waiting
connections the request is cancelled, leaving further ones in the backlog,
and re-armed when the queue is empty.  An error (EMFILE, ...) ends the
request and is raised by the waiting (or next) ``accept()``; the next call
re-arms.  Closing the listener closes the connections still queued.  The
multishot request reports no peer address, so ``accept()`` asks
``getpeername()`` (``None`` if the peer already reset the connection).

Closing
-------

``close()`` and leaving a ``with`` block both call
:func:`trio.lowlevel.notify_closing` before closing the fd: an io_uring
request holds its own reference to the file, so without cancelling them
the socket would stay open in the kernel (trio's ``__exit__`` skips
``notify_closing``; here it does not).
"""

from __future__ import annotations

import errno
import os
import socket as _stdlib_socket
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

import outcome
import trio
from trio.lowlevel import (
    Abort,
    Task,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    current_task,
    reschedule,
    wait_task_rescheduled,
)

from . import _kernel as k
from . import _sockops, _stream
from . import _trio_compat as _compat
from ._manager import Operation, UringIOManager
from ._sockaddr import SOCKADDR_MAX, control_space, pack_sockaddr

if TYPE_CHECKING:
    from types import TracebackType

    from trio.lowlevel import RaiseCancelT

__all__ = ["UringSocket"]

_TrioSocketType: Final = _compat.SocketType
_trio_run: Final = _compat.run_module
_PLAIN_SOCKET: Final = _stdlib_socket.socket
# (plain ints: the stdlib's MSG_* are IntFlag members, whose operators cost
# microseconds each)
_DONTWAIT: Final = int(_stdlib_socket.MSG_DONTWAIT)
# Flags whose io_uring behaviour is the syscall's; any other flag goes to
# trio's method.  (MSG_WAITALL would make io_uring retry short transfers and
# lose the partial count if cancelled; MSG_ERRQUEUE waits for POLLERR.)
_RECV_FLAGS: Final = int(
    _stdlib_socket.MSG_PEEK
    | _stdlib_socket.MSG_OOB
    | _stdlib_socket.MSG_TRUNC
    | _stdlib_socket.MSG_CMSG_CLOEXEC
    | _DONTWAIT
)
_SEND_FLAGS: Final = int(
    _stdlib_socket.MSG_OOB
    | _stdlib_socket.MSG_DONTROUTE
    | _stdlib_socket.MSG_MORE
    | _stdlib_socket.MSG_NOSIGNAL
    | _stdlib_socket.MSG_EOR
    | _stdlib_socket.MSG_CONFIRM
    | _DONTWAIT
)
_WAIT: Final = ~_DONTWAIT
_NOT_RECV_FLAGS: Final = ~_RECV_FLAGS
_NOT_SEND_FLAGS: Final = ~_SEND_FLAGS
_INET: Final = (_stdlib_socket.AF_INET, _stdlib_socket.AF_INET6)
_F_MORE: Final = k.IORING_CQE_F_MORE
#: errors connect(2) gives before any handshake starts (a connected or
#: listening socket, a wrong family or address): trio raises them as the
#: stdlib does, without its "Error connecting to" wording
_CONNECT_FAILS_AT_ONCE: Final = frozenset(
    {errno.EISCONN, errno.EALREADY, errno.EAFNOSUPPORT, errno.EINVAL, errno.EADDRNOTAVAIL, errno.EACCES}
)
#: Accepted connections queued (no accept() waiting) before the multishot
#: ACCEPT is cancelled, leaving further ones in the kernel's backlog.
ACCEPT_QUEUE_LIMIT: Final = 16


def _plain_int(value: object) -> bool:
    return type(value) is int and value >= 0


class _Acceptor:
    """A listener's multishot ACCEPT and the connections it accepted that no
    ``accept()`` has taken yet."""

    __slots__ = ("__weakref__", "cancelled", "closed", "error", "fd", "m", "op", "ready", "token", "waiter")

    def __init__(self, m: UringIOManager, fd: int, ready: deque[int] | None = None) -> None:
        self.m = m
        self.fd = fd
        self.token = trio.lowlevel.current_trio_token()
        self.ready: deque[int] = ready if ready is not None else deque()
        self.error: BaseException | None = None
        self.waiter: Task | None = None
        #: the armed request, until its final CQE
        self.op: Operation | None = None
        #: we asked the kernel to cancel ``op`` (queue full)
        self.cancelled = False
        self.closed = False

    def arm(self) -> None:
        self.cancelled = False
        self.op = self.m.submit_multishot(
            self.fd, self.m.ring.prep_accept_multishot, _stdlib_socket.SOCK_CLOEXEC, callback=self.on_cqe
        )

    def on_cqe(self, res: int, flags: int) -> None:
        """Called from ``process_events`` with each of the request's CQEs."""
        if res >= 0:
            if self.closed:
                os.close(res)
            elif self.waiter is not None:
                reschedule(self.waiter, outcome.Value(res))
                self.waiter = None
            else:
                self.ready.append(res)
                op = self.op
                if len(self.ready) >= ACCEPT_QUEUE_LIMIT and flags & _F_MORE and op is not None and not self.cancelled:
                    self.cancelled = True
                    self.m.cancel(op.user_data)
        if flags & _F_MORE:
            return
        # The request is over.
        closing = self.op is not None and self.op.closing
        self.op = None
        self.cancelled = False
        if res < 0:
            err = -res
            exc: BaseException | None
            if closing or self.closed:
                exc = trio.ClosedResourceError("another task closed this socket")
            elif err in k.INTERRUPTED:
                exc = None  # we cancelled it (queue full, or the run is ending)
            else:
                exc = OSError(err, os.strerror(err))
            if exc is not None:
                if self.waiter is not None:
                    reschedule(self.waiter, outcome.Error(exc))
                    self.waiter = None
                elif not self.closed:
                    self.error = exc
        if self.waiter is not None and not self.closed:
            self.arm()

    def discard(self) -> None:
        """The listener is closing: close every queued connection."""
        self.closed = True
        while self.ready:
            os.close(self.ready.popleft())

    def abandon(self) -> None:
        """The listener was garbage-collected without being closed.  The
        stdlib socket's finalizer closed its fd, but the multishot ACCEPT
        holds its own reference to the file: the socket would go on
        listening, and accepting, until the run ends.  End the request from
        the run loop -- a finalizer may run anywhere, even halfway through
        an SQE being written -- and close what it accepted."""
        if self.closed:
            return
        self.closed = True  # from now on on_cqe closes what arrives
        try:
            self.token.run_sync_soon(self._end)
        except trio.RunFinishedError:
            pass  # the run's teardown cancelled and drained it

    def _end(self) -> None:
        while self.ready:
            os.close(self.ready.popleft())
        op = self.op
        if op is not None and not self.cancelled:
            self.cancelled = True
            self.m.cancel(op.user_data)


class UringSocket(_TrioSocketType):  # type: ignore[misc,valid-type]
    """A :class:`trio.socket.SocketType` whose I/O goes through io_uring
    inside a trio_uring run (and through trio's own code elsewhere)."""

    _acceptor: _Acceptor | None = None

    def _uring(self) -> UringIOManager | None:
        """The current run's manager, if this call should use io_uring."""
        try:
            m: object = _trio_run.GLOBAL_RUN_CONTEXT.runner.io_manager
        except AttributeError:
            return None
        if type(m) is UringIOManager and m.socket_ops and type(self._sock) is _PLAIN_SOCKET:
            return m
        return None

    # ---- closing ------------------------------------------------------------------

    def close(self) -> None:
        acceptor = self._acceptor
        super().close()
        if acceptor is not None:
            acceptor.discard()

    def detach(self) -> int:
        acceptor = self._acceptor
        if acceptor is not None:
            if acceptor.op is not None:
                acceptor.m.cancel(acceptor.op.user_data)
            acceptor.discard()
        return int(super().detach())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._uring() is not None:
            self.close()
            return
        super().__exit__(exc_type, exc_value, traceback)

    # ---- accept / connect --------------------------------------------------------------

    async def accept(self) -> tuple[trio.socket.SocketType, Any]:
        """Like :meth:`socket.socket.accept`, but async: ``accept4(2)``, else one
        ACCEPT request (or, with ``TRIO_URING_ACCEPT=multishot``, the
        listener's multishot ACCEPT)."""
        m = self._uring()
        fd = self._sock.fileno()
        if m is None or fd < 0:
            return await super().accept()  # type: ignore[no-any-return]
        if m.force_ring or not m.accept_multishot:
            # The default: accept4(2) at once, as trio does, and one ACCEPT
            # request only if the backlog is empty.  The request is in the
            # listener's wait queue only while a task waits in accept(), so
            # processes sharing a listener take turns (a multishot ACCEPT
            # would stay first in that exclusive queue and take them all).
            # Under trio_uring.testing every accept is an ACCEPT request, so
            # that faults reach it.
            got = await self._now(m, self._sock.accept)
            if got is not None:
                return UringSocket(got[0]), got[1]
            new_fd, _address = await _sockops.accept(m, fd)
            return self._adopt(new_fd)
        acceptor = self._acceptor
        if acceptor is None or acceptor.m is not m:
            # First accept, or the first of a new run (queued fds carry over).
            acceptor = self._acceptor = _Acceptor(m, fd, acceptor.ready if acceptor else None)
            weakref.finalize(self, acceptor.abandon)
        await checkpoint_if_cancelled()
        if acceptor.error is not None:
            exc, acceptor.error = acceptor.error, None
            await cancel_shielded_checkpoint()
            raise exc
        if acceptor.ready:
            new_fd = acceptor.ready.popleft()
            # Shielded: from here on the connection is the caller's.
            await cancel_shielded_checkpoint()
        else:
            if acceptor.waiter is not None:
                raise trio.BusyResourceError("another task is already reading / writing this fd")  # trio's wording
            if acceptor.op is None:
                acceptor.arm()
            acceptor.waiter = current_task()

            def abort(_: RaiseCancelT) -> Abort:
                # Nothing is lost: a connection accepted later is queued.
                acceptor.waiter = None
                return Abort.SUCCEEDED

            new_fd = await wait_task_rescheduled(abort)
        return self._adopt(new_fd)

    def _adopt(self, fd: int) -> tuple[trio.socket.SocketType, Any]:
        try:
            sock = _stdlib_socket.socket(self.family, self.type, self.proto, fileno=fd)
        except BaseException:
            os.close(fd)
            raise
        try:
            address = sock.getpeername()
        except OSError:
            address = "" if self.family == _stdlib_socket.AF_UNIX else None
        return UringSocket(sock), address

    async def connect(self, address: Any) -> None:
        m = self._uring()
        if m is None:
            return await super().connect(address)  # type: ignore[no-any-return]
        resolved = None  # until resolved: a resolution error (gaierror) is raised as it is
        try:
            resolved = await self._resolve_address_nocp(address, local=False)
            mem = k.Memory(SOCKADDR_MAX)
            fd = self._sock.fileno()
            try:
                if fd < 0:
                    raise OSError(errno.EBADF, os.strerror(errno.EBADF))
                addrlen = pack_sockaddr(self.family, resolved, mem.view)
            except (TypeError, ValueError, OverflowError, OSError):
                addrlen = -1  # trio's connect (below) raises what the stdlib does
            else:
                await _sockops.connect(m, fd, mem, addrlen)
        except trio.Cancelled:
            # As trio: a connect cannot really be cancelled, and the socket
            # is in an indeterminate state; close it.
            self.close()
            raise
        except OSError as exc:
            if (
                self.family in _INET
                and self.type == _stdlib_socket.SOCK_STREAM
                and exc.errno is not None
                and resolved is not None
                and exc.errno not in _CONNECT_FAILS_AT_ONCE
            ):
                # trio's wording, for the errors a TCP connect reports once
                # under way (trio raises connect(2)'s own error otherwise)
                raise OSError(exc.errno, f"Error connecting to {resolved!r}: {os.strerror(exc.errno)}") from None
            raise
        if addrlen < 0:
            # outside the handlers above: trio's own errors and cancellation
            await super().connect(resolved)

    # ---- receiving ---------------------------------------------------------------------

    def _target(self, flags: object, refused: int) -> tuple[UringIOManager, int] | None:
        """``(manager, fd)`` if this call goes to io_uring with these flags
        (none of the bits in ``refused``)."""
        m = self._uring()
        if m is None or not _plain_int(flags) or flags & refused:  # type: ignore[operator]
            return None
        fd = self._sock.fileno()
        return (m, fd) if fd >= 0 else None

    # Every receive first asks the socket directly, as trio does: the data
    # is usually there already when a busy connection comes back to receive
    # (its peer answered while this task was sending and yielding), and one
    # recv(2) costs far less than a RECV's trip through the ring.  The
    # stdlib call also checks the arguments, with the stdlib's errors.  Only
    # if it would block does the task park, on one io_uring request -- no
    # readiness poll and no second system call.

    async def recv(self, buflen: int, flags: int = 0, /) -> bytes:
        """Like :meth:`socket.socket.recv`: ``recv(2)`` at once, or an io_uring
        RECV into a provided buffer (no memory held while it waits)."""
        # The hottest path of all (SocketStream.receive_some): _target and
        # _now written out.
        m = self._uring()
        sock = self._sock
        if m is None or type(flags) is not int or flags & _NOT_RECV_FLAGS:
            return await super().recv(buflen, flags)  # type: ignore[no-any-return]
        if not m.force_ring:
            await checkpoint_if_cancelled()
            try:
                data: bytes = sock.recv(buflen, flags)
            except BlockingIOError:
                pass
            except BaseException:
                await cancel_shielded_checkpoint()
                raise
            else:
                await cancel_shielded_checkpoint()
                return data
        fd = sock.fileno()
        if not buflen or fd < 0:
            return await super().recv(buflen, flags)  # type: ignore[no-any-return]
        received, _more = await _sockops.recv(m, fd, buflen, flags & _WAIT, sock.recv)
        return received

    async def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        target = self._target(flags, _NOT_RECV_FLAGS)
        if target is not None:
            n = await self._now(target[0], self._sock.recv_into, buffer, nbytes, flags)
            if n is not None:
                return int(n)
            pin = _pin_into(buffer, nbytes)
            if pin is not None:
                return await _sockops.recv_into(*target, pin, pin.length, flags & _WAIT)
        return await super().recv_into(buffer, nbytes, flags)  # type: ignore[no-any-return]

    async def recvfrom(self, bufsize: int, flags: int = 0, /) -> tuple[bytes, Any]:
        target = self._target(flags, _NOT_RECV_FLAGS)
        if target is not None:
            got = await self._now(target[0], self._sock.recvfrom, bufsize, flags)
            if got is not None:
                return got  # type: ignore[no-any-return]
            if bufsize:
                data, _anc, _flags, address = await _sockops.recvmsg_bytes(*target, bufsize, 0, flags & _WAIT)
                return data, address
        return await super().recvfrom(bufsize, flags)  # type: ignore[no-any-return]

    async def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        target = self._target(flags, _NOT_RECV_FLAGS)
        if target is not None:
            got = await self._now(target[0], self._sock.recvfrom_into, buffer, nbytes, flags)
            if got is not None:
                return got  # type: ignore[no-any-return]
            pin = _pin_into(buffer, nbytes)
            if pin is not None:
                nread, _anc, _flags, address = await _sockops.recvmsg(*target, [pin], 0, flags & _WAIT)
                return nread, address
        return await super().recvfrom_into(buffer, nbytes, flags)  # type: ignore[no-any-return]

    async def recvmsg(
        self, bufsize: int, ancbufsize: int = 0, flags: int = 0, /
    ) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
        target = self._target(flags, _NOT_RECV_FLAGS)
        if target is not None:
            got = await self._now(target[0], self._sock.recvmsg, bufsize, ancbufsize, flags)
            if got is not None:
                return got  # type: ignore[no-any-return]
            if bufsize:
                return await _sockops.recvmsg_bytes(*target, bufsize, ancbufsize, flags & _WAIT)
        return await super().recvmsg(bufsize, ancbufsize, flags)  # type: ignore[no-any-return]

    async def recvmsg_into(
        self, buffers: Iterable[Any], ancbufsize: int = 0, flags: int = 0, /
    ) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
        target = self._target(flags, _NOT_RECV_FLAGS)
        if target is not None:
            try:
                buffers = list(buffers)
            except TypeError:
                pass
            else:
                got = await self._now(target[0], self._sock.recvmsg_into, buffers, ancbufsize, flags)
                if got is not None:
                    return got  # type: ignore[no-any-return]
                pins = [k.Buffer(b, writable=True) for b in buffers]
                return await _sockops.recvmsg(*target, pins, ancbufsize, flags & _WAIT)
        return await super().recvmsg_into(buffers, ancbufsize, flags)  # type: ignore[no-any-return]

    # ---- sending ------------------------------------------------------------------------

    async def _now(self, m: UringIOManager, call: Callable[..., Any], *args: Any) -> Any:
        """The system call at once, as trio does (:func:`._sockops.syscall_first`).
        None if it would block, or if every operation must be an io_uring
        request (``m.force_ring``, under trio_uring.testing)."""
        if m.force_ring:
            return None
        return await _sockops.syscall_first(call, *args)

    async def send(self, data: Any, flags: int = 0, /) -> int:
        """Like :meth:`socket.socket.send`.  The data is offered to the
        socket at once (one ``send(2)``); only if the socket's buffer is
        full does the task park on an io_uring SEND, which sends as soon as
        there is room.  A send that waits until the end of the scheduler
        tick would hold every reply back until the whole tick has run."""
        # Hot (SocketStream.send_all): _target and _now written out.
        m = self._uring()
        sock = self._sock
        if m is None or type(flags) is not int or flags & _NOT_SEND_FLAGS:
            return await super().send(data, flags)  # type: ignore[no-any-return]
        if not m.force_ring:
            await checkpoint_if_cancelled()
            try:
                sent: int = sock.send(data, flags)
            except BlockingIOError:
                pass
            except BaseException:
                await cancel_shielded_checkpoint()
                raise
            else:
                await cancel_shielded_checkpoint()
                return sent
        fd = sock.fileno()
        if fd < 0:
            return await super().send(data, flags)  # type: ignore[no-any-return]
        # send(2) accepted the arguments (or, under force_ring, we pin them)
        return await _sockops.send(m, fd, k.Buffer(data, writable=False), flags & _WAIT)

    async def sendto(self, *args: Any) -> int:
        """Like :meth:`socket.socket.sendto`: ``sendto(2)`` at once, an
        io_uring SENDMSG naming the destination if the buffer is full."""
        if len(args) not in (2, 3) or self._target(args[1] if len(args) == 3 else 0, _NOT_SEND_FLAGS) is None:
            return await super().sendto(*args)  # type: ignore[no-any-return]
        data, flags = args[0], (args[1] if len(args) == 3 else 0)
        address = await self._resolve_address_nocp(args[-1], local=False)
        return await self._sendmsg([data], [], flags, address, self._sock.sendto, data, flags, address)

    async def sendmsg(
        self,
        buffers: Iterable[Any],
        ancdata: Iterable[tuple[int, int, Any]] = (),
        flags: int = 0,
        address: Any = None,
        /,
    ) -> int:
        """Like :meth:`socket.socket.sendmsg`: ``sendmsg(2)`` at once, an
        io_uring SENDMSG if the buffer is full."""
        if self._target(flags, _NOT_SEND_FLAGS) is None:
            return await super().sendmsg(buffers, ancdata, flags, address)  # type: ignore[no-any-return]
        try:
            buffers = list(buffers)
            ancdata = list(ancdata)
        except TypeError:
            return await super().sendmsg(buffers, ancdata, flags, address)  # type: ignore[no-any-return]
        if address is not None:
            address = await self._resolve_address_nocp(address, local=False)
        return await self._sendmsg(
            buffers, ancdata, flags, address, self._sock.sendmsg, buffers, ancdata, flags, address
        )

    async def _sendmsg(
        self,
        buffers: list[Any],
        ancdata: list[tuple[int, int, Any]],
        flags: int,
        address: Any,
        send: Callable[..., int],
        *args: Any,
    ) -> int:
        target = self._target(flags, _NOT_SEND_FLAGS)
        if target is None:  # pragma: no cover - checked by the callers
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        sent = await self._now(target[0], send, *args)
        if sent is not None:
            return int(sent)
        # The system call accepted the arguments, so they pin and pack.
        pins = [k.Buffer(b, writable=False) for b in buffers]
        items, control_len = control_space(ancdata)
        return await _sockops.sendmsg(*target, pins, items, control_len, flags & _WAIT, self.family, address)


def _pin_into(buffer: Any, nbytes: object) -> k.Buffer | None:
    """Pin the first ``nbytes`` (0: all) of a writable buffer, or None if
    trio's method should handle (and reject) the arguments."""
    if type(nbytes) is not int or nbytes < 0:
        return None
    try:
        pin = k.Buffer(buffer, writable=True)
    except (TypeError, BufferError):
        return None
    n = nbytes or pin.length
    if not 0 < n <= pin.length:
        return None
    if n < pin.length:
        pin = k.Buffer(memoryview(buffer).cast("B")[:n], writable=True)
    return pin


# ---- making trio construct UringSocket ---------------------------------------------------

_patch_lock = threading.Lock()


def patch_trio() -> None:
    """Make trio construct :class:`UringSocket` for every new socket."""
    with _patch_lock:
        _compat.socket_module._SocketType = UringSocket
        _stream.patch(UringSocket)


def unpatch_trio() -> None:
    """Give trio back its own socket class (for sockets made from now on)."""
    with _patch_lock:
        if getattr(_compat.socket_module, "_SocketType", None) is UringSocket:
            _compat.socket_module._SocketType = _TrioSocketType
            _stream.unpatch()
