"""Session-wide fault modes for the pytest plugin: ``pytest --trio-uring
--trio-uring-faults SPEC`` (or the ``trio_uring_faults`` ini option) runs
every test under :func:`trio_uring.testing.faults`, with no edits to the
tests.  The spec's syntax is :mod:`trio_uring._faultspec`'s.

Each test gets a fault plan of its own, seeded from the spec's seed and the
test's node id: the faults a test meets do not depend on which tests ran
before it, so a failing test fails again when run alone with the same spec.
The plan is in force during the test's setup, call and teardown phases and
only there: a trio run started outside them (a plugin's, a hook's) is
untouched, and so is everything pytest itself does.  It reaches the trio
runs on io_uring in pytest's thread (pytest-trio's, anyio's on the trio
backend, ``trio.run`` in a test), which is why it needs ``--trio-uring``.

A test with ``@pytest.mark.trio_uring_faults(...)`` gets the marker's faults
instead.  The terminal summary says which faults were active and how many
operations each touched; a failing test's report says what was injected
into it and how to run it again.
"""

from __future__ import annotations

import errno
import shlex
from collections import Counter
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

import pytest

from ._faultspec import FaultSpec, FaultSpecError, parse
from ._manager import Operation, UringIOManager, installation
from .testing import FaultLog, OpRecord, _Plan

if TYPE_CHECKING:
    from ._manager import FaultHook

OPTION = "--trio-uring-faults"
INI = "trio_uring_faults"
_MARKER = "trio_uring_faults"

#: the plan of the test being run
_ITEM_PLAN = pytest.StashKey[_Plan]()


def addoption(parser: pytest.Parser, group: pytest.OptionGroup) -> None:
    group.addoption(
        OPTION,
        metavar="SPEC",
        default=None,
        help="run every test under these faults (needs --trio-uring), e.g. 'short_io=1' or "
        "'errno=RECV:ECONNRESET:0.01,seed=42'; items: short_io=N, errno=OPCODE:ERRNO[:P], "
        "errno_at=K:ERRNO, seed=S; 'none' for none (overrides the ini option)",
    )
    parser.addini(INI, f"fault spec for every test, as {OPTION} (which overrides it); needs --trio-uring", default="")


def configure(config: pytest.Config) -> None:
    """Parse the spec (a usage error names what is wrong) and, if it has
    faults, register the session's fault plugin."""
    text = config.getoption(OPTION)
    source = OPTION
    if text is None:
        text = str(config.getini(INI))
        source = f"the {INI} ini option"
    try:
        spec = parse(text)
    except FaultSpecError as exc:
        raise pytest.UsageError(f"{source}: {exc}") from None
    if spec.empty:
        return
    if not config.getoption("--trio-uring"):
        raise pytest.UsageError(
            f"{source} needs --trio-uring: faults reach only trio runs on io_uring "
            f"(or mark single tests with @pytest.mark.trio_uring and @pytest.mark.{_MARKER})"
        )
    config.pluginmanager.register(SessionFaults(config, spec, text), "trio_uring_session_faults")


class _Dispatch:
    """The fault hook of pytest's thread for the whole session: it hands
    each operation to the running test's plan, and between tests to none."""

    def __init__(self) -> None:
        self.plan: _Plan | None = None

    def on_submit(
        self, manager: UringIOManager, op: Operation, prep: Callable[..., None], args: tuple[int, ...]
    ) -> tuple[Callable[..., None], tuple[int, ...]]:
        plan = self.plan
        if plan is None:
            return prep, args
        return plan.on_submit(manager, op, prep, args)


