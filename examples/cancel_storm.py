"""Cancel socket operations at random, in flight, and check every byte.

    python examples/cancel_storm.py [--connections N] [--seconds S] [--seed SEED]

An echo server (plain ``trio.serve_tcp``) and N clients.  Each client streams
a reproducible random byte stream to the server and reads the echo back at
the same time.  Every ``send`` and every ``receive_some`` runs under a
``trio.move_on_after`` of a random fraction of a millisecond.  Often the
timeout expires while the operation is in the kernel.  Each client then
compares the echo with what it sent, byte for byte.

trio_uring turns each of those cancellations into an io_uring
``ASYNC_CANCEL``.  Either the kernel cancels the operation, and it had no
effect, or the operation completes first, and its result is kept.  No byte is
lost or duplicated either way.  At the end the program prints how many
operations were cancelled while in the kernel (the ``ASYNC_CANCEL`` count from
``io_statistics``).  It exits nonzero if any byte differs.  Loopback only,
and bounded in time.
"""

from __future__ import annotations

import argparse
import random
import sys
from functools import partial

import trio

import trio_uring

#: Upper bound on the whole run, whatever the arguments.
DEADLINE_SECONDS = 60.0


async def echo_handler(stream: trio.SocketStream) -> None:
    async with stream:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)


async def client(port: int, seed: int, seconds: float, counts: dict[str, int]) -> None:
    rng = random.Random(seed)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    sock = stream.socket
    sent = bytearray()
    received = bytearray()

    async def sender() -> None:
        deadline = trio.current_time() + seconds
        while trio.current_time() < deadline:
            chunk = rng.randbytes(rng.randrange(1, 8192))
            view = memoryview(chunk)
            while view:
                with trio.move_on_after(rng.random() / 2000) as scope:
                    n = await sock.send(view)
                    sent.extend(view[:n])
                    view = view[n:]
                counts["cancelled"] += scope.cancelled_caught
        await stream.send_eof()

    async def receiver() -> None:
        while True:
            with trio.move_on_after(rng.random() / 2000) as scope:
                data = await sock.recv(rng.randrange(1, 16384))
                if not data:
                    return
                received.extend(data)
            counts["cancelled"] += scope.cancelled_caught

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        nursery.start_soon(receiver)
    await stream.aclose()
    if received != sent:
        at = next(
            (i for i, (a, b) in enumerate(zip(sent, received, strict=False)) if a != b), min(len(sent), len(received))
        )
        raise AssertionError(f"client {seed}: echo differs from what was sent at byte {at}")
    counts["bytes"] += len(sent)


async def main(connections: int, seconds: float, seed: int) -> None:
    counts = {"cancelled": 0, "bytes": 0}
    with trio.fail_after(DEADLINE_SECONDS):
        async with trio.open_nursery() as server:
            listeners = await server.start(partial(trio.serve_tcp, echo_handler, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as clients:
                for i in range(connections):
                    clients.start_soon(client, port, seed * 1000 + i, seconds, counts)
            server.cancel_scope.cancel()
    stats = trio.lowlevel.current_statistics().io_statistics
    if not isinstance(stats, trio_uring.UringStatistics):
        raise RuntimeError(f"expected the io_uring backend, got {stats.backend!r}")
    ops = stats.ops_submitted
    print(f"backend: {stats.backend}; {connections} connections, {counts['bytes']} bytes each way, every byte checked")
    print(f"operations cancelled in flight (ASYNC_CANCEL): {ops.get('ASYNC_CANCEL', 0)}")
    print(f"timeouts that cancelled a send or receive:     {counts['cancelled']}")
    print(f"RECV {ops.get('RECV', 0)}, SEND {ops.get('SEND', 0)}, POLL_ADD {ops.get('POLL_ADD', 0)}")


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Random in-flight cancellation of socket operations, checked.")
    parser.add_argument("--connections", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--seconds", type=float, default=2.0, help="how long each client sends (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    if args.connections < 1 or not 0 < args.seconds <= 30:
        parser.error("need --connections >= 1 and 0 < --seconds <= 30")
    trio_uring.run(main, args.connections, args.seconds, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
