"""trio_uring.lowlevel: one io_uring operation per call, cancellation included.

    python examples/lowlevel_sockets.py
"""

from __future__ import annotations

import socket

import trio

import trio_uring
from trio_uring import lowlevel


async def main() -> None:
    a, b = socket.socketpair()
    with a, b:
        await lowlevel.send(a, b"ping")  # IORING_OP_SEND
        print(await lowlevel.recv(b, 100))  # IORING_OP_RECV -> b'ping'
        with trio.move_on_after(0.1) as cs:
            await lowlevel.recv(b, 100)  # nothing to read: cancelled in flight (ASYNC_CANCEL)
        print("cancelled while in flight:", cs.cancelled_caught)
        await lowlevel.send(a, b"pong")
        print(await lowlevel.recv(b, 100))  # b'pong': the cancelled recv took nothing
        stats = trio.lowlevel.current_statistics().io_statistics
        assert isinstance(stats, trio_uring.UringStatistics)  # (trio types it as its own backends' statistics)
        print(stats.backend, dict(sorted(stats.ops_submitted.items())))


if __name__ == "__main__":
    trio_uring.run(main)
