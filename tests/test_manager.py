"""UringIOManager under trio: readiness, perform() and its cancellation table,
notify_closing, wakeups, statistics, teardown, guest mode, installation."""

from __future__ import annotations

import errno
import os
import random
import signal
import socket
import threading
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

import trio_uring
from trio_uring import _kernel as k
from trio_uring._manager import Operation, UringIOManager

from .helpers import auto_mode, run_as_guest_of_asyncio


def manager() -> UringIOManager:
    io = trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager
    assert isinstance(io, UringIOManager)
    return io


async def read_op(fd: int, n: int) -> bytes:
    """One READ through perform(), the way lowlevel operations use it."""
    m = manager()
    buf = bytearray(n)
    pin = k.Buffer(buf, writable=True)
    op = await m.perform(fd, m.ring.prep_read, pin.address, n, -1, keep=pin)
    assert isinstance(op, Operation)
    return bytes(buf[: op.res])


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def run(fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
    return trio_uring.run(fn, *args, **kwargs)


# ---- readiness ---------------------------------------------------------------------


def test_backend_and_statistics() -> None:
    async def main() -> None:
        stats = trio.lowlevel.current_statistics().io_statistics
        assert stats.backend == "io_uring"
        assert stats.ring_mode == auto_mode()
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.lowlevel.wait_readable, a)
                await trio.testing.wait_all_tasks_blocked()
                stats = trio.lowlevel.current_statistics().io_statistics
                # one for our waiter, one for trio's own wakeup task
                assert stats.tasks_waiting_read == 2
                assert stats.tasks_waiting_write == 0
                assert stats.ops_submitted["POLL_ADD"] >= 2
                b.send(b"x")
            stats = trio.lowlevel.current_statistics().io_statistics
            assert stats.tasks_waiting_read == 1

    run(main)


def test_wait_readable_writable_on_pipe() -> None:
    async def main() -> None:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        try:
            await trio.lowlevel.wait_writable(w)
            with trio.move_on_after(0.05) as cs:
                await trio.lowlevel.wait_readable(r)
            assert cs.cancelled_caught
            os.write(w, b"abc")
            with trio.fail_after(5):
                await trio.lowlevel.wait_readable(r)
            assert os.read(r, 10) == b"abc"
        finally:
            os.close(r)
            os.close(w)

    run(main)


def test_writer_not_woken_by_peer_shutdown() -> None:
    # io_uring reports EPOLLRDHUP to every poll; a writer whose peer shut down
    # its sending side must still block while the buffer is full, as on epoll.
    async def main() -> None:
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            try:
                while True:
                    a.send(b"x" * 65536)
            except BlockingIOError:
                pass
            b.shutdown(socket.SHUT_WR)
            with trio.move_on_after(0.2) as cs:
                await trio.lowlevel.wait_writable(a)
            assert cs.cancelled_caught

    run(main)


def test_busy_resource() -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        with a, b:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.lowlevel.wait_readable, a)
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(trio.BusyResourceError, match="another task"):
                    await trio.lowlevel.wait_readable(a)
                # a writer on the same fd is fine
                await trio.lowlevel.wait_writable(a)
                nursery.cancel_scope.cancel()

    run(main)


def test_wait_on_bad_fd() -> None:
    async def main() -> None:
        s = socket.socket()
        fd = s.fileno()
        s.close()
        for wait in (trio.lowlevel.wait_readable, trio.lowlevel.wait_writable):
            with pytest.raises(OSError, match=r"^\[Errno 9\] Bad file descriptor$"):
                await wait(fd)

    run(main)


def test_cancelled_polls_do_not_accumulate() -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        with a, b:
            for _ in range(200):
                with trio.move_on_after(0):
                    await trio.lowlevel.wait_readable(a)
            await trio.sleep(0.05)
            stats = trio.lowlevel.current_statistics().io_statistics
            # every abandoned poll was cancelled in the kernel and forgotten
            assert stats.ops_in_flight <= 2
            assert stats.ops_submitted.get("ASYNC_CANCEL", 0) >= 1

    run(main)


# ---- perform(): the cancellation table --------------------------------------------------


def test_perform_read_delivers_bytes() -> None:
    async def main() -> None:
        r, w = os.pipe()
        try:
            os.write(w, b"0123456789")
            assert await read_op(r, 4) == b"0123"
            assert await read_op(r, 100) == b"456789"
            stats = trio.lowlevel.current_statistics().io_statistics
            assert stats.ops_submitted["READ"] == 2
        finally:
            os.close(r)
            os.close(w)

    run(main)


def test_perform_errors_are_oserrors() -> None:
    async def main() -> None:
        r, w = os.pipe()
        try:
            with pytest.raises(OSError, match="Bad file descriptor") as info:
                await read_op(w, 4)  # the write end
            assert info.value.errno == errno.EBADF
        finally:
            os.close(r)
            os.close(w)

    run(main)


