"""UringIOManager: trio's IO-manager protocol on io_uring, plus ``perform``.

What trio asks of an IO manager
-------------------------------

trio's run loop calls ``get_events(timeout)`` once per tick and passes what it
returns to ``process_events``; tasks call ``wait_readable`` /
``wait_writable`` / ``notify_closing``; other threads and signal handlers call
``force_wakeup``; ``close`` runs when the run ends.  ``get_events`` must return
something falsy if and only if the timeout expired (see ``_io_epoll.py``).

How we answer
-------------

Everything a task waits for is one SQE with a unique, never reused
``user_data``, and one record in ``self._ops`` that lives until that SQE's
*final* CQE.  SQEs are written into the ring when the task parks and submitted
together by the next ``get_events``: one ``io_uring_enter`` per tick submits
the batch and waits, the timeout riding on ``IORING_ENTER_EXT_ARG``.

*Readiness* (``wait_readable`` / ``wait_writable``) is a one-shot POLL_ADD.
Cancelling it needs no cooperation from the kernel: the abort function
returns ``Abort.SUCCEEDED`` at once, marks the record orphaned (its late CQE
is dropped) and queues an ASYNC_CANCEL so the kernel forgets the poll.

*Operations that own memory* (``perform``: reads, writes, recv, send ...)
follow trio's Windows backend (``_io_windows.py``, ``wait_overlapped``),
because io_uring, like IOCP, cancels asynchronously:

==========================================  =====================================
the task is cancelled while its op is in    the abort function queues ASYNC_CANCEL
the kernel                                  and returns ``Abort.FAILED``: the task
                                            stays parked, the buffer stays pinned
the final CQE is -ECANCELED / -EINTR /      ``raise_cancel()``: ``Cancelled``, and
-ERESTART*, after we asked to cancel        the operation had no effect
the final CQE is a real result (it won      the result is returned; ``Cancelled``
the race)                                   comes at the next checkpoint
the op was interrupted because of           ``ClosedResourceError``, as trio does
``notify_closing``
==========================================  =====================================

*Closing an fd.*  ``close(fd)`` does **not** cancel io_uring requests on it:
each holds its own reference to the file, so the peer would not even see EOF
(uring-notes §4).  ``notify_closing`` therefore cancels every request we
have on the fd and submits the cancellations *before* returning, i.e. before
the caller's ``close()``.

*Threads.*  In ``trio.run`` the ring is created SINGLE_ISSUER|DEFER_TASKRUN:
only the run's thread ever touches it.  Guest mode calls ``get_events`` on a
worker thread; the ring is then created in "plain" mode, the host thread
submits in its ``get_events(0)`` (trio always calls that first), and the
worker only waits, so no request is ever owned by a short-lived worker thread
(a thread's io_uring requests are cancelled when it exits).
"""

from __future__ import annotations

import copy
import errno
import os
import struct
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import attrs
import outcome
import trio
from trio.lowlevel import (
    Abort,
    Task,
    checkpoint_if_cancelled,
    current_task,
    reschedule,
    wait_task_rescheduled,
)

from . import _kernel as k
from ._bufring import BufRing
from ._ring import Cqe, Ring, RingMode
from ._support import UnsupportedError, missing_opcodes, open_ring
from ._trio_compat import GUEST_RUN_CODE, STOCK_IO_MANAGER, WakeupSocketpair

if TYPE_CHECKING:
    from trio.lowlevel import RaiseCancelT

__all__ = ["READER", "WRITER", "Operation", "UringIOManager", "UringStatistics"]

#: ``perform(..., slot=READER)``: the op occupies the fd's one reader slot
#: (trio allows one task waiting to read, one to write, per fd).
READER: Final = 1
WRITER: Final = 2

# user_data 0 is never an operation: fire-and-forget cancels use it.
_NO_REPLY: Final = 0
_WAKEUP: Final = 1
_FIRST_USER_DATA: Final = 2

