"""trio's private hooks, found by their shape rather than by trio's version.

trio_uring replaces private pieces of trio (the list below).  They have had
the same shape from trio 0.27 to 0.35, the releases tested
(docs/conformance.md), but nothing promises that for the next release.  So
this module, the only one that imports trio's private modules, looks each
piece up when trio_uring is imported and never fails doing so: a piece that
is missing gets a harmless stand-in and its name goes into
:data:`MISSING`.  :func:`check_trio` (called before anything is installed,
from ``check_machine``) then raises :class:`UnsupportedError` naming the trio
version and the missing pieces, so such a trio is refused before a run
starts (or, with ``install(fallback=True)``, left on its own backend with a
warning), never broken in the middle of one.  A trio newer than the tested
range whose pieces all have the right shape runs, with one warning.

The hooks, and what "the right shape" means for each:

- ``trio._core._run.TheIOManager``: a class with the IO-manager methods, which
  ``setup_runner`` looks up by name at every run (so replacing it works);
  ``GLOBAL_RUN_CONTEXT`` and ``start_guest_run`` beside it.
- ``trio._socket._SocketType``: the class ``from_stdlib_socket`` constructs
  by name (every trio socket), wrapping the stdlib socket as ``_sock``.
- ``trio._highlevel_socket.SocketStream``: ``receive_some``/``send_all`` to
  replace, ``DEFAULT_RECEIVE_SIZE`` and ``_closed_stream_errnos``.
- ``trio._file_io``: ``AsyncIOWrapper`` and its ``_FILE_SYNC_ATTRS`` /
  ``_FILE_ASYNC_METHODS``.
- ``trio._core._io_epoll.EpollIOManager`` (run in threads trio_uring does not
  own) and ``trio._core._wakeup_socketpair.WakeupSocketpair`` (guest mode).
- statistics: ``Runner.current_statistics`` asks ``io_manager.statistics()``.
"""

from __future__ import annotations

import functools
import importlib
import io
import re
import threading
import warnings
from types import ModuleType
from typing import Any, Final

import trio

from ._support import UnsupportedError

__all__ = ["MISSING", "TESTED", "TRIO_VERSION", "UntestedTrioWarning", "check_trio"]

#: the trio releases trio_uring was tested against (docs/conformance.md)
TESTED: Final = ("0.27.0", "0.35.0")
TRIO_VERSION: Final[str] = getattr(trio, "__version__", "unknown")
#: the IO-manager protocol: what trio's runner calls on TheIOManager()
IO_MANAGER_METHODS: Final = (
    "close",
    "force_wakeup",
    "get_events",
    "notify_closing",
    "process_events",
    "statistics",
    "wait_readable",
    "wait_writable",
)

#: the hooks not found in the installed trio (empty when all are there)
MISSING: list[str] = []


class UntestedTrioWarning(RuntimeWarning):
    """The installed trio is newer than any trio_uring was tested against."""


class _Stand_in:
    pass


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        MISSING.append(name)
        return None


def _attr(module: ModuleType | None, name: str, default: Any) -> Any:
    if module is not None and hasattr(module, name):
        return getattr(module, name)
    MISSING.append(f"{module.__name__ if module else '?'}.{name}")
    return default


def _uses(owner: Any, function: str, name: str) -> None:
    """Record ``owner.function`` as missing its hook unless its code looks ``name`` up."""
    code = getattr(getattr(owner, function, None), "__code__", None)
    if code is None or name not in code.co_names:
        MISSING.append(f"{getattr(owner, '__name__', '?')}.{function} looking up {name}")


run_module: Final[Any] = _module("trio._core._run")
socket_module: Final[Any] = _module("trio._socket")
highlevel_socket: Final = _module("trio._highlevel_socket")
file_io: Final = _module("trio._file_io")
_io_epoll: Final = _module("trio._core._io_epoll")
_wakeup: Final = _module("trio._core._wakeup_socketpair")

