"""An anyio program -- a TCP echo server and its clients -- on trio_uring.

    python examples/anyio_echo.py [--connections N] [--messages M] [--how anyio_run|installed|run]

The program is written for anyio only: ``anyio.create_tcp_listener``,
``anyio.connect_tcp``, a task group, ``anyio.fail_after``.  How it is started
decides the IO manager, and anyio has no backend name for trio_uring (see
docs/anyio.md), so each of the three ways puts it on anyio's trio backend on
io_uring:

- ``anyio_run`` (default): ``trio_uring.anyio_run(main)``, which is
  ``anyio.run(main, backend="trio")`` on io_uring for this one call;
- ``installed``: ``with trio_uring.installed(): anyio.run(main, backend="trio")``;
- ``run``: ``trio_uring.run(main)``: anyio code under trio's own ``run()``,
  which anyio supports for every backend.

Each client sends M messages and checks every echoed byte.  At the end the
program prints the IO manager's backend, from inside the run, and the io_uring
operations that carried the traffic.
"""

from __future__ import annotations

import argparse
import random
import sys

import anyio
import anyio.abc
import trio

import trio_uring

#: Upper bound on the whole run, so a bug can never turn this into a hang.
DEADLINE_SECONDS = 60.0


async def echo(stream: anyio.abc.SocketStream) -> None:
    async with stream:
        try:
            async for data in stream:
                await stream.send(data)
        except anyio.BrokenResourceError:
            return


async def client(port: int, connection: int, messages: int) -> None:
    rng = random.Random(connection)
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        for index in range(messages):
            sent = rng.randbytes(rng.randrange(1, 4096))
            await stream.send(sent)
            got = bytearray()
            while len(got) < len(sent):
                got += await stream.receive()
            if got != sent:
                raise AssertionError(f"connection {connection}, message {index}: the echo differs")


async def main(connections: int, messages: int) -> str:
    with anyio.fail_after(DEADLINE_SECONDS):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as server:
            server.start_soon(listener.serve, echo)
            async with anyio.create_task_group() as clients:
                for connection in range(connections):
                    clients.start_soon(client, port, connection, messages)
            server.cancel_scope.cancel()
    print(f"{connections} anyio clients x {messages} messages echoed, every byte checked")
    # anyio code on its trio backend: the run's statistics are trio's
    stats = trio.lowlevel.current_statistics().io_statistics
    print(f"io_statistics.backend: {stats.backend}")
    ops = getattr(stats, "ops_submitted", {})
    print("ops submitted:", ", ".join(f"{name} {count}" for name, count in sorted(ops.items())))
    return str(stats.backend)


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="an anyio echo server and clients on trio_uring (loopback only)")
    parser.add_argument("--connections", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--messages", type=int, default=100, help="messages per client (default 100)")
    parser.add_argument(
        "--how",
        choices=["anyio_run", "installed", "run"],
        default="anyio_run",
        help="how to start it (default anyio_run)",
    )
    args = parser.parse_args(argv)
    if args.how == "anyio_run":
        backend = trio_uring.anyio_run(main, args.connections, args.messages)
    elif args.how == "installed":
        with trio_uring.installed():
            backend = anyio.run(main, args.connections, args.messages, backend="trio")
    else:
        backend = trio_uring.run(main, args.connections, args.messages)
    return 0 if backend == "io_uring" else 1


if __name__ == "__main__":
    sys.exit(cli())
