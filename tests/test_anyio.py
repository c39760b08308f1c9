"""Real anyio programs on trio_uring: TLS, files, subprocesses, threads, UDP,
Unix sockets and cancellation.

Each program runs through anyio's trio backend on io_uring (through
``trio_uring.anyio_run``, or ``anyio.run(backend="trio")`` while installed)
and reports, from inside the run, the IO manager's backend and the io_uring
operations it submitted, so that a test fails if the run silently used epoll
or if the bytes did not go through the ring.  Where a behaviour has to match
stock trio, the same program runs on both backends and the results are
compared.
"""

from __future__ import annotations

import os
import random
import ssl
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import anyio.streams.tls
import anyio.to_thread
import pytest
import trio
import trio.lowlevel
import trio.testing
import trustme

import trio_uring

from .helpers import recv_wait_op
from .test_support import _sysctl_lock

pytest_plugins = ["pytester"]


def _stats() -> tuple[str, dict[str, int]]:
    stats = trio.lowlevel.current_statistics().io_statistics
    return stats.backend, dict(getattr(stats, "ops_submitted", {}))


async def _measured(main: Callable[..., Awaitable[Any]], *args: Any) -> tuple[Any, str, dict[str, int]]:
    """``main(*args)``, the backend it ran on and the ops it submitted."""
    _, before = _stats()
    value = await main(*args)
    backend, after = _stats()
    return value, backend, {name: n - before.get(name, 0) for name, n in after.items() if n > before.get(name, 0)}


def on_uring(main: Callable[..., Awaitable[Any]], *args: Any) -> tuple[Any, dict[str, int]]:
    """Run ``main`` with ``trio_uring.anyio_run``; check it was on io_uring."""
    value, backend, ops = trio_uring.anyio_run(_measured, main, *args)
    assert backend == "io_uring"
    return value, ops


