"""What runs inside one worker process of :mod:`trio_uring.workers`.

The supervisor starts :func:`worker_entry` with multiprocessing.  Before any
trio code runs, the worker:

1. records SIGTERM and SIGINT instead of dying of them, so that a stop that
   arrives while it is still starting up is a graceful stop too (the
   supervisor starts it with both blocked, so even one that arrives before
   Python runs this stays pending until the handler is in place);
2. asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``,
   prctl(2)), and checks that the parent did not die before that (the
   multiprocessing parent sentinel: a pipe whose other end the parent holds);
3. pins itself to its CPU, if it has one;
4. starts a watchdog thread that waits on the parent sentinel: if the
   parent goes away it sends SIGTERM to this process, and if the process is
   still there after the grace period (plus a margin), ends it with
   ``os._exit`` -- so a worker can never outlive its supervisor, even one
   killed with SIGKILL, even if the trio run is stuck;

and then runs ``main(worker)`` in a trio run of its own, on io_uring (its
own ring) or on trio's own backend.  The first SIGTERM or SIGINT sets
``worker.stopping``; ``main`` is cancelled if it has not returned
``grace_period`` seconds later.  Exit status: 0 if ``main`` returned (or was
cancelled at the deadline), 1 if it raised.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from . import _install, _kernel

__all__ = ["EXIT_ORPHANED", "STOP_SIGNALS", "Worker", "WorkerSpec", "worker_entry"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: exit status of a worker that found its supervisor gone (sysexits.h EX_SOFTWARE)
EXIT_ORPHANED = 70
#: how long past the grace period an orphaned worker may take before os._exit
ORPHAN_MARGIN = 2.0


@attrs.frozen
class Worker:
    """What ``main`` receives in each worker process."""

    #: 0 .. workers - 1: the slot this process fills (a restarted worker keeps it)
    index: int
    #: how many workers the supervisor runs
    count: int
    #: the CPU this process is pinned to, or None
    cpu: int | None
    #: the address the supervisor reserved (``port`` is None without one)
    host: str | None
    port: int | None
    #: whether listeners should ask for connections from ``cpu`` (SO_INCOMING_CPU)
    incoming_cpu: bool
    #: how many times this slot was started before (0 for the first process)
    restarts: int
    #: set at the first SIGTERM/SIGINT: stop taking new work and return
    #: (made by the supervisor, pickled with the rest: each process has its own)
    stopping: trio.Event = attrs.field(factory=trio.Event)

    @property
    def pid(self) -> int:
        return os.getpid()

    async def open_listeners(self, *, backlog: int | None = None) -> list[trio.SocketListener]:
        """This worker's own SO_REUSEPORT listeners on the reserved port
        (with SO_INCOMING_CPU set to ``cpu`` if ``incoming_cpu``)."""
        from ._reuseport import open_reuseport_listeners

        if self.port is None:
            raise RuntimeError("run_workers(port=...) was not given: there is no port to listen on")
        return await open_reuseport_listeners(
            self.port, host=self.host, incoming_cpu=self.cpu if self.incoming_cpu else None, backlog=backlog
        )


@attrs.frozen
class WorkerSpec:
    """Everything a worker process needs, pickled by multiprocessing."""

    main: Callable[[Worker], Awaitable[object]]
    worker: Worker
    grace_period: float
    backend: str  # "io_uring" or "trio"


class _EarlyStop:
    signum: int | None = None


def _record(signum: int, frame: object) -> None:
    _EarlyStop.signum = signum


def _parent_sentinel() -> int | None:
    parent = multiprocessing.parent_process()
    return None if parent is None else parent.sentinel


def _parent_gone(sentinel: int | None, timeout: float | None) -> bool:
    return sentinel is not None and bool(multiprocessing.connection.wait([sentinel], timeout))


def _watch_parent(sentinel: int, grace_period: float) -> None:
    _parent_gone(sentinel, None)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_period + ORPHAN_MARGIN)
    print(f"trio_uring.workers: worker {os.getpid()}: supervisor gone and not stopped in time", file=sys.stderr)
    os._exit(EXIT_ORPHANED)


async def _stop_on_signal(
    worker: Worker, main_scope: trio.CancelScope, grace_period: float, *, task_status: trio.TaskStatus[None]
) -> None:
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        task_status.started()
        # a signal that came before the receiver was open was recorded
        if _EarlyStop.signum is None:
            await signals.__anext__()
        worker.stopping.set()
        main_scope.deadline = trio.current_time() + grace_period
        async for _ in signals:
            pass  # a second signal changes nothing: the supervisor escalates


async def _run(spec: WorkerSpec) -> bool:
    worker = spec.worker
    async with trio.open_nursery() as nursery:
        main_scope = trio.CancelScope()
        await nursery.start(_stop_on_signal, worker, main_scope, spec.grace_period)
        with main_scope:
            await spec.main(worker)
        nursery.cancel_scope.cancel()
    return main_scope.cancelled_caught


def worker_entry(spec: WorkerSpec) -> None:
    """The target of each worker's multiprocessing.Process.  An exception
    from ``main`` propagates: multiprocessing prints it and exits with 1."""
    signal.set_wakeup_fd(-1)  # forked: the supervisor's is not ours
    for signum in STOP_SIGNALS:
        signal.signal(signum, _record)
    # blocked by the supervisor around our start: what came meanwhile is recorded now
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    sentinel = _parent_sentinel()
    _kernel.set_parent_death_signal(signal.SIGTERM)
    if _parent_gone(sentinel, 0):
        os._exit(EXIT_ORPHANED)
    if spec.worker.cpu is not None:
        os.sched_setaffinity(0, {spec.worker.cpu})
    if sentinel is not None:
        threading.Thread(
            target=_watch_parent, args=(sentinel, spec.grace_period), name="trio_uring-parent-watch", daemon=True
        ).start()
    run: Callable[..., Any]
    if spec.backend == "io_uring":
        run = _install.run
    else:
        # trio's own backend, even under trio-uring run (whose hook installs globally)
        _install.uninstall()
        run = trio.run
    if run(_run, spec):
        print(
            f"trio_uring.workers: worker {spec.worker.index} (pid {os.getpid()}): still running "
            f"{spec.grace_period:g} s after the stop: cancelled",
            file=sys.stderr,
        )
    sys.stdout.flush()
    sys.stderr.flush()