def test_cancelled_read_had_no_effect() -> None:
    async def main() -> None:
        r, w = os.pipe()
        try:
            with trio.move_on_after(0.05) as cs:
                await read_op(r, 100)
            assert cs.cancelled_caught
            # the bytes written after the cancellation are all still there
            os.write(w, b"after")
            assert os.read(r, 100) == b"after"
            assert trio.lowlevel.current_statistics().io_statistics.ops_in_flight == 1  # the wakeup poll
        finally:
            os.close(r)
            os.close(w)

    run(main)


def test_result_that_won_the_race_is_delivered() -> None:
    # The data lands and the cancel is requested in the same tick, after the
    # READ was queued: the kernel completes the READ first, the cancel finds
    # nothing, and we must deliver the bytes, then raise Cancelled at the next
    # checkpoint.
    r, w = os.pipe()
    got: list[object] = []
    holder: list[trio.CancelScope] = []

    class WriteThenCancel(trio.abc.Instrument):
        armed = False

        def before_io_wait(self, timeout: float) -> None:
            if self.armed and holder:
                self.armed = False
                os.write(w, b"raced")
                holder[0].cancel()

    instrument = WriteThenCancel()

    async def main() -> None:
        with trio.CancelScope() as cs:
            holder.append(cs)
            instrument.armed = True
            got.append(await read_op(r, 100))
            try:
                await trio.lowlevel.checkpoint()
            except trio.Cancelled:
                got.append("cancelled at next checkpoint")
                raise
        assert cs.cancelled_caught

    try:
        run(main, instruments=[instrument])
    finally:
        os.close(r)
        os.close(w)
    assert got == [b"raced", "cancelled at next checkpoint"]


@pytest.mark.parametrize("seed", range(3))
def test_random_cancellation_loses_no_byte(seed: int) -> None:
    rng = random.Random(seed)
    payload = bytes(rng.randrange(256) for _ in range(20000))
    received = bytearray()
    cancelled = 0

    async def main() -> None:
        nonlocal cancelled
        r, w = os.pipe()
        os.set_blocking(w, False)

        async def writer() -> None:
            view = memoryview(payload)
            while view:
                n = min(len(view), rng.randrange(1, 700))
                await trio.lowlevel.wait_writable(w)
                written = os.write(w, view[:n])
                view = view[written:]
                if rng.random() < 0.3:
                    await trio.sleep(rng.random() / 500)
            os.close(w)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                while True:
                    with trio.move_on_after(rng.random() / 1000) as cs:
                        chunk = await read_op(r, rng.randrange(1, 1000))
                        if not chunk:
                            break
                        received.extend(chunk)
                    if cs.cancelled_caught:
                        cancelled += 1
        finally:
            os.close(r)

    run(main)
    assert bytes(received) == payload
    assert cancelled > 0  # the test exercised the cancel path


def test_notify_closing_interrupts_everything_and_releases_the_file() -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        b.settimeout(5)
        results: dict[str, object] = {}

        async def reader() -> None:
            try:
                await read_op(a.fileno(), 100)
            except trio.ClosedResourceError as exc:
                results["perform"] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            # a reader parked on perform(); now close the socket under it
            trio.lowlevel.notify_closing(a)
            a.close()
            # the kernel dropped its reference: the peer sees EOF at once
            assert b.recv(10) == b""
        assert isinstance(results["perform"], trio.ClosedResourceError)
        b.close()

    run(main)


def test_notify_closing_wakes_poll_waiter() -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        with b:
            caught: list[BaseException] = []

            async def waiter() -> None:
                try:
                    await trio.lowlevel.wait_readable(a)
                except trio.ClosedResourceError as exc:
                    caught.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                trio.lowlevel.notify_closing(a)
                a.close()
            assert len(caught) == 1
            # a new fd with the same number starts clean
            c = socket.socket()
            with c:
                with trio.move_on_after(0.01):
                    await trio.lowlevel.wait_readable(c)

    run(main)


# ---- wakeups ------------------------------------------------------------------------------


def test_force_wakeup_from_thread() -> None:
    async def main() -> float:
        token = trio.lowlevel.current_trio_token()
        event = trio.Event()

        def in_thread() -> None:
            time.sleep(0.1)
            token.run_sync_soon(event.set)

        threading.Thread(target=in_thread).start()
        start = trio.current_time()
        with trio.fail_after(10):
            await event.wait()
        return trio.current_time() - start

    assert run(main) < 5


def test_signal_during_wait() -> None:
    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGUSR1) as signals:
            threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1)).start()
            with trio.fail_after(10):
                async for signum in signals:
                    assert signum == signal.SIGUSR1
                    break

    run(main)


