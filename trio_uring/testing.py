"""Fault injection for testing code that runs on trio: cancellation sweeps,
short I/O and injected errors, all deterministic.

Cancellation bugs hide in the moments between operations: a reader that
loses the half of a message it had already received when it is cancelled,
a writer that forgets how much it wrote.  Ordinary tests rarely cancel at
exactly the wrong moment.  Under trio_uring every operation that waits is
one io_uring request, so the moments can be enumerated:

:func:`sweep` runs an async test body once to count the operations inside
its :class:`Region`, then again once per operation *k* and per race
outcome, cancelling the region exactly while operation *k* is in the kernel:

``"cancelled"``
    the kernel cancels the operation (an ``ASYNC_CANCEL`` that wins): the
    operation had no effect and the task gets ``Cancelled``.  (The request
    submitted in its place is a TIMEOUT that never fires, so the outcome
    does not depend on timing.)
``"completed"``
    the operation completed first: its result is delivered and
    ``Cancelled`` comes at the task's next checkpoint.

After the region, the body checks whatever must hold (nothing lost,
nothing duplicated, the protocol still in sync).  A failing run is reported
with *k*, the outcome, the operation, and the call site that submitted it.

:func:`faults` injects for every trio_uring run inside a ``with`` block:

``short_io=N``
    every receive and read returns at most N bytes, every send and write
    accepts at most N bytes, exposing code that assumes whole transfers
    (only where the kernel itself may move less than asked: not a datagram
    or seqpacket message, not a ``MSG_WAITALL`` receive);
``errno_at={k: errno}``
    operation *k* fails with that errno instead of being performed;
``errno_for={"RECV": (errno.ECONNRESET, 0.1)}``
    each operation of that opcode fails with that errno with the given
    probability (drawn from ``seed``).

While a fault plan is active, trio_uring sends every socket operation
through the ring (no ``recv(2)``/``send(2)`` first, one ACCEPT per
``accept()``), so each is a request the plan can reach.  Everything is
deterministic from ``seed`` and the body's own behaviour.

For a whole pytest session: ``pytest --trio-uring --trio-uring-faults
short_io=1`` (the spec's syntax: :mod:`trio_uring._faultspec`).

In pytest::

    def test_reader_survives_cancellation():
        trio_uring.testing.sweep(body).raise_for_failures()

or with the ``trio_uring_sweep`` fixture that the pytest plugin provides.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno as errno_module
import os
import random
import socket
import stat
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import trio

from . import _kernel as k
from ._install import run as _uring_run
from ._manager import Operation, UringIOManager, installation

__all__ = [
    "FaultLog",
    "OpRecord",
    "Region",
    "SweepFailure",
    "SweepReport",
    "faults",
    "sweep",
]

Outcome = Literal["cancelled", "completed"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("cancelled", "completed")

#: a TIMEOUT that never fires on its own, standing in for a cancelled op
_NEVER_SECONDS: Final = 3600
#: index of the length argument of each prep function (after user_data, fd)
_LENGTH_ARG: Final = {
    "prep_recv_select": 0,
    "prep_recv": 1,
    "prep_send": 1,
    "prep_read": 1,
    "prep_write": 1,
}
_PACKAGE_DIRS: Final = (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
    os.path.dirname(os.path.abspath(trio.__file__)) + os.sep,
)

#: the region (of the current sweep run) the current task's code is in
_REGION: contextvars.ContextVar[Region | None] = contextvars.ContextVar("trio_uring_testing_region", default=None)


@dataclass(frozen=True)
class OpRecord:
    """One operation a plan saw: its index, opcode and call site."""

    index: int
    opcode: str
    site: str

    def __str__(self) -> str:
        return f"op {self.index} ({self.opcode}) at {self.site}"


@dataclass
class FaultLog:
    """What a plan saw and did during the runs it was active for."""

    ops: list[OpRecord] = field(default_factory=list)
    injected: list[tuple[OpRecord, int]] = field(default_factory=list)
    shortened: int = 0


def _call_site() -> str:
    """The innermost frame outside trio_uring and trio: the user's code."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_PACKAGE_DIRS):
            return f"{filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        frame = frame.f_back  # type: ignore[assignment]
    return "<unknown>"


