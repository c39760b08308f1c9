"""trio.SocketStream's receive_some / send_all written out for UringSocket
(trio_uring/_stream.py): the same bytes, the same exceptions with the same
causes as trio's own methods, cancellation in flight byte for byte, and
trio's methods back once trio_uring is gone."""

from __future__ import annotations

import random
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

import trio_uring
from trio_uring import _stream

from .helpers import STRESS, fd_count, ops_submitted, run, run_as_guest_of_asyncio
from .test_socket import tcp_stream_pair

_TRIO_RECEIVE_SOME = trio.SocketStream.receive_some
_TRIO_SEND_ALL = trio.SocketStream.send_all


def test_methods_are_replaced_while_installed_and_given_back() -> None:
    assert trio.SocketStream.receive_some is _TRIO_RECEIVE_SOME

    async def inside() -> tuple[object, object]:
        return trio.SocketStream.receive_some, trio.SocketStream.send_all

    assert run(inside) == (_stream.receive_some, _stream.send_all)
    assert trio.SocketStream.receive_some is _TRIO_RECEIVE_SOME
    assert trio.SocketStream.send_all is _TRIO_SEND_ALL
    assert trio.run(inside) == (_TRIO_RECEIVE_SOME, _TRIO_SEND_ALL)


def test_a_method_someone_else_replaced_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    async def counting_receive_some(self: trio.SocketStream, max_bytes: int | None = None) -> bytes:
        calls.append(1)
        return await _TRIO_RECEIVE_SOME(self, max_bytes)

    monkeypatch.setattr(trio.SocketStream, "receive_some", counting_receive_some)

    async def main() -> tuple[object, object, bytes]:
        client, server = await tcp_stream_pair()
        async with client, server:
            await client.send_all(b"hi")
            data = await server.receive_some()
        return trio.SocketStream.receive_some, trio.SocketStream.send_all, data

    assert run(main) == (counting_receive_some, _stream.send_all, b"hi")
    assert calls == [1]
    assert trio.SocketStream.receive_some is counting_receive_some  # still theirs after the run
    assert trio.SocketStream.send_all is _TRIO_SEND_ALL


def describe(exc: BaseException) -> tuple[Any, ...]:
    cause = exc.__cause__
    return (
        type(exc),
        str(exc),
        type(cause),
        getattr(cause, "errno", None),
        exc.__suppress_context__,
    )


async def reset_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """A connection whose server side was closed with RST."""
    client, server = await tcp_stream_pair()
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    await client.send_all(b"unread")
    await trio.sleep(0.01)
    await server.aclose()
    await trio.sleep(0.01)
    return client, server


async def closed(stream: trio.SocketStream) -> trio.SocketStream:
    await stream.aclose()
    return stream


async def after_eof(stream: trio.SocketStream) -> trio.SocketStream:
    await stream.send_eof()
    return stream


Scenario = Callable[[], Awaitable[Any]]


async def pair_then(
    prepare: Callable[[trio.SocketStream], Awaitable[trio.SocketStream]], call: Callable[[trio.SocketStream], Any]
) -> Any:
    client, server = await tcp_stream_pair()
    try:
        return await call(await prepare(client))
    finally:
        await client.aclose()
        await server.aclose()


async def as_is(stream: trio.SocketStream) -> trio.SocketStream:
    return stream


async def on_reset(call: Callable[[trio.SocketStream], Any]) -> Any:
    client, _server = await reset_pair()
    try:
        return await call(client)
    finally:
        await client.aclose()


async def send_until_broken(stream: trio.SocketStream) -> None:
    for _ in range(200):
        await stream.send_all(b"x" * 65536)


async def two_sends(stream: trio.SocketStream) -> None:
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.send_all, b"x" * 1_000_000)
        await trio.testing.wait_all_tasks_blocked()
        try:
            await stream.send_all(b"y")
        finally:
            nursery.cancel_scope.cancel()


async def two_receives(stream: trio.SocketStream) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.receive_some, 10)
        await trio.testing.wait_all_tasks_blocked()
        try:
            await stream.receive_some(10)
        finally:
            nursery.cancel_scope.cancel()