_POLL_READ: Final = k.POLLIN | k.POLLPRI | k.POLLRDHUP
_POLL_WRITE: Final = k.POLLOUT
# What wakes a waiter, as with epoll (EPOLLHUP/EPOLLERR wake both sides).
_WAKES_READER: Final = k.POLLIN | k.POLLPRI | k.POLLRDHUP | k.POLLERR | k.POLLHUP
_WAKES_WRITER: Final = k.POLLOUT | k.POLLERR | k.POLLHUP
_SKIP: Final = k.IOSQE_CQE_SKIP_SUCCESS
_F_MORE: Final = k.IORING_CQE_F_MORE
_F_BUFFER: Final = k.IORING_CQE_F_BUFFER
_BUFFER_SHIFT: Final = k.IORING_CQE_BUFFER_SHIFT
#: The one provided-buffer group: 256 buffers of 64 KiB (16 MiB of address
#: space; only pages the kernel writes into become resident).
_BUF_GROUP: Final = 0
_BUF_ENTRIES: Final = 256
_BUF_SIZE: Final = 65536
#: Opcodes trio_uring's sockets submit; where one is missing, sockets keep
#: trio's own readiness-based methods.
SOCKET_OPCODES: Final = ("RECV", "SEND", "RECVMSG", "SENDMSG", "ACCEPT", "CONNECT")
_INTERRUPTED: Final = k.INTERRUPTED
_CLOSE_DRAIN_SECONDS: Final = 5.0

#: get_events' spin budget when TRIO_URING_SPIN_US is not set, in microseconds
SPIN_US_DEFAULT: Final = 200
_clock: Final = time.perf_counter
_sched_yield: Final = os.sched_yield


def spin_budget() -> float:
    """The adaptive spin's budget in seconds: ``TRIO_URING_SPIN_US``
    (microseconds; 0 turns the spin off), else :data:`SPIN_US_DEFAULT`."""
    value = os.environ.get("TRIO_URING_SPIN_US", "").strip()
    if not value:
        return SPIN_US_DEFAULT / 1e6
    try:
        us = float(value)
    except ValueError:
        raise ValueError(f"TRIO_URING_SPIN_US must be a number of microseconds, not {value!r}") from None
    if not 0 <= us <= 1e6:
        raise ValueError(f"TRIO_URING_SPIN_US must be between 0 and 1000000 microseconds, not {value!r}")
    return us / 1e6


#: the environment variable that chooses how accept() takes connections
ACCEPT_ENV: Final = "TRIO_URING_ACCEPT"


def accept_multishot_wanted() -> bool:
    """``TRIO_URING_ACCEPT``: ``single`` (the default) takes one connection per
    ``accept()`` call, with one ACCEPT request when the backlog is empty, as
    trio's own backend does; ``multishot`` keeps one multishot ACCEPT armed
    per listener (5.19+), which accepts connections before any task asks.
    The default is single because a multishot ACCEPT stays first in the
    listening socket's exclusive wait queue: processes sharing one listener
    (hypercorn ``--workers``, a pre-fork server) would see every connection
    go to one of them."""
    value = os.environ.get(ACCEPT_ENV, "").strip().lower()
    if value in ("", "single"):
        return False
    if value == "multishot":
        return True
    raise ValueError(f"{ACCEPT_ENV} must be 'single' or 'multishot', not {value!r}")


#: threading's own tables of started and starting threads (what
#: threading.active_count() adds up, read here without its lock)
_THREAD_TABLES: Final[tuple[Any, ...]] = tuple(
    table for table in (getattr(threading, "_active", None), getattr(threading, "_limbo", None)) if table is not None
)


def _only_thread() -> bool:
    """No other Python thread exists in this process."""
    if len(_THREAD_TABLES) == 2:
        return len(_THREAD_TABLES[0]) + len(_THREAD_TABLES[1]) <= 1
    return threading.active_count() <= 1


