"""One echo, as if on each kernel from Linux 5.15 on: the same bytes, other paths.

    python examples/kernel_profiles.py [--profiles native,6.1,5.19,5.15] [--messages N]

trio_uring asks the kernel what it can do once, at ring setup, and takes a
fallback for every feature newer than the kernel (docs/kernel-support.md).
``TRIO_URING_KERNEL`` makes it run as if on an older kernel.  For each profile
this runs, in a child process with that variable set, an echo server and a
client over TCP on io_uring, checks every byte, and prints the ring mode, the
fallbacks in use and the io_uring requests the run submitted: where the kernel
has provided-buffer rings, a receive that waits is a RECV; before 5.19 it is a
POLL_ADD followed by recv(2), and each accept() is one ACCEPT.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys

import trio

import trio_uring

PROFILES = ("native", "6.1", "5.19", "5.15")


async def echo(messages: int) -> dict[str, int]:
    async def serve(stream: trio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some():
                await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        async with await trio.open_tcp_stream("127.0.0.1", port) as client:
            for i in range(messages):
                message = b"message %d " % i * 10
                await client.send_all(message)
                got = b""
                while len(got) < len(message):
                    got += await client.receive_some()
                assert got == message, (got, message)
        nursery.cancel_scope.cancel()
    stats = trio.lowlevel.current_statistics().io_statistics
    if not isinstance(stats, trio_uring.UringStatistics):
        raise RuntimeError(f"expected the io_uring backend, got {stats.backend!r}")
    return dict(stats.ops_submitted)


def child(messages: int) -> None:
    info = trio_uring.check_support()
    ops = trio_uring.run(echo, messages)
    print(f"profile {info['kernel_profile']}: ring mode {info['mode']}, {messages} messages echoed, every byte checked")
    fallbacks = info["fallbacks"]
    assert isinstance(fallbacks, list)
    for line in fallbacks or ["none: every feature trio_uring uses is there"]:
        print(f"    fallback: {line}")
    wanted = ("ACCEPT", "CONNECT", "RECV", "SEND", "POLL_ADD")
    print("    io_uring requests: " + ", ".join(f"{name} {ops.get(name, 0)}" for name in wanted))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.messages)
        return
    for profile in args.profiles.split(","):
        env = {**os.environ, "TRIO_URING_KERNEL": profile}
        command = [sys.executable, __file__, "--child", "--messages", str(args.messages)]
        subprocess.run(command, env=env, check=True)
    print("the same bytes on every kernel profile (io_uring)")


if __name__ == "__main__":
    main()