def _cancel_would_reach_current_task(scope: trio.CancelScope) -> bool:
    """Whether cancelling ``scope`` would cancel the current task now: the
    scope encloses it with no shielded scope in between.  (Reads trio's
    private cancel-status chain; trio_uring is pinned to the trio release
    it is tested with.)"""
    status: Any = trio.lowlevel.current_task()._cancel_status
    while status is not None:
        if status._scope is scope:
            return True
        if status._scope.shield:
            return False
        status = status._parent
    return False


#: (st_dev, st_ino) of a socket -> whether it is a stream socket (a socket's
#: type never changes, and its inode is its own until it is closed)
_STREAM_SOCKETS: dict[tuple[int, int], bool] = {}


def _kernel_may_shorten(fd: int, prep_name: str, args: tuple[int, ...]) -> bool:
    """Whether the kernel itself could move fewer bytes than asked here, so
    that short I/O invents nothing: on a stream socket, a pipe or a file.
    Not on a datagram or seqpacket socket, where each send is one whole
    message (a shortened one would be truncated, its tail lost) and a
    receive takes one whole message; not for a receive with ``MSG_WAITALL``,
    which recv(2) returns short only on a signal, an error or the end of
    the stream."""
    if prep_name in ("prep_recv", "prep_recv_select"):
        flags = args[2] if prep_name == "prep_recv" else args[1]
        if flags & socket.MSG_WAITALL:
            return False
    try:
        st = os.fstat(fd)
    except OSError:
        return True  # the kernel reports the bad fd itself
    if not stat.S_ISSOCK(st.st_mode):
        return True
    key = (st.st_dev, st.st_ino)
    stream = _STREAM_SOCKETS.get(key)
    if stream is None:
        sock = socket.socket(fileno=fd)
        try:
            stream = _STREAM_SOCKETS[key] = sock.type == socket.SOCK_STREAM
        finally:
            sock.detach()
        if len(_STREAM_SOCKETS) > 4096:
            _STREAM_SOCKETS.clear()
    return stream


def _opcode_of(prep: Callable[..., None]) -> str:
    name = getattr(prep, "__name__", "")
    if name == "prep_recv_select":
        return "RECV"
    return name.removeprefix("prep_").upper() or "?"


