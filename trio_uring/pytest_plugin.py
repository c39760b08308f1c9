"""pytest plugin (entry point ``pytest11``): trio test runs on io_uring.

- ``pytest --trio-uring`` calls :func:`trio_uring.install` when pytest starts
  and :func:`trio_uring.uninstall` when it ends.  Every trio run of the
  session then uses io_uring: pytest-trio tests (``@pytest.mark.trio``, trio
  mode), anyio-plugin tests on the ``"trio"`` backend, and plain
  ``trio.run`` calls in tests.
- ``@pytest.mark.trio_uring`` puts one test (or a class or module, through
  ``pytestmark``) on io_uring without the option: the plugin installs
  trio_uring for that test's setup, call and teardown.

Where io_uring cannot be used, both fail with the
:class:`~trio_uring.UnsupportedError` message: ``--trio-uring`` stops pytest
with a usage error, and a marked test fails.  Two options change that:

- ``--trio-uring-skip-unsupported`` skips, with that message, the tests that
  would have run on io_uring: the marked tests and, under ``--trio-uring``,
  the pytest-trio tests and the anyio tests on the trio backend.  Other tests
  run as usual, on trio's own backend.
- ``--trio-uring-fallback`` runs them on trio's own backend instead, with a
  ``RuntimeWarning`` that names the cause.

At the end of the session (with ``--trio-uring`` or after a marked test) the
terminal summary counts the trio runs that used io_uring and those that used
trio's own backend.

``--trio-uring-kernel=5.15`` (or 5.19, 6.1, 6.8, native) runs every ring
of the session, and of its subprocesses, as if on that kernel: it sets
``$TRIO_URING_KERNEL`` (docs/kernel-support.md, "Kernel profiles").

Fault injection (:mod:`trio_uring.testing`) from pytest:

- ``@pytest.mark.trio_uring_faults(short_io=1, errno_for={...}, seed=0)``
  runs the test's call phase inside :func:`trio_uring.testing.faults` with
  those arguments (its trio runs must be on io_uring: combine it with
  ``@pytest.mark.trio_uring`` or ``--trio-uring``);
- the ``trio_uring_sweep`` fixture is :func:`trio_uring.testing.sweep`
  that raises ``AssertionError`` listing the failing runs.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import pytest

from ._features import ENV as KERNEL_ENV
from ._features import PROFILE_NAMES
from ._install import install, is_installed, uninstall
from ._manager import installation
from ._support import UnsupportedError, check_support
from .testing import SweepReport, faults, sweep

#: why io_uring cannot be used, found at startup (``--trio-uring`` with
#: ``--trio-uring-skip-unsupported``): every test that would use it skips
_SESSION_UNSUPPORTED = pytest.StashKey[str]()
#: why io_uring cannot be used for this marked test
_ITEM_UNSUPPORTED = pytest.StashKey[str]()
#: this test is marked to be skipped (--trio-uring-skip-unsupported)
_ITEM_SKIPPED = pytest.StashKey[bool]()
#: a marked test ran, so the summary is worth printing
_MARKED_RAN = pytest.StashKey[bool]()

MARKER = "trio_uring"
FAULTS_MARKER = "trio_uring_faults"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trio_uring")
    group.addoption(
        "--trio-uring",
        action="store_true",
        default=False,
        help="run every trio run of this session on io_uring (trio_uring.install())",
    )
    group.addoption(
        "--trio-uring-fallback",
        action="store_true",
        default=False,
        help="where io_uring is unavailable, warn and use trio's own backend "
        "(for --trio-uring and @pytest.mark.trio_uring tests)",
    )
    group.addoption(
        "--trio-uring-kernel",
        choices=PROFILE_NAMES,
        default=None,
        help="run as if on this kernel: rings use only its setup flags, features and opcodes, "
        "so trio_uring takes its fallbacks (sets $TRIO_URING_KERNEL, also for subprocesses)",
    )
    group.addoption(
        "--trio-uring-skip-unsupported",
        action="store_true",
        default=False,
        help="where io_uring is unavailable, skip the tests that would use it, with the reason "
        "(for --trio-uring and @pytest.mark.trio_uring tests)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: run this test's trio runs on io_uring (trio_uring.install() for its setup, call and teardown)",
    )
    config.addinivalue_line(
        "markers",
        f"{FAULTS_MARKER}(short_io=None, errno_at=None, errno_for=None, seed=0): "
        "inject faults into this test's trio_uring runs (trio_uring.testing.faults)",
    )
    profile = config.getoption("--trio-uring-kernel")
    if profile is not None:
        os.environ[KERNEL_ENV] = profile
    fallback = bool(config.getoption("--trio-uring-fallback"))
    skip = bool(config.getoption("--trio-uring-skip-unsupported"))
    if fallback and skip:
        raise pytest.UsageError("--trio-uring-fallback and --trio-uring-skip-unsupported exclude each other")
    if not config.getoption("--trio-uring"):
        return
    try:
        install(fallback=fallback)
    except UnsupportedError as exc:
        if not skip:
            raise pytest.UsageError(f"--trio-uring: {exc}") from exc
        config.stash[_SESSION_UNSUPPORTED] = str(exc)
        return
    config.add_cleanup(uninstall)


def _anyio_backend_name(value: object) -> str | None:
    """The backend name in an ``anyio_backend`` value: ``"trio"`` or ``("trio", {...})``."""
    if isinstance(value, tuple) and value:
        value = value[0]
    return value if isinstance(value, str) else None


def _uses_trio(item: pytest.Item) -> bool | None:
    """Whether ``item`` runs trio: a pytest-trio test, or an anyio test on the
    trio backend.  None where only its fixtures can tell (an ``anyio_backend``
    fixture that is not parametrized)."""
    if item.get_closest_marker("trio") is not None:
        return True
    if "anyio_backend" not in getattr(item, "fixturenames", ()):
        return False
    callspec = getattr(item, "callspec", None)
    if callspec is None or "anyio_backend" not in callspec.params:
        return None
    return _anyio_backend_name(callspec.params["anyio_backend"]) == "trio"


def _unsupported(item: pytest.Item, reason: str) -> None:
    if item.config.getoption("--trio-uring-skip-unsupported"):
        pytest.skip(f"trio_uring: {reason}")
    pytest.fail(f"trio_uring: {reason}", pytrace=False)


@pytest.hookimpl(trylast=True)  # after pytest-trio's trio mode has marked its tests
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --trio-uring-skip-unsupported where io_uring is unavailable, mark
    the tests that would use it to be skipped (reported at their location)."""
    if not config.getoption("--trio-uring-skip-unsupported"):
        return
    session_reason = config.stash.get(_SESSION_UNSUPPORTED, None)
    marker_reason: str | None = None
    if not is_installed() and any(item.get_closest_marker(MARKER) is not None for item in items):
        try:
            check_support()
        except UnsupportedError as exc:
            marker_reason = str(exc)
    for item in items:
        if item.get_closest_marker(MARKER) is not None:
            reason = marker_reason or session_reason
        elif _uses_trio(item):
            reason = session_reason
        else:
            continue
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"trio_uring: {reason}"))
            item.stash[_ITEM_SKIPPED] = True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """A marked test is on io_uring from its setup to its teardown."""
    if item.get_closest_marker(MARKER) is None or is_installed() or _ITEM_SKIPPED in item.stash:
        return (yield)
    item.config.stash[_MARKED_RAN] = True
    try:
        installed_now = install(fallback=bool(item.config.getoption("--trio-uring-fallback")))
    except UnsupportedError as exc:
        item.stash[_ITEM_UNSUPPORTED] = str(exc)
        return (yield)
    try:
        return (yield)
    finally:
        if installed_now:
            uninstall()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A marked test that cannot have io_uring fails (or skips) before its fixtures."""
    reason = item.stash.get(_ITEM_UNSUPPORTED, None)
    if reason is not None:
        _unsupported(item, reason)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """An anyio test whose backend only its (unparametrized) ``anyio_backend``
    fixture knows: skipped once the fixture has said "trio".  And
    ``@pytest.mark.trio_uring_faults(...)``: the call phase under faults()."""
    reason = item.config.stash.get(_SESSION_UNSUPPORTED, None)
    if (
        reason is not None
        and item.config.getoption("--trio-uring-skip-unsupported")
        and _uses_trio(item) is None
        and _anyio_backend_name(getattr(item, "funcargs", {}).get("anyio_backend")) == "trio"
    ):
        pytest.skip(f"trio_uring: {reason}")
    marker = item.get_closest_marker(FAULTS_MARKER)
    if marker is None:
        return (yield)
    if marker.args:
        raise pytest.UsageError(f"@pytest.mark.{FAULTS_MARKER} takes keyword arguments only")
    with faults(**marker.kwargs):
        return (yield)


@pytest.fixture
def trio_uring_sweep() -> Callable[..., SweepReport]:
    """:func:`trio_uring.testing.sweep`, raising ``AssertionError`` that lists
    every failing run (call it from a synchronous test)."""

    def run_sweep(body: Callable[..., Awaitable[object]], *args: object, **kwargs: Any) -> SweepReport:
        report = sweep(body, *args, **kwargs)
        report.raise_for_failures()
        return report

    return run_sweep


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    reason = config.stash.get(_SESSION_UNSUPPORTED, None)
    if reason is not None:
        terminalreporter.write_line(f"trio_uring: tests that use trio were skipped: {reason}")
        return
    if not config.getoption("--trio-uring") and not config.stash.get(_MARKED_RAN, False):
        return
    made = installation.constructed
    terminalreporter.write_line(
        f"trio_uring: {made['io_uring']} trio runs on io_uring, {made['stock']} on trio's own backend"
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    profile = os.environ.get(KERNEL_ENV)
    return f"trio_uring kernel profile: {profile}" if profile else None
