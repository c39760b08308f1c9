"""The running Python's own exception for a misuse, raised by the stdlib.

trio_uring validates arguments itself (the kernel must never see a bad
pointer), but the exception a user gets has to be the one ``os``, ``io`` or
``socket`` raises for the same misuse *on the Python that is running*: their
wording changes between releases (3.12 says ``readinto() argument 1 must
be ...`` where 3.11 said ``argument must be``; 3.13 names the function and the
argument in ``stat: embedded null character in path``).  So instead of copying
one release's text, each helper here hands the offending argument to the
stdlib function whose behaviour we mirror, at a point where it refuses it
before doing any I/O, and returns what it raised.
"""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Callable
from typing import Any


def raised_by(func: Callable[..., object], *args: Any, fallback: Exception) -> Exception:
    """The exception ``func(*args)`` raises for a bad argument, without its
    traceback; ``fallback`` if it accepted the arguments instead (a future
    stdlib might) and so raised nothing or failed in the system call."""
    try:
        func(*args)
    except (TypeError, ValueError, OverflowError, BufferError) as exc:
        return exc.with_traceback(None)
    except OSError:
        pass
    return fallback


def null_in_path(like: Callable[..., object], *paths: Any) -> Exception:
    """The ValueError ``like(*paths)`` raises for a path holding a NUL
    (``os.open``, ``os.stat``, ``os.rename`` ... check their path arguments
    before the system call, so nothing is touched)."""
    return raised_by(like, *paths, fallback=ValueError("embedded null byte"))


def _fileio_call(mode: str, method: str, *args: Any) -> object:
    with io.FileIO(os.devnull, mode) as f:  # /dev/null: harmless even if it accepted args
        return getattr(f, method)(*args)


def fileio_refuses(mode: str, method: str, *args: Any) -> Exception:
    """What ``io.FileIO(..., mode).<method>(*args)`` raises: a bad argument
    (readinto with a read-only buffer, read with a str size, write with a
    str), or ``io.UnsupportedOperation`` for a method the mode does not allow."""
    try:
        _fileio_call(mode, method, *args)
    except io.UnsupportedOperation as exc:
        return exc.with_traceback(None)
    except (TypeError, ValueError, OverflowError, BufferError) as exc:
        return exc.with_traceback(None)
    except OSError:
        pass
    return TypeError(f"{method}(): bad argument")


def _socket_call(method: str, *args: Any) -> object:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.setblocking(False)  # an unbound socket: EAGAIN at worst, never a wait
        return getattr(s, method)(*args)


def _address_call(method: str, family: int, address: Any) -> object:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        if method == "connect":
            s.connect(address)
            return None
        if method == "sendto":
            return s.sendto(b"", address)
        return s.sendmsg([b""], [], 0, address)


def address_refused(method: str, family: int, address: Any, fallback: Exception) -> Exception:
    """What ``socket.<method>`` (connect, sendto, sendmsg) raises for an
    AF_INET/AF_INET6 ``address`` it cannot encode (a port out of range, ...),
    asked of a throwaway UDP socket: CPython checks the address before the
    system call, so nothing is sent."""
    return raised_by(_address_call, method, family, address, fallback=fallback)


def socket_refuses(method: str, *args: Any) -> Exception:
    """What ``socket.socket.<method>(*args)`` raises (recv_into with a
    read-only buffer, recvmsg_into with one, ...)."""
    return raised_by(_socket_call, method, *args, fallback=TypeError(f"{method}() argument 1 must be read-write"))