class _Plan:
    """The hook a manager calls for every operation ``perform`` submits."""

    def __init__(
        self,
        *,
        seed: int = 0,
        short_io: int | None = None,
        errno_at: dict[int, int] | None = None,
        errno_for: dict[str, tuple[int, float]] | None = None,
        only_in_region: bool = False,
        cancel_at: int | None = None,
        outcome: Outcome = "cancelled",
    ) -> None:
        if short_io is not None and short_io < 1:
            raise ValueError("short_io must be at least 1 byte")
        self.rng = random.Random(seed)
        self.short_io = short_io
        self.errno_at = dict(errno_at or {})
        self.errno_for = {name.upper(): spec for name, spec in (errno_for or {}).items()}
        self.only_in_region = only_in_region
        self.cancel_at = cancel_at
        self.outcome = outcome
        self.log = FaultLog()
        self.count = 0
        #: the operation the sweep cancelled at, once reached
        self.target: OpRecord | None = None
        self.target_done = False

    # called by UringIOManager.perform
    def on_submit(
        self, manager: UringIOManager, op: Operation, prep: Callable[..., None], args: tuple[int, ...]
    ) -> tuple[Callable[..., None], tuple[int, ...]]:
        region = _REGION.get()
        if self.only_in_region and (region is None or not region.active):
            return prep, args
        record = OpRecord(self.count, _opcode_of(prep), _call_site())
        self.count += 1
        self.log.ops.append(record)

        injected = self._errno_for(record)
        if injected is not None:
            self.log.injected.append((record, injected))
            return self._stand_in(manager, op, -injected, prep_nop=True)

        if self.cancel_at == record.index and region is not None:
            if not _cancel_would_reach_current_task(region.scope):
                # The op runs in a shielded scope (an aclose(), say): the
                # region's cancel cannot interrupt it, so neither outcome can
                # happen here.  Perform it for real; the cut is "unreached".
                return prep, args
            self.target = record
            if self.outcome == "cancelled":
                # A request that cannot finish by itself, cancelled: the
                # kernel cancels it (-ECANCELED) and the op never ran.
                region.scope.cancel()
                return self._stand_in(manager, op, None, prep_nop=False)

            # "completed": perform it for real and cancel just before its
            # result is delivered; the abort function runs first (its
            # ASYNC_CANCEL finds nothing), then the result arrives.
            def cancel_then_deliver(res: int) -> int:
                if res >= 0 or -res not in k.INTERRUPTED:
                    # it completed (not cancelled by something else first)
                    self.target_done = True
                    region.scope.cancel()
                return res

            op.on_cqe = cancel_then_deliver

        name = getattr(prep, "__name__", "")
        index = _LENGTH_ARG.get(name)
        if (
            self.short_io is not None
            and index is not None
            and args[index] > self.short_io
            and _kernel_may_shorten(op.fd, name, args)
        ):
            args = (*args[:index], self.short_io, *args[index + 1 :])
            self.log.shortened += 1
        return prep, args

    def _errno_for(self, record: OpRecord) -> int | None:
        if record.index in self.errno_at:
            return self.errno_at[record.index]
        spec = self.errno_for.get(record.opcode)
        if spec is not None and self.rng.random() < spec[1]:
            return spec[0]
        return None

    def _stand_in(
        self, manager: UringIOManager, op: Operation, result: int | None, *, prep_nop: bool
    ) -> tuple[Callable[..., None], tuple[int, ...]]:
        """Submit a NOP (whose result becomes ``result``) or a TIMEOUT that
        never fires in place of the operation."""
        ring = manager.ring
        if prep_nop:
            op.on_cqe = lambda _res: result if result is not None else _res

            def prep_nop_instead(user_data: int, _fd: int) -> None:
                ring.prep_nop(user_data)

            return prep_nop_instead, ()
        ts = k.Memory(k.TIMESPEC.size)
        k.TIMESPEC.pack_into(ts.view, 0, _NEVER_SECONDS, 0)
        op.keep = (op.keep, ts)

        def prep_timeout_instead(user_data: int, _fd: int) -> None:
            ring.prep_timeout(user_data, ts.address)

        return prep_timeout_instead, ()


@contextlib.contextmanager
def _active(plan: _Plan) -> Iterator[None]:
    tls = installation.tls
    previous = getattr(tls, "fault_hook", None)
    tls.fault_hook = plan
    try:
        yield
    finally:
        tls.fault_hook = previous


@contextlib.contextmanager
def faults(
    *,
    short_io: int | None = None,
    errno_at: dict[int, int] | None = None,
    errno_for: dict[str, tuple[int, float]] | None = None,
    seed: int = 0,
) -> Iterator[FaultLog]:
    """Inject faults into every trio_uring run started in this thread inside
    the block (``trio_uring.run``, or ``trio.run`` after ``install()``).

    Operations are numbered from 0 in the order they are submitted, across
    the runs in the block.  Yields the :class:`FaultLog`.
    """
    plan = _Plan(seed=seed, short_io=short_io, errno_at=errno_at, errno_for=errno_for)
    with _active(plan):
        yield plan.log