STOCK_IO_MANAGER: Final[Any] = _attr(_io_epoll, "EpollIOManager", _Stand_in)
WakeupSocketpair: Final[Any] = _attr(_wakeup, "WakeupSocketpair", _Stand_in)
_attr(run_module, "TheIOManager", None)
_attr(run_module, "GLOBAL_RUN_CONTEXT", None)
#: the code of trio's start_guest_run: guest mode is recognised by it on the stack
GUEST_RUN_CODE: Final[Any] = getattr(_attr(run_module, "start_guest_run", None), "__code__", None)
_uses(run_module, "setup_runner", "TheIOManager")
_uses(socket_module, "from_stdlib_socket", "_SocketType")
for _m in IO_MANAGER_METHODS:
    if not callable(getattr(STOCK_IO_MANAGER, _m, None)):
        MISSING.append(f"EpollIOManager.{_m}")

#: trio's class behind every trio socket (UringSocket subclasses it)
SocketType: Final[Any] = _attr(socket_module, "_SocketType", trio.socket.SocketType)
_uses(SocketType, "__init__", "_sock")

SocketStream: Final = trio.SocketStream
for _m in ("receive_some", "send_all"):
    if not callable(getattr(SocketStream, _m, None)):
        MISSING.append(f"SocketStream.{_m}")
DEFAULT_RECEIVE_SIZE: Final[int] = _attr(highlevel_socket, "DEFAULT_RECEIVE_SIZE", 65536)
CLOSED_STREAM_ERRNOS: Final[frozenset[int]] = frozenset(_attr(highlevel_socket, "_closed_stream_errnos", ()))

#: trio's file wrapper (UringFile subclasses it); the class trio.wrap_file returns
AsyncIOWrapper: Final[Any] = _attr(file_io, "AsyncIOWrapper", type(trio.wrap_file(io.BytesIO())))
FILE_SYNC_ATTRS: Final[Any] = _attr(file_io, "_FILE_SYNC_ATTRS", frozenset())
FILE_ASYNC_METHODS: Final[Any] = _attr(file_io, "_FILE_ASYNC_METHODS", frozenset())

_uses(_attr(run_module, "Runner", None), "current_statistics", "statistics")


@functools.cache
def missing_hooks() -> tuple[str, ...]:
    """The hooks this trio lacks: :data:`MISSING`, and any method trio's
    own IO manager has that trio_uring's lacks (what a newer trio's runner
    might call)."""
    from ._manager import UringIOManager

    stock = STOCK_IO_MANAGER
    protocol = [name for name in dir(stock) if not name.startswith("_") and callable(getattr(stock, name))]
    return (*MISSING, *(f"IO manager method {name}" for name in protocol if not hasattr(UringIOManager, name)))


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3])


_warned = False
_warn_lock = threading.Lock()


def check_trio() -> None:
    """Raise :class:`UnsupportedError` if the installed trio lacks a hook
    trio_uring needs; warn once (:class:`UntestedTrioWarning`) if it has
    them all but is newer than the tested range."""
    global _warned
    missing = missing_hooks()
    if missing:
        raise UnsupportedError(
            "trio-version",
            f"trio {TRIO_VERSION} does not have the private hooks trio_uring replaces "
            f"(missing: {', '.join(missing)}); trio_uring is tested with trio {TESTED[0]} to {TESTED[1]}",
            f"install a trio in that range (pip install 'trio>={TESTED[0]},<={TESTED[1]}'), look for a newer "
            "trio_uring, or keep trio's own backend (trio_uring.install(fallback=True))",
        )
    if _warned:
        return
    try:
        newer = _release(TRIO_VERSION) > _release(TESTED[1])
    except ValueError:
        newer = True
    with _warn_lock:
        if newer and not _warned:
            _warned = True
            warnings.warn(
                f"trio {TRIO_VERSION} is newer than the trio releases trio_uring was tested with "
                f"({TESTED[0]} to {TESTED[1]}); its private hooks have the expected shape, so trio_uring "
                "runs on it, untested",
                UntestedTrioWarning,
                stacklevel=3,
            )
