"""The supervisor of :mod:`trio_uring.workers`: starts, restarts and stops worker processes.

It is a plain (non-trio) loop in the calling process, shaped like gunicorn's
arbiter: it waits on the workers' multiprocessing sentinels and on a
self-pipe that ``signal.set_wakeup_fd`` writes to when SIGINT or SIGTERM
arrives, and acts on what it finds:

- a worker that exits while the server runs is restarted, after a back-off
  that doubles with each restart of that slot within ``restart_window``
  (0.1 s, 0.2 s, ... up to 10 s); a slot that needs more than
  ``max_restarts`` restarts within the window stops the whole server;
- the first SIGINT or SIGTERM stops the server gracefully: every worker gets
  SIGTERM (it stops accepting, lets its handlers finish within
  ``grace_period``, then cancels them); a worker still alive
  ``grace_period + kill_margin`` seconds later is killed with SIGKILL.  A
  second signal kills the remaining workers at once;
- whatever happens, including an exception in the supervisor itself, every
  worker has exited before :meth:`Supervisor.run` returns or raises.  Workers
  also watch the supervisor (``trio_uring._worker_process``), so killing it
  with SIGKILL does not leave them behind either.

Every failure -- a worker that exited with a non-zero status or was killed
by a signal, at any time -- is recorded; :meth:`Supervisor.run` raises
:class:`WorkersFailed` listing them after the stop, so the exit status of a
program that calls it says whether anything failed.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.resource_tracker
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import attrs

from ._worker_process import STOP_SIGNALS, WorkerSpec, worker_entry

__all__ = ["Supervisor", "WorkersFailed"]

logger = logging.getLogger("trio_uring.workers")

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 10.0


class WorkersFailed(RuntimeError):
    """One or more worker processes failed; ``failures`` says how, one line each."""

    def __init__(self, failures: Sequence[str]) -> None:
        self.failures = list(failures)
        super().__init__(f"{len(self.failures)} worker failure(s): " + "; ".join(self.failures))


@attrs.define
class _Slot:
    index: int
    cpu: int | None
    process: BaseProcess | None = None
    started: int = 0
    restart_times: collections.deque[float] = attrs.field(factory=collections.deque)
    start_at: float | None = 0.0  # when to (re)start it; None: not to be started
    done: bool = False


def _describe(exitcode: int | None) -> str:
    if exitcode is None:
        return "did not exit"
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


@attrs.define
class Supervisor:
    make_spec: Callable[[int, int | None, int], WorkerSpec]  # (index, cpu, restarts) -> spec
    workers: int
    cpus: list[int] | None
    grace_period: float
    kill_margin: float
    max_restarts: int
    restart_window: float
    restart_always: bool
    context: Any  # a multiprocessing context
    slots: list[_Slot] = attrs.field(init=False)
    failures: list[str] = attrs.field(factory=list)
    stopping: bool = False
    kill_at: float | None = None
    signals_seen: int = 0
    signals_acted: int = 0

    def __attrs_post_init__(self) -> None:
        self.slots = [
            _Slot(i, None if self.cpus is None else self.cpus[i % len(self.cpus)]) for i in range(self.workers)
        ]

    # ---- the loop

    def run(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("the workers' supervisor must run in the main thread: it handles SIGINT and SIGTERM")
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        previous_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        try:
            for signum in STOP_SIGNALS:
                signal.signal(signum, self._on_signal)
            while self._live() or not self.stopping:
                self._step(wake_r)
        finally:
            self._kill_all("the supervisor is leaving")
            signal.set_wakeup_fd(previous_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(wake_r)
            os.close(wake_w)
        if self.failures:
            raise WorkersFailed(self.failures)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals_seen += 1
        logger.info("%s received", signal.Signals(signum).name)

    def _step(self, wake_r: int) -> None:
        now = time.monotonic()
        self._start_due(now)
        if not self.stopping and all(slot.done for slot in self.slots):
            self.stopping = True  # every main returned: nothing left to run
            return
        ready = multiprocessing.connection.wait([wake_r, *self._sentinels()], self._next_timeout(now))
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)
        if self.signals_seen > self.signals_acted:
            self._on_stop_signals()
        self._reap(time.monotonic())
        if self.kill_at is not None and time.monotonic() >= self.kill_at:
            self._kill_all(f"still running {self.grace_period + self.kill_margin:g} s after the stop")

    def _next_timeout(self, now: float) -> float | None:
        times = (
            [] if self.stopping else [s.start_at for s in self.slots if s.process is None and s.start_at is not None]
        )
        if self.kill_at is not None:
            times.append(self.kill_at)
        return max(0.0, min(times) - now) if times else None

    def _sentinels(self) -> list[int]:
        return [process.sentinel for process in self._processes()]

    def _live(self) -> list[_Slot]:
        return [slot for slot in self.slots if slot.process is not None]

    def _processes(self) -> list[BaseProcess]:
        return [slot.process for slot in self.slots if slot.process is not None]

    # ---- starting

    def _start_due(self, now: float) -> None:
        if self.stopping:
            return
        for slot in self.slots:
            if slot.process is None and slot.start_at is not None and slot.start_at <= now:
                self._start(slot)

    def _start(self, slot: _Slot) -> None:
        spec = self.make_spec(slot.index, slot.cpu, slot.started)
        process = self.context.Process(target=worker_entry, args=(spec,), name=f"trio_uring-worker-{slot.index}")
        # The child inherits the signal mask (fork(2), execve(2)): a stop
        # signal that reaches it before worker_entry has installed its
        # handlers stays pending instead of killing it half-started.  The
        # resource tracker must be running first: starting it unblocks
        # SIGINT and SIGTERM (multiprocessing/resource_tracker.py).
        if self.context.get_start_method() != "fork":
            multiprocessing.resource_tracker.ensure_running()
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        slot.process, slot.start_at = process, None
        slot.started += 1
        where = "" if slot.cpu is None else f" on CPU {slot.cpu}"
        logger.info("worker %d (pid %d) started%s", slot.index, process.pid, where)

    # ---- exits

    def _reap(self, now: float) -> None:
        for slot in self.slots:
            process = slot.process
            if process is None or (process.exitcode is None and process.is_alive()):
                continue
            process.join()
            exitcode, pid = process.exitcode, process.pid
            process.close()
            slot.process = None
            what = f"worker {slot.index} (pid {pid}) {_describe(exitcode)}"
            if exitcode != 0:
                self.failures.append(what)
            if self.stopping:
                (logger.info if exitcode == 0 else logger.warning)("%s", what)
                continue
            if exitcode == 0 and not self.restart_always:
                logger.info("%s: done", what)
                slot.done = True
                continue
            self._schedule_restart(slot, now, what)

    def _schedule_restart(self, slot: _Slot, now: float, what: str) -> None:
        window = slot.restart_times
        while window and window[0] < now - self.restart_window:
            window.popleft()
        if len(window) >= self.max_restarts:
            message = (
                f"worker {slot.index} needed more than {self.max_restarts} restart(s) within "
                f"{self.restart_window:g} s: stopping the server"
            )
            logger.error("%s; %s", what, message)
            self.failures.append(message)
            self._begin_stop()
            return
        window.append(now)
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (len(window) - 1))
        slot.start_at = now + delay
        logger.warning("%s; restarting it in %.1f s", what, delay)

    # ---- stopping

    def _on_stop_signals(self) -> None:
        self.signals_acted = self.signals_seen
        if self.signals_seen >= 2:
            self._kill_all("a second stop signal")
        self._begin_stop()

    def _begin_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        for slot in self.slots:
            slot.start_at = None  # restarts that were waiting for their back-off
        self.kill_at = time.monotonic() + self.grace_period + self.kill_margin
        logger.info("stopping: SIGTERM to every worker")
        for process in self._processes():
            process.terminate()  # SIGTERM

    def _kill_all(self, why: str) -> None:
        killed = set()
        for slot in self.slots:
            if slot.process is not None and slot.process.is_alive():
                self.failures.append(f"worker {slot.index} (pid {slot.process.pid}) killed with SIGKILL: {why}")
                slot.process.kill()
                killed.add(slot.index)
        for slot in self.slots:
            if slot.process is not None:
                slot.process.join()
                if slot.index not in killed and slot.process.exitcode != 0:
                    self.failures.append(
                        f"worker {slot.index} (pid {slot.process.pid}) {_describe(slot.process.exitcode)}"
                    )
                slot.process.close()
                slot.process = None