class Region:
    """The part of a swept test body whose operations the sweep cancels at:
    ``with region: ...``.  It is a cancel scope of its own: when the sweep
    cancels it, ``Cancelled`` ends the block and is absorbed there, and the
    body goes on to check what must hold."""

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.active = False
        self._token: contextvars.Token[Region | None] | None = None

    @property
    def cancelled_by_sweep(self) -> bool:
        """True if the sweep cancelled this region (its block was cut short)."""
        return self.scope.cancel_called

    def __enter__(self) -> Region:
        if self._token is not None:
            raise RuntimeError("a Region can be entered once per run")
        self.scope.__enter__()
        self.active = True
        self._token = _REGION.set(self)
        return self

    def __exit__(self, *exc_info: Any) -> bool:
        self.active = False
        if self._token is not None:
            _REGION.reset(self._token)
        return bool(self.scope.__exit__(*exc_info))


@dataclass(frozen=True)
class SweepFailure:
    """One run of a sweep that failed."""

    index: int
    outcome: Outcome
    op: OpRecord | None
    error: str

    def __str__(self) -> str:
        where = str(self.op) if self.op is not None else f"op {self.index}"
        return f"cancelled at {where}, outcome {self.outcome!r}: {self.error}"


@dataclass
class SweepReport:
    """What :func:`sweep` did: the operations of the counting run, the runs,
    the failures, and the (k, outcome) pairs whose operation never got that
    outcome (e.g. it never completed by itself)."""

    ops: list[OpRecord]
    runs: int = 0
    failures: list[SweepFailure] = field(default_factory=list)
    unreached: list[tuple[int, Outcome]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def raise_for_failures(self) -> None:
        """Raise ``AssertionError`` listing every failing run."""
        if self.failures:
            lines = "\n".join(f"  {failure}" for failure in self.failures)
            raise AssertionError(f"{len(self.failures)} of {self.runs} sweep runs failed:\n{lines}")


def sweep(
    body: Callable[..., Awaitable[object]],
    *args: object,
    outcomes: tuple[Outcome, ...] = OUTCOMES,
    short_io: int | None = None,
    seed: int = 0,
    max_ops: int = 500,
    timeout: float = 10.0,
) -> SweepReport:
    """Run ``body(region, *args)`` under trio_uring once to count the
    operations submitted inside ``with region:``, then once per operation
    and outcome, cancelling the region while that operation is in flight.

    ``body`` sets up (sockets, peers, data), enters the region for the code
    under test, and afterwards checks what must hold, raising if it does
    not.  Each run gets a fresh ``trio_uring.run``; ``timeout`` bounds each
    run (a hang is reported as a failure).  Returns a :class:`SweepReport`;
    call ``raise_for_failures()`` on it in a test.
    """
    for outcome in outcomes:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")

    def one_run(plan: _Plan) -> str | None:
        async def main() -> None:
            region = Region()
            with trio.fail_after(timeout):
                await body(region, *args)

        try:
            with _active(plan):
                _uring_run(main)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            return "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return None

    counting = _Plan(seed=seed, short_io=short_io, only_in_region=True)
    error = one_run(counting)
    report = SweepReport(ops=list(counting.log.ops), runs=1)
    if error is not None:
        report.failures.append(SweepFailure(-1, "completed", None, f"the body fails without any cancellation: {error}"))
        return report
    if len(report.ops) > max_ops:
        raise ValueError(f"the region submitted {len(report.ops)} operations, more than max_ops={max_ops}")
    for index in range(len(report.ops)):
        for outcome in outcomes:
            plan = _Plan(seed=seed, short_io=short_io, only_in_region=True, cancel_at=index, outcome=outcome)
            error = one_run(plan)
            report.runs += 1
            reached = plan.target is not None and (outcome == "cancelled" or plan.target_done)
            if error is not None:
                report.failures.append(SweepFailure(index, outcome, plan.target, error))
            elif not reached:
                report.unreached.append((index, outcome))
    return report


#: errno values commonly injected, for convenience
ECONNRESET: Final = errno_module.ECONNRESET
EPIPE: Final = errno_module.EPIPE
ENOSPC: Final = errno_module.ENOSPC
