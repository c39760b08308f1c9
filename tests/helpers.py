"""Shared helpers for the tests: real sockets, fd counts, statistics."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.lowlevel

import trio_uring

#: ``make stress`` sets this to scale the load and cancellation tests up.
STRESS = int(os.environ.get("TRIO_URING_STRESS", "1"))


def run(fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
    return trio_uring.run(fn, *args, **kwargs)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def ops_submitted() -> dict[str, int]:
    stats = trio.lowlevel.current_statistics().io_statistics
    assert isinstance(stats, trio_uring.UringStatistics)
    return dict(stats.ops_submitted)


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        c = socket.create_connection(listener.getsockname())
        s, _ = listener.accept()
    return c, s


def fill(sock: socket.socket) -> bytes:
    """Fill ``sock``'s send path until it would block; return what was sent."""
    sock.setblocking(False)
    sent = bytearray()
    chunk = bytes(range(256)) * 64
    try:
        while True:
            sent += chunk[: sock.send(chunk)]
    except BlockingIOError:
        pass
    sock.setblocking(True)
    return bytes(sent)


def drain(sock: socket.socket, n: int) -> bytes:
    got = bytearray()
    sock.settimeout(5)
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        assert chunk
        got += chunk
    return bytes(got)


def nothing_pending(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)
    return False


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def run_child(code: str, timeout: float = 60) -> str:
    """Run ``code`` in a fresh Python (for limits a test must not set on
    itself); return its stdout, failing with its stderr if it fails."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout
