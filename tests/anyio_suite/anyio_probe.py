"""pytest plugin for tests/anyio_suite/run.py: counts the anyio calls
(open_file, Path methods) that trio_uring's hook served on io_uring, and
fails the session if the trio tests never reached it (the suite would then
prove nothing)."""

from __future__ import annotations

from typing import Any

import pytest

from trio_uring import _anyio_files

served: list[int] = []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    real = _anyio_files.on_io_uring

    def counting() -> bool:
        answer = real()
        if answer:
            served.append(1)
        return answer

    _anyio_files.on_io_uring = counting  # type: ignore[assignment]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line(f"trio_uring: {len(served)} anyio.open_file / anyio.Path calls served on io_uring")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus == 0 and session.testscollected and not served:
        session.exitstatus = 1
        print("trio_uring: the hook served no anyio call: the trio tests did not run on io_uring")
