"""pytest plugin (entry point ``pytest11``): ``pytest --trio-uring`` runs every
trio run of the session (pytest-trio tests, anyio's trio backend, plain
``trio.run``) on io_uring."""

from __future__ import annotations

import pytest

from ._install import install, uninstall
from ._manager import installation
from ._support import UnsupportedError


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
        help="with --trio-uring: where io_uring is unavailable, warn and use trio's own backend",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--trio-uring"):
        return
    fallback = bool(config.getoption("--trio-uring-fallback"))
    try:
        install(fallback=fallback)
    except UnsupportedError as exc:
        raise pytest.UsageError(f"--trio-uring: {exc}") from exc
    config.add_cleanup(uninstall)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if not config.getoption("--trio-uring"):
        return
    made = installation.constructed
    terminalreporter.write_line(
        f"trio_uring: {made['io_uring']} trio runs on io_uring, {made['stock']} on trio's own backend"
    )