SCENARIOS: dict[str, Scenario] = {
    "receive_some(0)": lambda: pair_then(as_is, lambda s: s.receive_some(0)),
    "receive_some(-1)": lambda: pair_then(as_is, lambda s: s.receive_some(-1)),
    "receive_some(1.5)": lambda: pair_then(as_is, lambda s: s.receive_some(1.5)),
    "receive_some('x')": lambda: pair_then(as_is, lambda s: s.receive_some("x")),
    "receive_some after aclose": lambda: pair_then(closed, lambda s: s.receive_some()),
    "receive_some(0) after aclose": lambda: pair_then(closed, lambda s: s.receive_some(0)),
    "receive_some after reset": lambda: on_reset(lambda s: s.receive_some()),
    "two receive_some": lambda: pair_then(as_is, two_receives),
    "send_all after aclose": lambda: pair_then(closed, lambda s: s.send_all(b"data")),
    "send_all(b'') after aclose": lambda: pair_then(closed, lambda s: s.send_all(b"")),
    "send_all after send_eof": lambda: pair_then(after_eof, lambda s: s.send_all(b"data")),
    "send_all('text')": lambda: pair_then(as_is, lambda s: s.send_all("text")),
    "send_all(None)": lambda: pair_then(as_is, lambda s: s.send_all(None)),
    "send_all to a reset peer": lambda: on_reset(send_until_broken),
    "two send_all": lambda: pair_then(as_is, two_sends),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_errors_are_trios_with_the_same_causes(name: str) -> None:
    async def attempt() -> tuple[Any, ...]:
        try:
            await SCENARIOS[name]()
        except BaseException as exc:
            inner = exc
            while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
                inner = inner.exceptions[0]
            return describe(inner)
        raise AssertionError(f"{name}: no error")

    ours, stock = run(attempt), trio.run(attempt)
    assert ours == stock
    assert issubclass(ours[0], Exception)


def test_odd_but_valid_arguments_give_trios_results() -> None:
    async def main() -> list[Any]:
        client, server = await tcp_stream_pair()
        out: list[Any] = []
        async with client, server:
            await client.send_all(bytearray(b"from a bytearray"))
            await client.send_all(memoryview(b"--from a memoryview--")[2:-2])
            await client.send_all(array_of(b"|array"))
            out.append(await server.receive_some(True))  # bool is an int: 1 byte
            out.append(await server.receive_some(None))
        return out

    def array_of(data: bytes) -> Any:
        import array

        return array.array("b", data)

    assert run(main) == trio.run(main) == [b"f", b"rom a bytearrayfrom a memoryview|array"]


def test_send_all_larger_than_the_socket_buffer_arrives_whole() -> None:
    payload = random.Random(7).randbytes(3_000_000)
    tail = bytearray(payload[:1000])

    async def main() -> dict[str, int]:
        client, server = await tcp_stream_pair()
        client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        got = bytearray()

        async def reader() -> None:
            while len(got) < len(payload) + len(tail):
                got.extend(await server.receive_some(7000))

        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await client.send_all(payload)
            await client.send_all(tail)
        assert bytes(got) == payload + tail
        return ops_submitted()

    ops = run(main)
    assert ops.get("SEND", 0) >= 1  # the buffer filled: the rest waited on io_uring


def test_cancelled_streams_keep_every_byte_in_order() -> None:
    """Full duplex over SocketStream, small socket buffers, random
    sub-millisecond cancel scopes around every receive_some: a cancelled
    receive_some loses nothing, so every byte arrives once, in order.  (A
    cancelled send_all may have sent a prefix -- trio's contract -- which
    the next test checks.)"""
    connections = 8
    records = 100 * STRESS
    stats = {"cancelled": 0}

    async def one_way(seed: int, out: trio.SocketStream, inp: trio.SocketStream) -> None:
        rng = random.Random(seed)
        payload = rng.randbytes(records * 1500)
        received = bytearray()

        async def writer() -> None:
            view = memoryview(payload)
            while view:
                n = min(len(view), rng.randrange(1, 9000))
                await out.send_all(view[:n])
                view = view[n:]
                if rng.random() < 0.3:
                    with trio.move_on_after(rng.random() / 5000) as cs:
                        await out.wait_send_all_might_not_block()
                    stats["cancelled"] += cs.cancelled_caught
            await out.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            while True:
                with trio.move_on_after(rng.random() / 3000) as cs:
                    chunk = await inp.receive_some(rng.randrange(1, 9000))
                    if not chunk:
                        break
                    received += chunk
                stats["cancelled"] += cs.cancelled_caught
        assert bytes(received) == payload

    async def main() -> int:
        before = ops_submitted().get("ASYNC_CANCEL", 0)
        fds = fd_count()
        async with trio.open_nursery() as nursery:
            for i in range(connections):
                a, b = await tcp_stream_pair()
                for s in (a, b):
                    s.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    s.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

                async def both(a: trio.SocketStream, b: trio.SocketStream, i: int) -> None:
                    async with trio.open_nursery() as inner:
                        inner.start_soon(one_way, 2 * i, a, b)
                        inner.start_soon(one_way, 2 * i + 1, b, a)
                    await a.aclose()
                    await b.aclose()

                nursery.start_soon(both, a, b, i)
        assert fd_count() == fds
        return ops_submitted()["ASYNC_CANCEL"] - before

    in_flight = run(main)
    print(f"\nreceive_somes cancelled in the kernel: {in_flight}, scopes cancelled: {stats['cancelled']}")
    assert in_flight >= 100, in_flight  # receive_somes were cancelled in the kernel
    assert stats["cancelled"] >= 100


def test_send_all_cancelled_in_flight_sent_a_prefix() -> None:
    """trio's contract for a cancelled send_all: some prefix of the data
    went, nothing else; the connection carries exactly that prefix."""

    async def main() -> tuple[int, int]:
        results = []
        # At least 6 rounds, and more (at most 30) until 6 of the cancels
        # reached a SEND parked in the kernel: a cancel can also land while
        # the task is between two sends, which under emulation is often.
        for seed in range(30):
            if seed >= 6 and ops_submitted().get("ASYNC_CANCEL", 0) >= 6:
                break
            client, server = await tcp_stream_pair()
            client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            payload = random.Random(seed).randbytes(400_000)
            with trio.move_on_after(0.002 * (seed + 1)) as cs:
                await client.send_all(payload)
            assert cs.cancelled_caught
            await client.send_eof()
            got = bytearray()
            while chunk := await server.receive_some():
                got += chunk
            assert 0 < len(got) < len(payload)
            assert bytes(got) == payload[: len(got)]
            results.append(len(got))
            await client.aclose()
            await server.aclose()
        return len(results), ops_submitted().get("ASYNC_CANCEL", 0)

    count, cancels = run(main)
    assert count >= 6
    assert cancels >= 6  # send_alls parked on a SEND when cancelled


def test_a_socket_of_trios_own_class_in_a_uring_run_uses_trios_methods() -> None:
    async def main() -> bytes:
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        stock_class = trio_uring.socket._TrioSocketType
        sa, sb = trio.SocketStream(stock_class(a)), trio.SocketStream(stock_class(b))
        assert type(sa.socket) is not trio_uring.socket.UringSocket
        async with sa, sb:
            await sa.send_all(b"via trio's own class")
            return await sb.receive_some()

    assert run(main) == b"via trio's own class"


def test_streams_in_guest_mode_on_asyncio() -> None:
    """trio as a guest of asyncio (the ring without DEFER_TASKRUN): the
    stream methods wait on RECVs, one is cancelled in flight, no byte is
    lost."""

    async def trio_main() -> tuple[str, bytes, int]:
        client, server = await tcp_stream_pair()
        async with client, server:
            before = ops_submitted().get("ASYNC_CANCEL", 0)
            with trio.move_on_after(0.02):
                await server.receive_some()  # parked on a RECV, cancelled in flight
            cancels = ops_submitted().get("ASYNC_CANCEL", 0) - before

            async def later() -> None:
                await trio.sleep(0.02)
                await client.send_all(b"guest " * 1000)

            got = b""
            async with trio.open_nursery() as nursery:
                nursery.start_soon(later)
                while len(got) < 6000:
                    got += await server.receive_some(1000)
            stats = trio.lowlevel.current_statistics().io_statistics
            return str(stats.ring_mode), got, cancels

    with trio_uring.installed():
        mode, got, cancels = run_as_guest_of_asyncio(trio_main)
    assert mode == "plain"
    assert got == b"guest " * 1000
    assert cancels == 1
