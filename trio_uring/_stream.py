"""``trio.SocketStream.receive_some`` and ``send_all``, written out for
:class:`~trio_uring.socket.UringSocket`.

A round trip through ``SocketStream`` on stock trio costs about twice the
two system calls and two checkpoints it is made of: the socket method's own
coroutine, a ``@contextmanager`` generator translating ``OSError`` into
stream errors, the conflict detector's ``with``, and a ``memoryview`` slice
per ``send``.  While trio_uring is installed, the two hot methods of
``trio.SocketStream`` are these functions: for a :class:`UringSocket`
inside a trio_uring run they do the same steps inline -- the cancel check,
``recv(2)``/``send(2)``, the schedule point, the io_uring request only if
the call would block -- and raise the same exceptions from the same
causes.  Anything else (another socket class, a stock run, unusual
arguments, a second task in ``send_all``, empty data) runs trio's own
method, unchanged.  :func:`patch` and :func:`unpatch` are called with the
socket class's patching.
"""

from __future__ import annotations

import socket as _stdlib_socket
from typing import Any, Final

import trio
from trio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled

from . import _kernel as k
from . import _sockops
from . import _trio_compat as _compat
from ._manager import UringIOManager

__all__ = ["patch", "unpatch"]

_trio_run: Final = _compat.run_module
_SocketStream: Final = _compat.SocketStream
_trio_receive_some: Final = _SocketStream.receive_some
_trio_send_all: Final = _SocketStream.send_all
_DEFAULT_RECEIVE_SIZE: Final = _compat.DEFAULT_RECEIVE_SIZE
_CLOSED_ERRNOS: Final = _compat.CLOSED_STREAM_ERRNOS
_PLAIN_SOCKET: Final = _stdlib_socket.socket
_PLAIN_DATA: Final = (bytes, bytearray)
_PLAIN_SIZE: Final = (int, type(None))
_uring_socket: Any = None


def _translated(exc: OSError) -> BaseException:
    """What ``_translate_socket_errors_to_stream_errors`` raises for ``exc``
    (the caller raises it ``from exc``, or ``from None`` when closed)."""
    if exc.errno in _CLOSED_ERRNOS:
        return trio.ClosedResourceError("this socket was already closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")


def _raise_translated(exc: OSError) -> None:
    new = _translated(exc)
    if isinstance(new, trio.ClosedResourceError):
        raise new from None
    raise new from exc


def _manager(stream: Any) -> UringIOManager | None:
    sock: Any = stream.socket
    if type(sock) is not _uring_socket:
        return None
    try:
        m: object = _trio_run.GLOBAL_RUN_CONTEXT.runner.io_manager
    except AttributeError:
        return None
    if type(m) is UringIOManager and m.socket_ops and not m.force_ring and type(sock._sock) is _PLAIN_SOCKET:
        return m
    return None


async def receive_some(self: Any, max_bytes: int | None = None) -> bytes:
    m = _manager(self)
    if m is None or type(max_bytes) not in _PLAIN_SIZE:
        return await _trio_receive_some(self, max_bytes)
    if max_bytes is None:
        max_bytes = _DEFAULT_RECEIVE_SIZE
    elif max_bytes < 1:
        raise ValueError("max_bytes must be >= 1")
    sock = self.socket._sock
    await checkpoint_if_cancelled()
    try:
        data: bytes = sock.recv(max_bytes)
    except BlockingIOError:
        pass
    except OSError as exc:
        await cancel_shielded_checkpoint()
        _raise_translated(exc)
    except BaseException:
        await cancel_shielded_checkpoint()
        raise
    else:
        await cancel_shielded_checkpoint()
        return data
    # Nothing there: park on one io_uring RECV (UringSocket.recv's path).
    try:
        received, _more = await _sockops.recv(m, sock.fileno(), max_bytes, 0, sock.recv)
    except OSError as exc:
        _raise_translated(exc)
    return received


async def send_all(self: Any, data: Any) -> None:
    m = _manager(self)
    detector = self._send_conflict_detector
    if m is None or type(data) not in _PLAIN_DATA or not data or detector._held or self.socket.did_shutdown_SHUT_WR:
        return await _trio_send_all(self, data)
    sock = self.socket._sock
    detector._held = True
    try:
        await checkpoint_if_cancelled()
        try:
            sent: int = sock.send(data)
        except BlockingIOError:
            sent = -1
        except OSError as exc:
            await cancel_shielded_checkpoint()
            _raise_translated(exc)
        except BaseException:
            await cancel_shielded_checkpoint()
            raise
        if sent == len(data):
            await cancel_shielded_checkpoint()
            return
        # The rest as trio's loop does it, one socket.send (a checkpoint)
        # at a time: the first one is either parked (would block: an
        # io_uring SEND) or done (a short send: its schedule point now).
        with memoryview(data) as view:
            try:
                if sent < 0:
                    sent = await _sockops.send(m, sock.fileno(), k.Buffer(view, writable=False), 0)
                else:
                    await cancel_shielded_checkpoint()
                total = sent
                send = self.socket.send
                while total < len(view):
                    with view[total:] as remaining:
                        total += await send(remaining)
            except OSError as exc:
                _raise_translated(exc)
    finally:
        detector._held = False


receive_some.__doc__ = _trio_receive_some.__doc__
send_all.__doc__ = _trio_send_all.__doc__


def patch(uring_socket: type) -> None:
    """Make ``trio.SocketStream`` use these methods (idempotent).  A method
    someone else has already replaced (a test's monkeypatch) is left alone."""
    global _uring_socket
    _uring_socket = uring_socket
    if _SocketStream.receive_some is _trio_receive_some:
        _SocketStream.receive_some = receive_some  # type: ignore[method-assign]
    if _SocketStream.send_all is _trio_send_all:
        _SocketStream.send_all = send_all  # type: ignore[method-assign]


def unpatch() -> None:
    """Give ``trio.SocketStream`` its own methods back (where they are still ours)."""
    if _SocketStream.receive_some is receive_some:
        _SocketStream.receive_some = _trio_receive_some  # type: ignore[method-assign]
    if _SocketStream.send_all is send_all:
        _SocketStream.send_all = _trio_send_all  # type: ignore[method-assign]
