"""A kernel whose io_uring lacks what trio_uring needs (below the floor):
the refusal names the floor and the missing pieces, and
``install(fallback=True)`` runs trio's own backend.

These run for real on such a kernel: ``make test-kernels`` boots Debian 11's
5.10 and runs this file there.  On a kernel where io_uring is usable they
skip, saying so.  What the kernel lacks is asked of the kernel itself, with
a bare ``io_uring_setup`` here, not taken from trio_uring.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import sys
import warnings

import pytest
import trio

import trio_uring

from .helpers import slowness

#: features trio_uring needs that kernels older than the floor may lack (io_uring_params.features)
FEATURES = {"NODROP": 1 << 1, "SUBMIT_STABLE": 1 << 2, "FAST_POLL": 1 << 5, "EXT_ARG": 1 << 8}
FLOOR = "5.15"
SYS_IO_URING_SETUP = 425  # x86_64


def kernel_features() -> int:
    """``io_uring_params.features`` from a bare 8-entry ring (closed at once)."""
    libc = ctypes.CDLL(None, use_errno=True)
    params = (ctypes.c_uint32 * 30)()  # struct io_uring_params: 120 bytes, features at offset 20
    fd = libc.syscall(SYS_IO_URING_SETUP, 8, ctypes.byref(params))
    if fd < 0:
        pytest.skip(f"io_uring_setup itself fails here ({os.strerror(ctypes.get_errno())})")
    os.close(fd)
    return int(params[5])


def refusal() -> trio_uring.UnsupportedError:
    try:
        trio_uring.check_support()
    except trio_uring.UnsupportedError as exc:
        if exc.cause not in ("missing-feature", "missing-opcode"):
            pytest.skip(f"io_uring is unavailable here for another reason ({exc.cause}), not the kernel's age")
        return exc
    pytest.skip(
        f"io_uring is usable on this kernel ({os.uname().release}); these tests are for kernels below the floor"
    )


def test_the_refusal_names_the_floor_and_what_the_kernel_lacks() -> None:
    exc = refusal()
    message = str(exc)
    assert message.startswith("io_uring is unavailable: ")
    assert f"Linux {FLOOR}" in exc.remedy, exc.remedy
    lacking = [name for name, bit in FEATURES.items() if not kernel_features() & bit]
    for name in lacking:
        assert name in message, (name, message)
    assert exc.errno in (None, 95), exc  # EOPNOTSUPP, or no system call failed


def test_run_and_install_refuse_with_the_same_cause() -> None:
    cause = refusal().cause

    async def main() -> None:
        await trio.lowlevel.checkpoint()

    with pytest.raises(trio_uring.UnsupportedError) as info:
        trio_uring.run(main)
    assert info.value.cause == cause
    with pytest.raises(trio_uring.UnsupportedError) as info:
        trio_uring.install()
    assert info.value.cause == cause
    assert not trio_uring.is_installed()
    assert trio_uring.is_supported() is False


def test_install_with_fallback_runs_trios_own_backend() -> None:
    cause = refusal().cause

    async def main() -> tuple[str, bytes]:
        a, b = trio.socket.socketpair()
        with a, b:
            await a.send(b"over epoll")
            data = await b.recv(100)
        return trio.lowlevel.current_statistics().io_statistics.backend, data

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ok = trio_uring.install(fallback=True)
    try:
        assert ok is False
        assert len(caught) == 1, [str(w.message) for w in caught]
        assert cause in str(caught[0].message) or FLOOR in str(caught[0].message)
        assert trio.run(main) == ("epoll", b"over epoll")
    finally:
        trio_uring.uninstall()


def test_the_report_says_unavailable() -> None:
    cause = refusal().cause
    # (a quiet machine's 2 minutes, scaled: under emulation the report took 3)
    proc = subprocess.run(
        [sys.executable, "-m", "trio_uring", "--json"], capture_output=True, text=True, timeout=120 * slowness()
    )
    assert proc.returncode == 1, proc
    report = json.loads(proc.stdout)
    assert report["io_uring"] == "unavailable"
    assert report["cause"] == cause
    assert report["kernel"] == os.uname().release or os.uname().release in json.dumps(report)


def test_a_socket_works_under_the_fallback() -> None:
    """The fallback is trio itself: a real TCP exchange under install(fallback=True)."""
    refusal()

    async def main() -> bytes:
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = trio.socket.socket()
        with listener, client:
            await client.connect(listener.getsockname())
            server, _ = await listener.accept()
            with server:
                await client.send(b"x" * 10000)
                client.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := await server.recv(65536):
                    got += chunk
        return got

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trio_uring.install(fallback=True)
    try:
        assert trio.run(main) == b"x" * 10000
    finally:
        trio_uring.uninstall()