def test_threads_and_subprocesses() -> None:
    async def main() -> None:
        assert await trio.to_thread.run_sync(lambda: 42) == 42
        result = await trio.run_process(["sh", "-c", "echo hi"], capture_stdout=True)
        assert result.stdout == b"hi\n"

    run(main)


# ---- teardown -------------------------------------------------------------------------------


def test_close_cancels_and_drains_in_flight_operations() -> None:
    baseline = fd_count()
    m = UringIOManager(mode="auto")
    pipes = [os.pipe() for _ in range(300)]
    results: list[int] = []
    buffers = []
    for r, _w in pipes:
        buf = k.Buffer(bytearray(64), writable=True)
        buffers.append(buf)
        m.submit_multishot(
            r, m.ring.prep_read, buf.address, 64, -1, callback=lambda res, _f: results.append(res), keep=buf
        )
    m.get_events(0)  # submit them
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a leak would warn
        m.close()
    assert time.monotonic() - start < 5
    m.close()  # idempotent
    for r, w in pipes:
        os.close(r)
        os.close(w)
    assert fd_count() == baseline
    # every read was cancelled by the kernel, none left running
    assert m.statistics().ops_in_flight == 0


def test_runs_in_sequence_and_in_threads_leak_nothing() -> None:
    async def main() -> str:
        await trio.lowlevel.checkpoint()
        return str(trio.lowlevel.current_statistics().io_statistics.backend)

    baseline = fd_count()
    for _ in range(20):
        assert run(main) == "io_uring"
    assert fd_count() == baseline

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(run(main))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["io_uring"] * 4
    assert fd_count() == baseline


# ---- guest mode -------------------------------------------------------------------------------


def test_guest_mode_on_asyncio() -> None:
    async def trio_main() -> tuple[str, str, bytes]:
        stats = trio.lowlevel.current_statistics().io_statistics
        r, w = os.pipe()
        try:

            async def later() -> None:
                await trio.sleep(0.05)
                os.write(w, b"guest")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(later)
                data = await read_op(r, 10)
            await trio.to_thread.run_sync(time.sleep, 0.01)
            with trio.move_on_after(0.02):
                await read_op(r, 10)  # cancelled while in flight, in guest mode
            return stats.backend, stats.ring_mode, data
        finally:
            os.close(r)
            os.close(w)

    with trio_uring.installed():
        assert run_as_guest_of_asyncio(trio_main) == ("io_uring", "plain", b"guest")


# ---- installation ---------------------------------------------------------------------------


def test_install_uninstall_and_context_manager() -> None:
    async def backend() -> str:
        return str(trio.lowlevel.current_statistics().io_statistics.backend)

    assert not trio_uring.is_installed()
    assert trio.run(backend) == "epoll"
    with trio_uring.installed() as ok:
        assert ok is True
        assert trio_uring.is_installed()
        assert trio.run(backend) == "io_uring"
    assert trio.run(backend) == "epoll"
    trio_uring.install()
    try:
        assert trio.run(backend) == "io_uring"
    finally:
        trio_uring.uninstall()
    assert trio.run(backend) == "epoll"


def test_run_affects_only_its_own_thread() -> None:
    other: list[str] = []

    async def backend() -> str:
        return str(trio.lowlevel.current_statistics().io_statistics.backend)

    async def main() -> str:
        t = threading.Thread(target=lambda: other.append(trio.run(backend)))
        t.start()
        await trio.to_thread.run_sync(t.join)
        return await backend()

    assert run(main) == "io_uring"
    assert other == ["epoll"]
    assert trio.run(backend) == "epoll"


def test_run_passes_arguments_and_exceptions() -> None:
    async def add(a: int, b: int) -> int:
        await trio.lowlevel.checkpoint()
        return a + b

    assert trio_uring.run(add, 2, 3) == 5

    async def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        trio_uring.run(boom)
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def sleepy() -> float:
        await trio.sleep(1000)
        return trio.current_time()

    assert trio_uring.run(sleepy, clock=clock) >= 1000


def test_an_sqe_that_cannot_be_written_leaves_no_request_behind() -> None:
    """A value that does not fit its SQE field fails before anything reaches
    the ring: OverflowError, and close() has nothing to wait for."""

    async def main() -> None:
        m = trio.lowlevel.current_statistics().io_statistics
        assert m.backend == "io_uring"
        manager = trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager
        r, w = os.pipe()
        buf = k.Buffer(bytearray(8), writable=True)
        before = manager.statistics().ops_in_flight
        with pytest.raises(OverflowError, match="out of range"):
            await manager.perform(r, manager.ring.prep_read, buf.address, 2**40, 0, keep=buf)
        assert manager.statistics().ops_in_flight == before
        os.close(r)
        os.close(w)

    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(main)
    assert time.monotonic() - start < 4  # no 5-second drain at close
