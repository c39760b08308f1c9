"""Shared helpers for the tests: real sockets, fd counts, statistics."""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import resource
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio
import trio.lowlevel

import trio_uring
from trio_uring._features import KernelFeatures
from trio_uring._manager import UringIOManager
from trio_uring._ring import Ring

#: ``make stress`` sets this to scale the load and cancellation tests up.
STRESS = int(os.environ.get("TRIO_URING_STRESS", "1"))


# ---- the kernel (or kernel profile, $TRIO_URING_KERNEL) the tests run on ----

_KERNEL: dict[str, tuple[KernelFeatures, str, tuple[str, ...]]] = {}


def _kernel_facts() -> tuple[KernelFeatures, str, tuple[str, ...]]:
    """The record, the auto mode and the modes available, asked of the
    kernel (under the profile in force) once per profile."""
    profile = os.environ.get("TRIO_URING_KERNEL", "native")
    if profile not in _KERNEL:
        with Ring(8, 16) as ring:
            record, auto = ring.kernel, ring.mode
        modes = []
        for mode in ("defer", "coop", "plain"):
            try:
                Ring(8, 16, mode=mode).close()  # type: ignore[arg-type]
            except OSError:
                continue
            modes.append(mode)
        _KERNEL[profile] = (record, auto, tuple(modes))
    return _KERNEL[profile]


def kernel() -> KernelFeatures:
    """What the rings of this test session can do (see trio_uring._features)."""
    return _kernel_facts()[0]


def auto_mode() -> str:
    """The ring mode a run gets here ("defer" on 6.1+, "coop" on 5.19, "plain" before)."""
    return _kernel_facts()[1]


def needs_mode(mode: str) -> None:
    """Skip, saying why, where the kernel (profile) has no such ring mode."""
    if mode not in _kernel_facts()[2]:
        pytest.skip(f"the {mode} ring mode needs setup flags kernel {kernel().profile} lacks")


def needs(capability: str, what: str) -> None:
    """Skip unless ``kernel().<capability>`` (a property, or an opcode name
    in capitals); ``what`` names the feature and its release for the reason."""
    record = kernel()
    have = record.has_op(capability) if capability.isupper() else getattr(record, capability)
    if not have:
        pytest.skip(f"kernel profile {record.profile} ({record.release}) lacks {what}; its fallback is tested apart")


def use_multishot_accept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opt the runs this test starts in to the listener's multishot ACCEPT
    (``TRIO_URING_ACCEPT=multishot``; the default is one ACCEPT per call),
    skipping, saying why, where the kernel (profile) lacks it."""
    needs("multishot_accept", "multishot ACCEPT (5.19), which TRIO_URING_ACCEPT=multishot opts in to")
    monkeypatch.setenv("TRIO_URING_ACCEPT", "multishot")


def recv_wait_op() -> str:
    """The opcode a receive that has to wait submits: a RECV into a
    provided buffer (5.19+), or a POLL_ADD before it (the fallback)."""
    return "RECV" if kernel().buf_ring else "POLL_ADD"


def run(fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
    return trio_uring.run(fn, *args, **kwargs)


def fd_count() -> int:
    """Open fds of this process, after a garbage collection: an object
    that an earlier test dropped (and whose finalizer closes an fd) must
    not make a count taken now differ from one taken a moment later."""
    gc.collect()
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
    itself); return its stdout, failing with its stderr if it fails.  The
    ``timeout`` is a quiet machine's, scaled by :func:`slowness`."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout * slowness(), check=False
        )
    except subprocess.TimeoutExpired as exc:
        # what the child said before it was killed (a faulthandler dump, if it set one up)
        said = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise AssertionError(f"the child ran over {exc.timeout:.0f} s; its stderr:\n{said[-6000:]}") from None
    assert out.returncode == 0, out.stderr
    return out.stdout


#: seconds for ``python -c "import trio_uring"`` on a quiet 2-core machine
QUIET_STARTUP = 0.3


@functools.cache
def slowness() -> float:
    """How many times slower than a quiet machine this one runs programs,
    now (at least 1): measured as a fresh interpreter importing trio_uring.
    Under qemu's emulation (TCG) that took 18 s instead of 0.3 s, and on a
    2-core host at load 25 2-3 s.  Wall-clock budgets of tests that run a
    whole program (the benchmarks' quick configurations) are multiplied by
    it, so that a slow machine does not fail them."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import trio_uring"], check=True, timeout=600)
    return max(1.0, (time.monotonic() - start) / QUIET_STARTUP)


