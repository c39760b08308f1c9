"""Running anyio programs on trio_uring.

anyio has no way to add a backend name of one's own.  ``anyio.run(main,
backend=name)`` looks the name up with ``get_async_backend(name)``, which
imports ``anyio._backends._<name>``: a module in anyio's private package.
There is no entry point and no registry.  ``get_all_backends()`` returns the
built-in tuple ``BACKENDS = ("asyncio", "trio")``, and anyio's pytest plugin
parametrizes ``anyio_backend`` over that tuple.  ``backend_options`` become
``trio.run``'s keyword arguments, and none of those picks the IO manager.
Putting a module into ``anyio._backends`` would therefore use anyio's
internals, not an extension point, and trio_uring does not do it.

What anyio does support is running anyio code under the backend library's
own ``run()`` (its "Running AnyIO programs" page shows ``trio.run(main)``).
Inside any trio task ``sniffio.current_async_library()`` is ``"trio"``, so
anyio uses its trio backend, on whatever IO manager the run has.  That gives
three ways to run anyio code on io_uring, none of which names a backend:

- ``trio_uring.run(main)``: trio's own ``run()`` on io_uring;
- :func:`anyio_run`: ``anyio.run(main, backend="trio")`` on io_uring, for
  this call and this thread only;
- ``trio_uring.install()`` / ``installed()`` / ``pytest --trio-uring``, after
  which every ``anyio.run(..., backend="trio")`` is on io_uring.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, TypeVarTuple, Unpack

from ._install import this_thread

__all__ = ["anyio_run"]

RetT = TypeVar("RetT")
PosArgsT = TypeVarTuple("PosArgsT")


def anyio_run(
    func: Callable[[Unpack[PosArgsT]], Awaitable[RetT]],
    *args: *PosArgsT,
    backend_options: dict[str, Any] | None = None,
) -> RetT:
    """``anyio.run(func, *args, backend="trio", backend_options=...)`` on io_uring.

    Like :func:`trio_uring.run`, it affects only this call: ``trio.run`` calls
    made by other threads meanwhile keep trio's own backend, and nothing stays
    installed afterwards.  ``backend_options`` are anyio's options for its
    trio backend, which passes them to ``trio.run``.

    :raises UnsupportedError: if io_uring cannot be used here.
    :raises ModuleNotFoundError: if anyio is not installed
        (``pip install 'trio_uring[anyio]'``).
    """
    import anyio

    with this_thread():
        return anyio.run(func, *args, backend="trio", backend_options=backend_options)