# Buffers of operations the kernel never gave back by the time a manager
# closed: kept alive for the life of the process rather than freed under it.
_LEAKED: list[object] = []


class _Installation:
    """Which runs get io_uring: all of them after ``install()``, and those of
    threads inside ``trio_uring.run``.  Kept here (not in _install) so that
    the class trio constructs needs no import at construction time."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.globally = False
        self.fallback = False
        self.runs = 0
        self.tls = threading.local()
        #: managers constructed by trio while a run wanted io_uring, by kind
        self.constructed = {"io_uring": 0, "stock": 0}

    def wants_uring(self) -> bool:
        return self.globally or getattr(self.tls, "depth", 0) > 0

    def fallback_enabled(self) -> bool:
        return self.globally and self.fallback


installation: Final = _Installation()


class _HasFileNo(Protocol):
    def fileno(self) -> int: ...


class Operation:
    """One request in flight: everything that must outlive the task's wait."""

    __slots__ = ("callback", "closing", "fd", "flags", "keep", "on_cqe", "raise_cancel", "res", "task", "user_data")

    def __init__(self, fd: int, task: Task | None, keep: object = None) -> None:
        self.user_data = 0
        self.fd = fd
        #: the parked task; None once nobody waits for the result (orphaned)
        self.task = task
        #: buffers, sockaddrs, msghdrs the kernel may touch until the final CQE
        self.keep = keep
        self.res = 0
        self.flags = 0
        #: set by the abort function: we asked the kernel to cancel
        self.raise_cancel: RaiseCancelT | None = None
        #: set by notify_closing: the fd is being closed under the op
        self.closing = False
        #: for multishot requests: called with every CQE instead of waking a task
        self.callback: Callable[[int, int], None] | None = None
        #: fault injection (trio_uring.testing): sees the final result first
        #: and returns the result the task gets
        self.on_cqe: Callable[[int], int] | None = None


class FaultHook(Protocol):
    """What :mod:`trio_uring.testing` plugs into a manager: it sees every
    operation ``perform`` submits and may change what is submitted."""

    def on_submit(
        self, manager: UringIOManager, op: Operation, prep: Callable[..., None], args: tuple[int, ...]
    ) -> tuple[Callable[..., None], tuple[int, ...]]: ...


@attrs.define(eq=False)
class _FdState:
    #: the task waiting to read / write this fd: a readiness poll or an
    #: operation submitted with ``slot=READER`` / ``slot=WRITER``
    reader: Operation | None = None
    writer: Operation | None = None
    #: other operations in flight on the fd
    ops: set[Operation] = attrs.Factory(set)

    def empty(self) -> bool:
        return self.reader is None and self.writer is None and not self.ops


@attrs.frozen(eq=False)
class UringStatistics:
    """``trio.lowlevel.current_statistics().io_statistics`` under trio_uring."""

    tasks_waiting_read: int
    tasks_waiting_write: int
    #: opcode name -> how many SQEs of that opcode this run submitted
    ops_submitted: dict[str, int]
    #: requests the kernel still owns (including orphaned ones)
    ops_in_flight: int
    #: "defer", "coop" or "plain"
    ring_mode: str
    backend: Literal["io_uring"] = attrs.field(init=False, default="io_uring")


def _called_from_guest_run() -> bool:
    """True when trio is constructing us for ``start_guest_run``."""
    frame = sys._getframe(1)
    for _ in range(10):
        if frame is None:
            break
        if frame.f_code is GUEST_RUN_CODE:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


