"""Putting UringIOManager where trio looks for its IO manager.

trio's ``setup_runner`` constructs ``trio._core._run.TheIOManager()`` at the
start of every run (``trio.run``, ``start_guest_run``, and so
``anyio.run(backend="trio")`` and pytest-trio).  Installing trio_uring sets
that name to :class:`UringIOManager`; uninstalling restores trio's own class.
Likewise ``trio._socket._SocketType``, the class behind every trio socket,
becomes :class:`trio_uring.socket.UringSocket` (see that module).

``trio_uring.run`` must not change the backend of runs in *other* threads,
so installation is counted: a global ``install()`` plus one count per active
``trio_uring.run`` thread.  While only the latter are active,
``UringIOManager.__new__`` hands trio's own manager to any other thread.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import trio

from ._anyio_files import hook_anyio, unhook_anyio
from ._manager import UringIOManager, installation
from ._support import UnsupportedError, check_machine, check_support
from ._trio_compat import STOCK_IO_MANAGER
from ._trio_compat import run_module as _trio_run
from .socket import patch_trio, unpatch_trio

__all__ = ["install", "installed", "is_installed", "run", "uninstall"]

RetT = TypeVar("RetT")


def _activate() -> None:
    setattr(_trio_run, "TheIOManager", UringIOManager)  # noqa: B010 - trio's private hook
    patch_trio()
    hook_anyio()


def _deactivate_if_unused() -> None:
    if installation.globally or installation.runs:
        return
    if getattr(_trio_run, "TheIOManager", None) is UringIOManager:  # only undo what _activate did
        setattr(_trio_run, "TheIOManager", STOCK_IO_MANAGER)  # noqa: B010
    unpatch_trio()
    unhook_anyio()


def is_installed() -> bool:
    """True while :func:`install` is in effect."""
    return installation.globally


def install(*, fallback: bool = False) -> bool:
    """Make every later ``trio.run`` (and ``anyio.run(backend="trio")``,
    pytest-trio, guest mode) use io_uring, until :func:`uninstall`.

    Checks support first and raises :class:`UnsupportedError` if io_uring
    cannot be used here.  With ``fallback=True`` it instead warns (naming the
    cause), leaves trio's own backend in place and returns False; a later run
    that cannot create its ring also warns and runs on trio's own backend.
    """
    try:
        check_support()
    except UnsupportedError as exc:
        if not fallback:
            raise
        warnings.warn(f"trio_uring not installed, trio's own backend stays in use: {exc}", RuntimeWarning, stacklevel=2)
        return False
    with installation.lock:
        installation.globally = True
        installation.fallback = fallback
        _activate()
    return True


def uninstall() -> None:
    """Undo :func:`install`.  Runs already under way keep their manager."""
    with installation.lock:
        installation.globally = False
        installation.fallback = False
        _deactivate_if_unused()


@contextlib.contextmanager
def installed(*, fallback: bool = False) -> Iterator[bool]:
    """``with trio_uring.installed(): ...`` installs for the block's duration;
    the value is what :func:`install` returned."""
    was = installation.globally
    ok = install(fallback=fallback)
    try:
        yield ok
    finally:
        if not was:
            uninstall()


def run(async_fn: Callable[..., Awaitable[RetT]], *args: object, **trio_run_kwargs: Any) -> RetT:
    """``trio.run(async_fn, *args, **trio_run_kwargs)`` on io_uring.

    Raises :class:`UnsupportedError` (before running anything) if io_uring
    cannot be used here.  Other threads' ``trio.run`` calls are unaffected.
    """
    with this_thread():
        return trio.run(async_fn, *args, **trio_run_kwargs)


@contextlib.contextmanager
def this_thread() -> Iterator[None]:
    """Every trio run that this thread starts inside the block is on io_uring
    (one count of the installation, see the module docstring); other threads'
    runs are unaffected.  What :func:`run` and :func:`trio_uring.anyio_run`
    run inside."""
    check_machine()
    tls = installation.tls
    with installation.lock:
        installation.runs += 1
        _activate()
    tls.depth = getattr(tls, "depth", 0) + 1
    try:
        yield
    finally:
        tls.depth -= 1
        with installation.lock:
            installation.runs -= 1
            _deactivate_if_unused()
