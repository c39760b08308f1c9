"""Fixtures shared by the tests."""

from __future__ import annotations

import os
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


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    with a, b:
        yield a, b