def rss_kib() -> int:
    """This process's resident set size, in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


@contextlib.contextmanager
def nofile_at_least(n: int) -> Iterator[None]:
    """Raise this process's soft RLIMIT_NOFILE to ``n`` (never above the hard
    limit: skip the test if that is too low), restoring it afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if n > hard:
        pytest.skip(f"needs {n} file descriptors; the hard RLIMIT_NOFILE is {hard}")
    if n > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class ServerChild:
    """``tests/reliability_server.py`` in a child process: an echo server on
    trio_uring that reports its own fds, RSS and io_uring state on request.
    Every read from it has a deadline, so a hung server fails the test."""

    def __init__(self, *args: str, timeout: float = 60) -> None:
        self.timeout = timeout * slowness()  # a quiet machine's, scaled like run_child's
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reliability_server.py")
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(
            [sys.executable, script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr
        )
        self._buffered = b""
        hello = self._read()
        self.port: int = hello["port"]
        self.nofile: int = hello["nofile"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buffered:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise AssertionError(f"the server did not answer within {self.timeout} s{self._stderr()}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"the server exited ({self.proc.wait()}){self._stderr()}")
            self._buffered += chunk
        line, self._buffered = self._buffered.split(b"\n", 1)
        result: dict[str, Any] = json.loads(line)
        return result

    def _stderr(self) -> str:
        self.stderr.seek(0)
        return "\nstderr:\n" + self.stderr.read().decode(errors="replace")

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stats\n")
        self.proc.stdin.flush()
        return self._read()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        """Poll ``stats()`` until ``predicate`` holds (failing after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            if predicate(s):
                return s
            if time.monotonic() > deadline:
                raise AssertionError(f"the server never got there: {s}")
            time.sleep(0.05)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=self.timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.stderr.close()

    def __enter__(self) -> ServerChild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def io_uring_fds() -> list[int]:
    """This process's fds that are io_uring instances."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[io_uring]":
                found.append(int(name))
    return found


def manager() -> UringIOManager:
    m = trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager
    assert isinstance(m, UringIOManager)
    return m


def requests_and_records(m: UringIOManager) -> tuple[int, int]:
    """The io_uring requests in flight, and the per-fd records that hold a
    waiter or a request (an empty record is kept for the fd's next
    operation until it is closed), leaving out trio's own run_sync_soon
    task, whose readiness wait on its wake-up socket comes and goes."""
    system = {op.fd for op in m._ops.values() if op.task is not None and "run_sync_soon" in op.task.name}
    ops = sum(op.fd not in system for op in m._ops.values())
    return ops, sum(fd not in system and not state.empty() for fd, state in m._fds.items())


@contextlib.contextmanager
def nothing_left_behind() -> Iterator[None]:
    """Inside a run: the fds, the io_uring requests in flight and the
    manager's per-fd records are what they were before the block."""
    m = manager()
    before = (fd_count(), *requests_and_records(m))
    yield
    assert (fd_count(), *requests_and_records(m)) == before, (m._ops, m._fds)


def run_as_guest_of_asyncio(trio_main: Callable[[], Awaitable[Any]]) -> Any:
    """``trio_main()`` as a trio guest run inside ``asyncio.run`` (with
    whatever IO manager is installed); its result, or its exception."""
    import asyncio

    async def host() -> Any:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        trio.lowlevel.start_guest_run(
            trio_main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
            host_uses_signal_set_wakeup_fd=True,
        )
        return (await done).unwrap()

    return asyncio.run(host())
