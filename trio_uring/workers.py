"""Serving on every core: N supervised worker processes, each with its own ring.

A trio program runs on one core.  To use a machine, servers run several
worker processes; these functions do it the way gunicorn and hypercorn do,
for trio programs::

    import trio_uring.workers

    async def echo(stream):
        async for data in stream:
            await stream.send_all(data)

    if __name__ == "__main__":
        trio_uring.workers.serve_tcp_workers(echo, 8000, workers=4, cpus="auto", incoming_cpu=True)

- Each worker is a process (multiprocessing, ``spawn`` by default) with its
  own trio run on io_uring: its own ring, its own ``SO_REUSEPORT`` listening
  socket on the shared port (the kernel spreads connections over them).
- ``cpus`` pins worker *i* to ``cpus[i % len(cpus)]`` (``"auto"``: the CPUs
  this process may run on, in order); ``incoming_cpu=True`` also sets
  ``SO_INCOMING_CPU`` on each worker's listener, so that (Linux 6.2+) a
  connection goes to the worker on the CPU that received it.
- Supervision (:mod:`trio_uring._supervisor`): a worker that dies is
  restarted with a back-off; one that keeps dying stops the server with
  :class:`WorkersFailed`.  SIGINT or SIGTERM stops every worker gracefully:
  each stops accepting, lets its running handlers finish for up to
  ``grace_period`` seconds, then cancels them.  No worker outlives the
  supervisor, even one killed with SIGKILL.
- The call returns once every worker has exited, and raises
  :class:`WorkersFailed` if any worker ever failed (exited non-zero, was
  killed), so a script's exit status says whether anything failed.

This is a side room: it uses trio_uring's public surface (``run``) like any
program would; the IO manager knows nothing about workers.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

import trio

from ._reuseport import Reservation, check_port, open_reuseport_listeners
from ._supervisor import Supervisor, WorkersFailed, logger
from ._support import UnsupportedError, check_support
from ._worker_process import Worker, WorkerSpec

__all__ = ["Worker", "WorkersFailed", "open_reuseport_listeners", "run_workers", "serve_tcp_workers"]

#: how long after ``grace_period`` a worker that has not exited is killed
KILL_MARGIN = 5.0
Backend = Literal["io_uring", "trio"]


def run_workers(
    main: Callable[[Worker], Awaitable[object]],
    *,
    workers: int,
    port: int | None = None,
    host: str | None = None,
    cpus: Sequence[int] | Literal["auto"] | None = None,
    incoming_cpu: bool = False,
    grace_period: float = 10.0,
    max_restarts: int = 5,
    restart_window: float = 60.0,
    backend: Backend = "io_uring",
    fallback: bool = False,
    start_method: str = "spawn",
) -> None:
    """Run ``await main(worker)`` in ``workers`` supervised processes, each in a
    trio run of its own, until every ``main`` has returned or a signal stops them.

    ``worker`` is a :class:`Worker`: its ``index``, ``cpu``, the reserved
    ``port``, ``stopping`` (a :class:`trio.Event` set by SIGINT/SIGTERM: stop
    taking work and return; ``main`` is cancelled ``grace_period`` seconds
    later) and :meth:`Worker.open_listeners`.  With ``port``, the supervisor
    reserves it first (0: an ephemeral one, the same for every worker), so a
    port in use raises :class:`OSError` (EADDRINUSE) before any process starts.

    A ``main`` that raises is restarted, after 0.1 s, 0.2 s, 0.4 s, ...; more
    than ``max_restarts`` restarts of one worker within ``restart_window``
    seconds stop everything with :class:`WorkersFailed`.  ``backend="trio"``
    runs the workers on trio's own backend (for comparisons); ``fallback=True``
    does so, after one warning, where io_uring is unavailable (otherwise:
    :class:`UnsupportedError`).  ``main`` must be picklable (a module-level
    function, or a :func:`functools.partial` of one) for the ``spawn`` and
    ``forkserver`` start methods, and the script that calls this needs the
    ``if __name__ == "__main__":`` guard, as for any multiprocessing program.
    """
    _supervise(
        main,
        workers=workers,
        port=port,
        host=host,
        cpus=cpus,
        incoming_cpu=incoming_cpu,
        grace_period=grace_period,
        max_restarts=max_restarts,
        restart_window=restart_window,
        backend=backend,
        fallback=fallback,
        start_method=start_method,
        restart_always=False,
    )


def serve_tcp_workers(
    handler: Callable[[trio.SocketStream], Awaitable[object]],
    port: int,
    *,
    workers: int,
    host: str | None = None,
    cpus: Sequence[int] | Literal["auto"] | None = None,
    incoming_cpu: bool = False,
    backlog: int | None = None,
    grace_period: float = 10.0,
    max_restarts: int = 5,
    restart_window: float = 60.0,
    backend: Backend = "io_uring",
    fallback: bool = False,
    start_method: str = "spawn",
) -> None:
    """``trio.serve_tcp(handler, port, host=host)`` in ``workers`` processes,
    each with its own SO_REUSEPORT listener on ``port``: see the module
    docstring and :func:`run_workers` for the arguments.  A worker that exits
    for any reason while the server runs is restarted.  On SIGINT/SIGTERM each
    worker closes its listeners, waits up to ``grace_period`` seconds for its
    handlers to return, cancels those still running, and exits."""
    _supervise(
        functools.partial(_serve, handler, backlog),
        workers=workers,
        port=check_port(port),
        host=host,
        cpus=cpus,
        incoming_cpu=incoming_cpu,
        grace_period=grace_period,
        max_restarts=max_restarts,
        restart_window=restart_window,
        backend=backend,
        fallback=fallback,
        start_method=start_method,
        restart_always=True,
    )


async def _serve(
    handler: Callable[[trio.SocketStream], Awaitable[object]], backlog: int | None, worker: Worker
) -> None:
    listeners = await worker.open_listeners(backlog=backlog)
    async with trio.open_nursery() as handlers:
        with trio.CancelScope() as accepting:
            handlers.start_soon(_cancel_when_set, worker.stopping, accepting)
            # serve_listeners closes each listener as its accept loop ends
            await trio.serve_listeners(handler, listeners, handler_nursery=handlers)
        # handlers already running go on: the nursery waits for them (and the
        # worker cancels them at the end of the grace period)


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


# ---- checking the arguments (before any process exists) ----------------------------


def _supervise(
    main: Callable[[Worker], Awaitable[object]],
    *,
    workers: int,
    port: int | None,
    host: str | None,
    cpus: Sequence[int] | Literal["auto"] | None,
    incoming_cpu: bool,
    grace_period: float,
    max_restarts: int,
    restart_window: float,
    backend: Backend,
    fallback: bool,
    start_method: str,
    restart_always: bool,
) -> None:
    count = _check_count(workers, "workers", minimum=1)
    pinned = _check_cpus(cpus, count)
    if incoming_cpu and pinned is None:
        raise ValueError("incoming_cpu=True needs cpus: SO_INCOMING_CPU is the CPU a worker is pinned to")
    grace = _check_seconds(grace_period, "grace_period")
    window = _check_seconds(restart_window, "restart_window")
    restarts = _check_count(max_restarts, "max_restarts", minimum=0)
    if backend not in ("io_uring", "trio"):
        raise ValueError(f"backend must be 'io_uring' or 'trio', not {backend!r}")
    context = multiprocessing.get_context(start_method)  # ValueError for an unknown method
    if trio.lowlevel.in_trio_run():
        raise RuntimeError("run_workers and serve_tcp_workers start processes: call them outside trio.run")
    if backend == "io_uring":
        try:
            check_support()
        except UnsupportedError as exc:
            if not fallback:
                raise
            warnings.warn(f"trio_uring workers run on trio's own backend: {exc}", RuntimeWarning, stacklevel=3)
            backend = "trio"
    reservation = None if port is None else Reservation(host, check_port(port))
    if reservation is not None:
        logger.info("port %d on %s: %d worker(s) on %s", reservation.port, host or "every interface", count, backend)
    try:
        supervisor = Supervisor(
            make_spec=functools.partial(
                _spec,
                main,
                count,
                host,
                None if reservation is None else reservation.port,
                incoming_cpu,
                grace,
                backend,
            ),
            workers=count,
            cpus=pinned,
            grace_period=grace,
            kill_margin=KILL_MARGIN,
            max_restarts=restarts,
            restart_window=window,
            restart_always=restart_always,
            context=context,
        )
        supervisor.run()
    finally:
        if reservation is not None:
            reservation.close()


def _spec(
    main: Callable[[Worker], Awaitable[object]],
    count: int,
    host: str | None,
    port: int | None,
    incoming_cpu: bool,
    grace_period: float,
    backend: str,
    index: int,
    cpu: int | None,
    restarts: int,
) -> WorkerSpec:
    worker = Worker(
        index=index, count=count, cpu=cpu, host=host, port=port, incoming_cpu=incoming_cpu, restarts=restarts
    )
    return WorkerSpec(main=main, worker=worker, grace_period=grace_period, backend=backend)


def _check_count(value: object, name: str, *, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


def _check_seconds(value: object, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")
    return float(value)


def _check_cpus(cpus: Sequence[int] | Literal["auto"] | None, workers: int) -> list[int] | None:
    """The CPUs to pin to, each one checked against the machine and this
    process's affinity mask (sched_getaffinity(2))."""
    if cpus is None:
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if cpus == "auto":
        return allowed[:workers]
    if isinstance(cpus, str) or not isinstance(cpus, Sequence):
        raise TypeError(f"cpus must be a sequence of CPU numbers, 'auto' or None, not {cpus!r}")
    if not cpus:
        raise ValueError("cpus is empty: give at least one CPU, or None for no pinning")
    existing = os.cpu_count() or 1
    for cpu in cpus:
        if not isinstance(cpu, int) or isinstance(cpu, bool):
            raise TypeError(f"cpus must hold CPU numbers (int), not {cpu!r}")
        if not 0 <= cpu < existing:
            raise ValueError(f"CPU {cpu} does not exist: this machine has CPUs 0-{existing - 1}")
        if cpu not in allowed:
            raise ValueError(
                f"CPU {cpu} is not in this process's affinity mask ({_ranges(allowed)}): a worker cannot run there"
            )
    return [int(cpu) for cpu in cpus]


def _ranges(cpus: list[int]) -> str:
    """0,1,2,5 -> '0-2,5' (the notation of taskset and /proc)."""
    parts: list[str] = []
    start = prev = cpus[0]
    for cpu in [*cpus[1:], None]:
        if cpu is not None and cpu == prev + 1:
            prev = cpu
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if cpu is not None:
            start = prev = cpu
    return ",".join(parts)
