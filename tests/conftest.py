"""Fixtures shared by the tests."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run of `make test`, so CI
# never fails on a draw it has not seen before; `make stress` (or
# HYPOTHESIS_PROFILE=explore) draws fresh ones, to find new cases.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "explore" if os.environ.get("TRIO_URING_STRESS") else "repeatable")
)


# A test run started as a background job of a non-interactive shell (`make
# test &` in a script) inherits SIGINT ignored (POSIX, "Shell Command
# Language", 2.11), and so would every child a test starts: the tests that
# interrupt a run with SIGINT would wait for a KeyboardInterrupt that never
# comes.  Python's own handler here is reset to SIG_DFL in each child at
# exec, which is what a terminal gives.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    with a, b:
        yield a, b