def on_stock(main: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    value, backend, _ = anyio.run(_measured, main, *args, backend="trio")
    assert backend == "epoll"
    return value


# ---- running anyio on io_uring --------------------------------------------------


def test_anyio_run_helper_is_this_call_only() -> None:
    other: list[str] = []

    async def backend() -> str:
        return trio.lowlevel.current_statistics().io_statistics.backend

    async def main() -> str:
        # a trio.run in another thread meanwhile keeps trio's own backend
        thread = threading.Thread(target=lambda: other.append(trio.run(backend)))
        await anyio.to_thread.run_sync(thread.start)
        await anyio.to_thread.run_sync(thread.join)
        return await backend()

    assert trio_uring.anyio_run(main) == "io_uring"
    assert other == ["epoll"]
    assert not trio_uring.is_installed()
    assert anyio.run(backend, backend="trio") == "epoll"
    # while installed, anyio's plain trio backend is on io_uring too
    with trio_uring.installed():
        assert anyio.run(backend, backend="trio") == "io_uring"
    # backend_options reach trio.run
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def sleep_an_hour() -> float:
        await anyio.sleep(3600)
        return anyio.current_time()

    assert trio_uring.anyio_run(sleep_an_hour, backend_options={"clock": clock}) == 3600


def test_no_backend_name_of_its_own() -> None:
    """anyio knows only its built-in backends; trio_uring adds no name."""
    assert "trio_uring" not in anyio.get_all_backends()
    with pytest.raises(LookupError):
        anyio.run(anyio.sleep, 0, backend="trio_uring")


# ---- TLS over anyio streams ------------------------------------------------------


def test_tls_echo_over_anyio_streams() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    payload = random.Random(5).randbytes(300_000)

    async def main() -> tuple[bytes, str | None]:
        async def echo(stream: anyio.abc.ByteStream) -> None:
            async with stream:
                async for chunk in stream:
                    await stream.send(chunk)

        listener = anyio.streams.tls.TLSListener(
            await anyio.create_tcp_listener(local_host="127.0.0.1"), server_context, standard_compatible=False
        )
        port = listener.listener.extra(anyio.abc.SocketAttribute.local_port)  # type: ignore[attr-defined]
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            stream = await anyio.connect_tcp(
                "127.0.0.1", port, ssl_context=client_context, tls_hostname="localhost", tls_standard_compatible=False
            )
            async with stream:
                version = stream.extra(anyio.streams.tls.TLSAttribute.tls_version)

                async def send() -> None:
                    for i in range(0, len(payload), 16_384):
                        await stream.send(payload[i : i + 16_384])

                tg.start_soon(send)
                got = bytearray()
                while len(got) < len(payload):
                    got += await stream.receive()
            tg.cancel_scope.cancel()
        return bytes(got), version

    (echoed, version), ops = on_uring(main)
    assert echoed == payload
    assert version is not None
    assert version.startswith("TLS")
    for name in ("ACCEPT", "CONNECT", recv_wait_op()):
        assert ops.get(name, 0) >= 1, (name, ops)


# ---- files, subprocesses, threads -----------------------------------------------


def test_anyio_open_file(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    payload = random.Random(7).randbytes(200_000)

    async def main() -> tuple[bytes, list[str], int]:
        async with await anyio.open_file(path, "wb") as f:
            for i in range(0, len(payload), 50_000):
                await f.write(payload[i : i + 50_000])
        async with await anyio.open_file(path, "rb") as f:
            back = await f.read()
        async with await anyio.open_file(tmp_path / "lines.txt", "w") as f:
            await f.write("one\ntwo\nthree\n")
        async with await anyio.open_file(tmp_path / "lines.txt") as f:
            lines = [line async for line in f]
        size = (await anyio.Path(path).stat()).st_size
        return back, lines, size

    (back, lines, size), _ops = on_uring(main)
    assert back == payload
    assert lines == ["one\n", "two\n", "three\n"]
    assert size == len(payload)
    assert path.read_bytes() == payload


UPPER = "import sys\nsys.stdout.buffer.write(sys.stdin.buffer.read().upper())"
LINE_ECHO = textwrap.dedent(
    """
    import sys
    for line in sys.stdin.buffer:
        sys.stdout.buffer.write(b"echo " + line)
        sys.stdout.buffer.flush()
    """
)


def test_subprocess_pipes() -> None:
    data = b"hello anyio " * 20_000  # more than a pipe holds: both directions wait

    async def main() -> tuple[bytes, list[bytes], int | None]:
        done = await anyio.run_process([sys.executable, "-c", UPPER], input=data)
        replies = []
        async with await anyio.open_process([sys.executable, "-c", LINE_ECHO]) as process:
            assert process.stdin is not None
            assert process.stdout is not None
            for word in (b"one", b"two", b"three"):
                await process.stdin.send(word + b"\n")
                reply = b""
                while not reply.endswith(b"\n"):
                    reply += await process.stdout.receive()
                replies.append(reply)
            await process.stdin.aclose()
            assert await process.wait() == 0
        return done.stdout, replies, done.returncode

    (out, replies, returncode), ops = on_uring(main)
    assert returncode == 0
    assert out == data.upper()
    assert replies == [b"echo one\n", b"echo two\n", b"echo three\n"]
    # the pipes (and the child's exit) are waited for through io_uring polls
    assert ops.get("POLL_ADD", 0) >= 3, ops


def test_threads() -> None:
    main_thread = threading.get_ident()

    async def in_run(n: int) -> tuple[int, str]:
        await anyio.lowlevel.checkpoint()
        return n * n, trio.lowlevel.current_statistics().io_statistics.backend

    def worker(n: int) -> tuple[int, int, str]:
        # back into the run from the worker thread
        square, backend = anyio.from_thread.run(in_run, n)
        return threading.get_ident(), square, backend

    async def main() -> list[tuple[int, int, str]]:
        results: list[tuple[int, int, str]] = [(0, 0, "")] * 20
        limiter = anyio.CapacityLimiter(4)

        async def one(i: int) -> None:
            results[i] = await anyio.to_thread.run_sync(worker, i, limiter=limiter)

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, i)
        return results

    results, _ops = on_uring(main)
    assert [square for _, square, _ in results] == [i * i for i in range(20)]
    assert {backend for _, _, backend in results} == {"io_uring"}
    assert main_thread not in {ident for ident, _, _ in results}


# ---- UDP and Unix sockets --------------------------------------------------------


def test_udp() -> None:
    async def main() -> list[tuple[bytes, Any]]:
        received: list[tuple[bytes, Any]] = []
        async with (
            await anyio.create_udp_socket(local_host="127.0.0.1") as a,
            await anyio.create_udp_socket(local_host="127.0.0.1") as b,
        ):
            b_port = b.extra(anyio.abc.SocketAttribute.local_port)
            a_port = a.extra(anyio.abc.SocketAttribute.local_port)
            async with anyio.create_task_group() as tg:

                async def receive() -> None:
                    for _ in range(3):
                        received.append(await b.receive())

                tg.start_soon(receive)
                await trio.testing.wait_all_tasks_blocked()  # the receive is in the kernel
                for word in (b"one", b"two", b"three"):
                    await a.sendto(word, "127.0.0.1", b_port)
            async with await anyio.create_connected_udp_socket("127.0.0.1", a_port, local_host="127.0.0.1") as c:
                await c.send(b"connected")
                data, _addr = await a.receive()
                received.append((data, None))
        return received

    received, ops = on_uring(main)
    assert [data for data, _ in received] == [b"one", b"two", b"three", b"connected"]
    assert {addr[0] for _, addr in received[:3]} == {"127.0.0.1"}
    assert ops.get("RECVMSG", 0) >= 1, ops


def test_unix_sockets(tmp_path: Path) -> None:
    path = tmp_path / "sock"

    async def main() -> tuple[bytes, bytes]:
        async def serve(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                msg, fds = await stream.receive_fds(100, 1)  # type: ignore[attr-defined]
                # write the reply into the pipe whose write end came with the message
                os.write(fds[0], msg.upper())
                os.close(fds[0])
                await stream.send(b"done")

        listener = await anyio.create_unix_listener(path)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, serve)
            r, w = os.pipe()
            try:
                async with await anyio.connect_unix(path) as stream:
                    await trio.testing.wait_all_tasks_blocked()  # the server's receive is in the kernel
                    await stream.send_fds(b"through the pipe", [w])
                    os.close(w)
                    w = -1
                    reply = await stream.receive()
                piped = os.read(r, 100)
            finally:
                os.close(r)
                if w >= 0:
                    os.close(w)
            tg.cancel_scope.cancel()
        return reply, piped

    (reply, piped), ops = on_uring(main)
    assert reply == b"done"
    assert piped == b"THROUGH THE PIPE"
    for name in ("ACCEPT", "CONNECT", "RECVMSG"):
        assert ops.get(name, 0) >= 1, (name, ops)


# ---- cancellation ----------------------------------------------------------------


async def _cancelled_receive_keeps_data() -> tuple[bool, bytes, bytes]:
    """A receive cancelled by move_on_after while waiting; then data that
    arrives is all there for the next receive."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener:
        client = await anyio.connect_tcp("127.0.0.1", port)
        server = await listener.listeners[0].accept()  # type: ignore[attr-defined]
        async with client, server:
            with anyio.move_on_after(0.05) as scope:
                await client.receive()
            await server.send(b"after the timeout")
            first = await client.receive()
            # cancelled while data is arriving: whatever was not returned stays
            await server.send(b"x" * 100_000)
            got = b""
            with anyio.move_on_after(0):
                got += await client.receive()
            while len(got) < 100_000:
                got += await client.receive()
    return scope.cancelled_caught, first, got


def test_move_on_after_around_a_receive_keeps_the_data() -> None:
    (caught, first, rest), ops = on_uring(_cancelled_receive_keeps_data)
    assert (caught, first, rest) == (True, b"after the timeout", b"x" * 100_000)
    assert ops.get("ASYNC_CANCEL", 0) >= 1, ops  # the RECV was in the kernel when cancelled
    assert on_stock(_cancelled_receive_keeps_data) == (caught, first, rest)


def test_receives_under_random_timeouts_lose_nothing() -> None:
    rng = random.Random(11)
    chunks = [rng.randbytes(rng.randrange(1, 3000)) for _ in range(1500)]

    async def main() -> bytes:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener:
            client = await anyio.connect_tcp("127.0.0.1", port)
            server = await listener.listeners[0].accept()  # type: ignore[attr-defined]
            async with client, server, anyio.create_task_group() as tg:

                async def send() -> None:
                    for i, chunk in enumerate(chunks):
                        await server.send(chunk)
                        if i % 50 == 0:
                            await anyio.sleep(0.001)

                tg.start_soon(send)
                got = bytearray()
                total = sum(map(len, chunks))
                while len(got) < total:
                    with anyio.move_on_after(rng.choice([0, 1e-5, 1e-4, 5e-4])):
                        got += await client.receive()
        return bytes(got)

    got, ops = on_uring(main)
    assert got == b"".join(chunks)
    assert ops.get("ASYNC_CANCEL", 0) >= 1, ops


# ---- anyio's pytest plugin -------------------------------------------------------

ANYIO_PLUGIN_TESTS = """
import pytest
import trio

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.fixture
async def backend_in_fixture(anyio_backend):
    # an async fixture runs in the same run as the test
    if anyio_backend == "trio":
        yield trio.lowlevel.current_statistics().io_statistics.backend
    else:
        yield "asyncio"


async def test_backend(anyio_backend, backend_in_fixture):
    import anyio

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"ping")
    if anyio_backend == "trio":
        stats = trio.lowlevel.current_statistics().io_statistics
        print("BACKEND", stats.backend, "CONNECT", stats.ops_submitted.get("CONNECT", 0))
        assert backend_in_fixture == stats.backend == "io_uring"
        assert stats.ops_submitted.get("CONNECT", 0) >= 1
"""


def test_anyio_pytest_plugin_under_trio_uring_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_generated=ANYIO_PLUGIN_TESTS)
    with _sysctl_lock(shared=True):
        result = pytester.runpytest_subprocess("--trio-uring", "-s", "-p", "no:cacheprovider", timeout=60)
        result.assert_outcomes(passed=2)
        result.stdout.fnmatch_lines(["*BACKEND io_uring CONNECT 1*", "trio_uring: 1 trio runs on io_uring, 0 on *"])
        # without the option, the trio-backend test runs on epoll and fails
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
        result.assert_outcomes(passed=1, failed=1)