class SessionFaults:
    """The plugin object registered for a session with faults."""

    def __init__(self, config: pytest.Config, spec: FaultSpec, text: str) -> None:
        self.config = config
        self.spec = spec
        self.text = text
        self.dispatch = _Dispatch()
        self.previous: FaultHook | None = getattr(installation.tls, "fault_hook", None)
        installation.tls.fault_hook = self.dispatch
        config.add_cleanup(self._restore)
        #: totals over the session
        self.tests = 0
        self.ops = 0
        self.ops_by_opcode: Counter[str] = Counter()
        self.shortened = 0
        self.tests_shortened = 0
        #: per item of the spec (``errno=RECV:...``): operations failed, tests
        self.injected: Counter[str] = Counter()
        self.tests_injected: Counter[str] = Counter()

    def _restore(self) -> None:
        installation.tls.fault_hook = self.previous

    # ---- one plan per test, in force during its phases ----------------------------

    def _plan_for(self, item: pytest.Item) -> _Plan | None:
        if item.get_closest_marker(_MARKER) is not None:
            return None  # the marker's faults instead (pytest_plugin)
        plan = item.stash.get(_ITEM_PLAN, None)
        if plan is None:
            spec = self.spec
            plan = _Plan(
                seed=spec.seed_for(item.nodeid),
                short_io=spec.short_io,
                errno_at=spec.errno_at,
                errno_for=spec.errno_for,
            )
            item.stash[_ITEM_PLAN] = plan
        return plan

    def _in_phase(self, item: pytest.Item) -> Generator[None, object, object]:
        self.dispatch.plan = self._plan_for(item)
        try:
            return (yield)
        finally:
            self.dispatch.plan = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, object, object]:
        return (yield from self._in_phase(item))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        return (yield from self._in_phase(item))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, object, object]:
        try:
            return (yield from self._in_phase(item))
        finally:
            plan = item.stash.get(_ITEM_PLAN, None)
            if plan is not None:
                self._count(plan.log)

    def _item_of(self, record: OpRecord) -> str:
        """The spec item that failed this operation."""
        if record.index in self.spec.errno_at:
            return f"errno_at={record.index}:{_errno_name(self.spec.errno_at[record.index])}"
        e, p = self.spec.errno_for[record.opcode]
        return f"errno={record.opcode}:{_errno_name(e)}:{p:g}"

    def _count(self, log: FaultLog) -> None:
        if not log.ops:
            return
        self.tests += 1
        self.ops += len(log.ops)
        self.ops_by_opcode.update(op.opcode for op in log.ops)
        self.shortened += log.shortened
        self.tests_shortened += bool(log.shortened)
        items = Counter(self._item_of(record) for record, _ in log.injected)
        self.injected.update(items)
        self.tests_injected.update(items.keys())

    # ---- reports ----------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, object, object]:
        report = yield
        plan = item.stash.get(_ITEM_PLAN, None)
        if plan is not None and isinstance(report, pytest.TestReport) and report.failed:
            report.sections.append(("trio_uring faults", self._describe(item, plan.log)))
        return report

    def _describe(self, item: pytest.Item, log: FaultLog) -> str:
        lines = [
            f"faults: {self.spec} (this test's stream: seed {self.spec.seed_for(item.nodeid)})",
            f"{len(log.ops)} io_uring operations so far, {log.shortened} transfers shortened, "
            f"{len(log.injected)} errors injected",
        ]
        for record, e in log.injected[:10]:
            lines.append(f"  {_errno_name(e)} injected at {record}")
        if len(log.injected) > 10:
            lines.append(f"  ... and {len(log.injected) - 10} more")
        lines.append(f"again: pytest --trio-uring {OPTION} {shlex.quote(str(self.spec))} {shlex.quote(item.nodeid)}")
        return "\n".join(lines)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        write = terminalreporter.write_line
        write(f"trio_uring faults: {self.spec} (each test seeded from seed={self.spec.seed} and its node id)")
        if self.ops == 0:
            write("  no test submitted an io_uring operation: nothing was injected")
            return
        if self.spec.short_io is not None:
            write(
                f"  short_io={self.spec.short_io}: {self.shortened} transfers shortened, "
                f"in {self.tests_shortened} tests"
            )
        for name, (e, p) in self.spec.errno_for.items():
            item = f"errno={name}:{_errno_name(e)}:{p:g}"
            write(
                f"  {item}: {self.injected[item]} of {self.ops_by_opcode[name]} {name} operations failed, "
                f"in {self.tests_injected[item]} tests"
            )
        for index, e in self.spec.errno_at.items():
            item = f"errno_at={index}:{_errno_name(e)}"
            write(f"  {item}: operation {index} failed in {self.injected[item]} tests")
        write(f"  {self.ops} io_uring operations in {self.tests} tests")


def _errno_name(e: int) -> str:
    return errno.errorcode.get(e, str(e))