class UringIOManager:
    """trio's IO manager on io_uring.  trio constructs it through
    ``trio._core._run.TheIOManager`` once trio_uring is installed."""

    def __new__(cls, *, mode: RingMode | Literal["auto"] | None = None) -> Any:
        # While trio_uring is installed for some runs only (trio_uring.run in
        # one thread), a plain trio.run elsewhere keeps trio's own backend.
        if mode is None and not installation.wants_uring():
            return STOCK_IO_MANAGER()
        self = super().__new__(cls)
        try:
            self._open(mode)
        except UnsupportedError as exc:
            if mode is None and installation.fallback_enabled():
                warnings.warn(f"trio_uring: using trio's own backend for this run: {exc}", RuntimeWarning, stacklevel=3)
                installation.constructed["stock"] += 1
                return STOCK_IO_MANAGER()
            raise
        if mode is None:
            installation.constructed["io_uring"] += 1
        return self

    def __init__(self, *, mode: RingMode | Literal["auto"] | None = None) -> None:
        """``mode`` picks the ring's task-run mode ("defer", "coop", "plain");
        by default the fastest the kernel offers, or "plain" in guest mode."""

    def _open(self, mode: RingMode | Literal["auto"] | None) -> None:
        self._guest = _called_from_guest_run()
        if mode is None:
            mode = "plain" if self._guest else "auto"
        self._ring = open_ring(mode)
        #: what the kernel can do (the ring's record; see _features.py)
        self.kernel = self._ring.kernel
        self._cancel_sqe_flags = _SKIP if self.kernel.cqe_skip else 0
        self._owner = threading.get_ident()
        self._ops: dict[int, Operation] = {}
        self._fds: dict[int, _FdState] = {}
        self._next_user_data = _FIRST_USER_DATA
        self._closed = False
        try:
            self._wakeup = WakeupSocketpair()
        except BaseException:
            self._ring.close()
            raise
        self._wakeup_fd = self._wakeup.wakeup_sock.fileno()
        self._arm_wakeup()
        self._bufring: BufRing | None = None
        #: trio_uring.testing's hook, if a fault plan is active in this thread
        self.fault: FaultHook | None = getattr(installation.tls, "fault_hook", None)
        #: every socket operation goes through the ring (no system call
        #: first), so that each is an io_uring request (trio_uring.testing)
        self.force_ring = self.fault is not None
        #: the ring has every opcode trio_uring's sockets submit
        self.socket_ops = not missing_opcodes(self.kernel.opcodes, SOCKET_OPCODES)
        #: get_events' adaptive spin budget in seconds (0: never spin) and
        #: how long the last blocking wait took
        self._spin = spin_budget()
        self._last_wait = 0.0
        #: accept() keeps a multishot ACCEPT armed per listener (opt-in,
        #: TRIO_URING_ACCEPT=multishot, where the kernel has it)
        self.accept_multishot = accept_multishot_wanted() and self.kernel.multishot_accept

    # ---- helpers --------------------------------------------------------------

    @property
    def ring(self) -> Ring:
        return self._ring

    def buffers(self) -> BufRing:
        """The provided-buffer ring (group 0), registered on first use.  A
        RECV with ``IOSQE_BUFFER_SELECT`` and ``buf_group=0`` picks from it;
        the caller copies the data out with ``take(bid, n)``."""
        bufring = self._bufring
        if bufring is None:
            bufring = self._bufring = BufRing(self._ring.fd, _BUF_GROUP, _BUF_ENTRIES, _BUF_SIZE)
        return bufring

    def _arm_wakeup(self) -> None:
        self._ring.prep_poll_add(_WAKEUP, self._wakeup_fd, k.POLLIN, multishot=True)

    def _register(self, op: Operation) -> int:
        user_data = self._next_user_data
        self._next_user_data = user_data + 1
        self._ops[user_data] = op
        op.user_data = user_data
        return user_data

    def _fd_state(self, fd: int) -> _FdState:
        state = self._fds.get(fd)
        if state is None:
            state = self._fds[fd] = _FdState()
        return state

    def _forget_fd_op(self, op: Operation) -> None:
        state = self._fds.get(op.fd)
        if state is not None:
            # A socket's reader / writer slot is taken again by its next
            # receive / send: keep the state (notify_closing drops it).
            if state.reader is op:
                state.reader = None
            elif state.writer is op:
                state.writer = None
            else:
                state.ops.discard(op)
                if state.empty():
                    del self._fds[op.fd]

    def _cancel(self, user_data: int) -> None:
        """Queue ASYNC_CANCEL for ``user_data``.  Only a failure posts a CQE
        (-ENOENT: it already completed; -EALREADY: it is running in io-wq and
        will complete by itself), and it carries user_data 0, which we drop.
        (Before 5.17, without CQE_SKIP_SUCCESS, success posts one too.)"""
        self._ring.prep_cancel(_NO_REPLY, user_data, sqe_flags=self._cancel_sqe_flags)

    # ---- the protocol ---------------------------------------------------------

    def statistics(self) -> UringStatistics:
        readers = writers = 0
        for state in self._fds.values():
            if state.reader is not None and state.reader.task is not None:
                readers += 1
            if state.writer is not None and state.writer.task is not None:
                writers += 1
        counts = self._ring.op_counts if not self._ring.closed else [0]
        return UringStatistics(
            tasks_waiting_read=readers,
            tasks_waiting_write=writers,
            ops_submitted={k.OPCODE_NAMES[i]: n for i, n in enumerate(counts) if n and i < len(k.OPCODE_NAMES)},
            ops_in_flight=len(self._ops),
            ring_mode=self._ring.mode,
        )

    def force_wakeup(self) -> None:
        # A write to a socket: safe from any thread and from signal handlers.
        self._wakeup.wakeup_thread_and_signal_safe()

    def get_events(self, timeout: float) -> list[Cqe]:
        ring = self._ring
        if self._guest and threading.get_ident() != self._owner:
            # Guest mode's worker thread: only wait.  The host thread already
            # submitted this tick's SQEs in its get_events(0).
            ring.submit_and_wait(timeout, 1, submit=False)
            return ring.reap()
        if timeout <= 0:
            return ring.reap_now()
        spin = self._spin
        if not spin:
            ring.submit_and_wait(timeout, 0 if ring.has_backlog else 1)
            return ring.reap()
        # The adaptive spin (docs/how-it-works.md, "Waiting"): when the
        # previous wait was shorter than the spin budget, poll the rings for
        # up to that long before sleeping, so a reply that comes that soon
        # does not pay for waking this thread (and its CPU) up.  A wait that
        # lasted longer turns the spin off until a wait is short again, so
        # an idle or lightly loaded run never spins.  Nor does a run with
        # other Python threads: the spinning thread holds the GIL, which
        # they may need to make progress (a trio.to_thread worker would
        # wait out the spin before it could finish and wake us).
        clock = _clock
        start = clock()
        if self._last_wait < spin and _only_thread():
            # reap_now submits the tick's SQEs and runs deferred completion
            # work whenever the kernel flags some (IORING_SQ_TASKRUN).
            # sched_yield(2) between polls: a task waiting for this CPU (the
            # very client whose request we wait for, on a busy machine)
            # runs first instead of waiting out the spin.
            reap_now = ring.reap_now
            deadline = start + (spin if spin < timeout else timeout)
            while True:
                events = reap_now()
                if events:
                    self._last_wait = clock() - start
                    return events
                now = clock()
                if now >= deadline:
                    break
                _sched_yield()
            timeout -= now - start
            if timeout <= 0:
                self._last_wait = now - start
                return events  # the timeout expired during the spin: []
        ring.submit_and_wait(timeout, 0 if ring.has_backlog else 1)
        events = ring.reap()
        self._last_wait = clock() - start
        return events

    def process_events(self, events: list[Cqe]) -> None:
        ops = self._ops
        for user_data, res, flags in events:
            if user_data == _WAKEUP:
                self._wakeup.drain()
                if not flags & _F_MORE and not self._closed:
                    self._arm_wakeup()
                continue
            op = ops.get(user_data)
            if op is None:
                continue  # a cancel's failure CQE (user_data 0)
            if op.callback is not None:
                if not flags & _F_MORE:
                    del ops[user_data]
                    self._forget_fd_op(op)
                op.callback(res, flags)
                continue
            del ops[user_data]
            task = op.task
            if task is None:
                continue  # orphaned: a poll whose waiter already left
            if op.on_cqe is not None:
                res = op.on_cqe(res)
            op.res = res
            op.flags = flags
            if op.keep is _POLL:
                self._finish_poll(op, res)
            else:
                self._forget_fd_op(op)
                reschedule(task)

    def _finish_poll(self, op: Operation, res: int) -> None:
        state = self._fds.get(op.fd)
        reading = state is not None and state.reader is op
        if res >= 0 and not res & (_WAKES_READER if reading else _WAKES_WRITER):
            # io_uring always reports EPOLLRDHUP, even to a poll that asked
            # only for POLLOUT (IO_POLL_UNMASK in io_uring/poll.c); epoll
            # would not wake a writer for it, and after the peer's shutdown
            # it would fire on every re-arm.  Keep waiting, as epoll does.
            self._ring.prep_poll_add(self._register(op), op.fd, _POLL_READ if reading else _POLL_WRITE)
            return
        if state is not None:
            if state.reader is op:
                state.reader = None
            elif state.writer is op:
                state.writer = None
            if state.empty():
                del self._fds[op.fd]
        assert op.task is not None
        if res < 0:
            reschedule(op.task, outcome.Error(OSError(-res, os.strerror(-res))))
        else:
            reschedule(op.task)

    # ---- readiness -------------------------------------------------------------

    async def _wait_poll(self, fd: int | _HasFileNo, mask: int, reading: bool) -> None:
        if not isinstance(fd, int):
            fd = fd.fileno()
        state = self._fd_state(fd)
        if (state.reader if reading else state.writer) is not None:
            raise trio.BusyResourceError("another task is already reading / writing this fd")
        op = Operation(fd, current_task(), _POLL)
        user_data = self._register(op)
        self._ring.prep_poll_add(user_data, fd, mask)
        if reading:
            state.reader = op
        else:
            state.writer = op

        def abort(_: RaiseCancelT) -> Abort:
            # Nothing is lost by abandoning a poll: forget it now and let the
            # kernel's late CQE (if any) be dropped.
            op.task = None
            st = self._fds.get(fd)
            if st is not None:
                if st.reader is op:
                    st.reader = None
                elif st.writer is op:
                    st.writer = None
                if st.empty():
                    del self._fds[fd]
            if op.user_data in self._ops:
                self._cancel(op.user_data)
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    async def wait_readable(self, fd: int | _HasFileNo) -> None:
        """Block until the kernel reports that ``fd`` is readable.

        :raises trio.BusyResourceError: another task already waits to read it.
        :raises trio.ClosedResourceError: ``notify_closing`` was called on it.
        """
        await self._wait_poll(fd, _POLL_READ, True)

    async def wait_writable(self, fd: int | _HasFileNo) -> None:
        """Block until the kernel reports that ``fd`` is writable.

        :raises trio.BusyResourceError: another task already waits to write it.
        :raises trio.ClosedResourceError: ``notify_closing`` was called on it.
        """
        await self._wait_poll(fd, _POLL_WRITE, False)

    def notify_closing(self, fd: int | _HasFileNo) -> None:
        """Wake every waiter on ``fd`` with ClosedResourceError and cancel every
        io_uring request on it, before the caller closes it."""
        if not isinstance(fd, int):
            fd = fd.fileno()
        state = self._fds.pop(fd, None)
        if state is None:
            return
        try:
            this_task: Task | None = current_task()
        except RuntimeError:
            this_task = None
        exc = trio.ClosedResourceError("another task closed this fd")
        raise_here = False
        for op in (state.reader, state.writer):
            if op is None or op.task is None:
                continue
            if op.keep is not _POLL:
                state.ops.add(op)  # an operation: it stays parked (below)
                continue
            task, op.task = op.task, None
            self._cancel_if_live(op)
            if task is this_task:
                raise_here = True
            else:
                reschedule(task, outcome.Error(copy.copy(exc)))
        for op in state.ops:
            # These keep the task parked until their final CQE; mark them so
            # an interrupted result reads as ClosedResourceError.
            op.closing = True
            self._cancel_if_live(op)
        # close(2) would not cancel them: submit the cancellations now, while
        # the fd still names the file.
        self._submit_now()
        if raise_here:
            raise exc

    def _cancel_if_live(self, op: Operation) -> None:
        if op.user_data in self._ops:
            self._cancel(op.user_data)

    def _submit_now(self) -> None:
        # GETEVENTS too: under DEFER_TASKRUN a cancelled request only lets go
        # of its file once its completion task-work runs, which happens only
        # inside io_uring_enter(GETEVENTS) on this thread.  Its CQE stays in
        # the CQ for the next get_events.
        self._ring.submit_and_wait(0, 0)

    # ---- operations that own memory ---------------------------------------------

    async def perform(
        self,
        fd: int,
        prep: Callable[..., None],
        *args: int,
        keep: object = None,
        slot: int = 0,
    ) -> Operation:
        """Submit one operation and park until its final CQE.

        ``prep`` is a ``Ring.prep_*`` method, called as ``prep(user_data, fd,
        *args)``; ``keep`` is whatever the kernel may read or write until the
        final CQE (it stays referenced even if the task is cancelled).
        ``slot`` (:data:`READER` / :data:`WRITER`) makes the op the fd's one
        reader / writer, as ``wait_readable`` / ``wait_writable`` are.
        Returns the finished :class:`Operation` (``res`` >= 0, ``flags``).
        If ``flags`` has ``IORING_CQE_F_BUFFER``, the caller owns that
        provided buffer and must give it back (``buffers().take``).

        :raises trio.Cancelled: the kernel cancelled it: it had no effect.
        :raises trio.ClosedResourceError: ``notify_closing`` interrupted it.
        :raises trio.BusyResourceError: another task already occupies ``slot``.
        :raises OSError: the operation failed (``errno`` from the CQE).
        """
        await checkpoint_if_cancelled()
        state: _FdState | None = None
        if fd >= 0:
            state = self._fds.get(fd)
            if state is None:
                state = self._fds[fd] = _FdState()
            # trio's wording (the epoll backend's wait_readable/wait_writable)
            if (state.reader if slot == READER else state.writer if slot == WRITER else None) is not None:
                raise trio.BusyResourceError("another task is already reading / writing this fd")
        op = Operation(fd, current_task(), keep)
        user_data = self._register(op)
        try:
            if self.fault is not None:
                prep, args = self.fault.on_submit(self, op, prep, args)
            prep(user_data, fd, *args)
        except BaseException as exc:
            # Nothing was written to the ring (an argument that does not fit
            # the SQE's field): forget the request, or close() would wait
            # for a completion that never comes.
            del self._ops[user_data]
            if isinstance(exc, struct.error):
                raise OverflowError(f"argument out of range for the io_uring request: {exc}") from None
            raise
        if state is not None:
            if slot == READER:
                state.reader = op
            elif slot == WRITER:
                state.writer = op
            else:
                state.ops.add(op)

        def abort(raise_cancel: RaiseCancelT) -> Abort:
            op.raise_cancel = raise_cancel
            self._cancel(user_data)
            return Abort.FAILED

        await wait_task_rescheduled(abort)
        res = op.res
        if res < 0:
            if op.flags & _F_BUFFER and self._bufring is not None:
                self._bufring.recycle(op.flags >> _BUFFER_SHIFT)
            err = -res
            if err in _INTERRUPTED:
                if op.raise_cancel is not None:
                    op.raise_cancel()
                if op.closing:
                    raise trio.ClosedResourceError("another task closed this fd")
                err = errno.EINTR if err > 255 else err
            raise OSError(err, os.strerror(err))
        return op

    def submit_multishot(
        self,
        fd: int,
        prep: Callable[..., None],
        *args: int,
        callback: Callable[[int, int], None],
        keep: object = None,
    ) -> Operation:
        """Start a multishot request whose every CQE goes to ``callback(res,
        flags)`` (from inside ``process_events``).  Returns its
        :class:`Operation`: ``op.user_data`` for :meth:`cancel`, and
        ``op.closing``, set once ``notify_closing`` cancelled it."""
        op = Operation(fd, None, keep)
        op.callback = callback
        user_data = self._register(op)
        prep(user_data, fd, *args)
        if fd >= 0:
            self._fd_state(fd).ops.add(op)
        return op

    def cancel(self, user_data: int) -> None:
        """Ask the kernel to cancel a request started by :meth:`submit_multishot`."""
        if user_data in self._ops and not self._closed:
            self._cancel(user_data)

    # ---- teardown -------------------------------------------------------------------

    def close(self) -> None:
        """Cancel and drain every request still in flight, then unmap.

        Buffers stay referenced until their final CQE; if the kernel does not
        return every request within a few seconds, their memory is leaked
        (kept alive) rather than freed under the kernel's feet.
        """
        if self._closed:
            return
        self._closed = True
        ring = self._ring
        try:
            if not ring.closed:
                self._drain(ring)
        finally:
            if self._ops:
                _LEAKED.append(list(self._ops.values()))
                warnings.warn(
                    ResourceWarning(f"trio_uring: {len(self._ops)} io_uring requests did not finish before close"),
                    stacklevel=2,
                )
            if self._bufring is not None and not self._ops:
                self._bufring.close()
            elif self._bufring is not None:
                _LEAKED.append(self._bufring)
            ring.close()
            self._wakeup.close()

    def _cancel_everything(self, ring: Ring, wakeup_live: bool) -> None:
        if self.kernel.cancel_any:
            # CANCEL_ANY|ALL matches every request on the ring, the wakeup
            # poll included.  Its CQE (user_data 0, the count) is dropped.
            ring.prep_cancel(_NO_REPLY, 0, k.IORING_ASYNC_CANCEL_ANY | k.IORING_ASYNC_CANCEL_ALL)
            return
        # Before 5.19: one ASYNC_CANCEL per request (user_data 0 CQEs, dropped).
        for user_data in [*self._ops, _WAKEUP] if wakeup_live else list(self._ops):
            ring.prep_cancel(_NO_REPLY, user_data)

    def _drain(self, ring: Ring) -> None:
        self._cancel_everything(ring, True)
        deadline = time.monotonic() + _CLOSE_DRAIN_SECONDS
        wakeup_live = True
        while True:
            ring.submit_and_wait(0.05, 1)
            for user_data, res, flags in ring.reap():
                if user_data == _WAKEUP:
                    wakeup_live = bool(flags & _F_MORE)
                    continue
                op = self._ops.get(user_data)
                if op is not None and not flags & _F_MORE:
                    del self._ops[user_data]
                if op is not None and op.callback is not None:
                    # A multishot CQE no tick delivered (in plain/coop mode a
                    # multishot ACCEPT can post one before our cancel): its
                    # owner must get it, or an accepted fd would leak.
                    op.callback(res, flags)
            if (not self._ops and not wakeup_live) or time.monotonic() > deadline:
                return
            if self._ops or wakeup_live:
                # a request that slipped in after the first cancel, or one
                # running in io-wq (-EALREADY) that is still finishing
                self._cancel_everything(ring, wakeup_live)


class _PollMarker:
    """``Operation.keep`` for readiness waits: nothing to keep alive."""

    def __repr__(self) -> str:
        return "<poll>"


_POLL: Final = _PollMarker()
