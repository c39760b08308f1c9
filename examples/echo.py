"""A TCP echo server and its clients, in one process, on trio_uring.

    python examples/echo.py [--connections N] [--messages M] [--size BYTES]

The server is plain ``trio.serve_tcp`` on 127.0.0.1 (an ephemeral port); the
clients are plain ``trio.open_tcp_stream``.  Nothing here mentions io_uring
except ``trio_uring.run(main)``: that one call puts the whole program on the
io_uring IO manager.  Each client sends M messages of the given size, waits
for each to come back and compares every byte; any difference ends the
program with a traceback and a nonzero exit status.

At the end it prints the round trips per second and the IO manager's
statistics (``trio.lowlevel.current_statistics().io_statistics``), which show
which io_uring operations carried the traffic.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from functools import partial

import trio

import trio_uring

#: Upper bound on the whole run, so a bug can never turn this into a hang.
DEADLINE_SECONDS = 60.0


class EchoMismatch(AssertionError):
    """An echoed message differed from what was sent."""


async def echo_handler(stream: trio.SocketStream) -> None:
    """Send back everything received, until the client closes its side.

    A client that fails stops reading and closes with data unread, which the
    kernel answers with a reset; that ends this connection, not the server,
    so the client's own error is the one reported.
    """
    async with stream:
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                await stream.send_all(data)
        except trio.BrokenResourceError:
            return


def message_for(connection: int, index: int, size: int) -> bytes:
    """A reproducible, distinct payload for every (connection, message)."""
    return random.Random(connection * 1_000_003 + index).randbytes(size)


async def receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    """Receive exactly ``size`` bytes (TCP may split or merge the echo)."""
    received = bytearray()
    while len(received) < size:
        chunk = await stream.receive_some(size - len(received))
        if not chunk:
            raise EchoMismatch(f"server closed the connection after {len(received)} of {size} bytes")
        received += chunk
    return bytes(received)


async def client(port: int, connection: int, messages: int, size: int) -> None:
    """One connection: send ``messages`` messages, check every echoed byte."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        for index in range(messages):
            sent = message_for(connection, index, size)
            await stream.send_all(sent)
            got = await receive_exactly(stream, size)
            if got != sent:
                at = next(i for i, (a, b) in enumerate(zip(sent, got, strict=True)) if a != b)
                raise EchoMismatch(
                    f"connection {connection}, message {index}: byte {at} "
                    f"was sent as 0x{sent[at]:02x} but echoed as 0x{got[at]:02x}"
                )


def print_statistics() -> None:
    stats = trio.lowlevel.current_statistics().io_statistics
    if not isinstance(stats, trio_uring.UringStatistics):
        raise RuntimeError(f"expected the io_uring backend, got {stats.backend!r}")
    print(f"backend:        {stats.backend}")
    print(f"ring mode:      {stats.ring_mode}")
    print(f"ops in flight:  {stats.ops_in_flight}")
    print("ops submitted:")
    width = max((len(name) for name in stats.ops_submitted), default=0)
    for name, count in sorted(stats.ops_submitted.items()):
        print(f"  {name:<{width}}  {count}")


async def main(connections: int, messages: int, size: int) -> None:
    with trio.fail_after(DEADLINE_SECONDS):
        async with trio.open_nursery() as server_nursery:
            listeners: list[trio.SocketListener] = await server_nursery.start(
                partial(trio.serve_tcp, echo_handler, 0, host="127.0.0.1")
            )
            port: int = listeners[0].socket.getsockname()[1]
            print(f"echo server on 127.0.0.1:{port}; {connections} clients x {messages} messages x {size} bytes")

            start = time.perf_counter()
            async with trio.open_nursery() as clients:
                for connection in range(connections):
                    clients.start_soon(client, port, connection, messages, size)
            elapsed = time.perf_counter() - start

            # Every client is done: stop the server (listener and handlers).
            server_nursery.cancel_scope.cancel()

    round_trips = connections * messages
    print(
        f"{round_trips} round trips ({round_trips * size} bytes each way) in {elapsed:.3f} s: "
        f"{round_trips / elapsed:.0f} round trips/s, every byte checked"
    )
    print_statistics()


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="TCP echo server and clients on trio_uring (loopback only).")
    parser.add_argument("--connections", type=positive_int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--messages", type=positive_int, default=200, help="messages per client (default 200)")
    parser.add_argument("--size", type=positive_int, default=64, help="bytes per message (default 64)")
    return parser.parse_args(argv)


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    trio_uring.run(main, args.connections, args.messages, args.size)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
