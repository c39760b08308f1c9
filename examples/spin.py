"""The wait path's adaptive spin, on and off (docs/how-it-works.md, "Waiting").

    python examples/spin.py [--requests N] [--spin-us US]

A trio_uring run echoes 64-byte requests that a client process sends over a
socketpair, one at a time, as fast as it gets the replies; the client times
each round trip.  Each of the server's waits is then short, so it spins
(polls its rings) for up to the budget before sleeping in io_uring_enter,
and a request that comes within the budget is answered without waking the
server up.  ``--spin-us`` sets ``TRIO_URING_SPIN_US`` for the run (0 turns
the spin off); without it the example runs twice, with the default budget
and with 0, and prints both.  On a busy machine the difference drowns in
noise; docs/benchmarks.md ("Latency") measures it properly.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys

import trio

import trio_uring
from trio_uring._manager import SPIN_US_DEFAULT

CLIENT = """
import socket, sys, time
sock = socket.socket(fileno=int(sys.argv[1]))
request = bytes(range(64))
times = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    sock.sendall(request)
    reply = b""
    while len(reply) < 64:
        reply += sock.recv(64 - len(reply))
    times.append(time.perf_counter() - start)
    assert reply == request, reply
print(sorted(times)[len(times) // 2] * 1e6)
"""


async def serve(sock: socket.socket) -> None:
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    async with stream:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)


def one_run(requests: int, spin_us: str) -> float:
    """The client's median round trip, in us, against a run with this budget."""
    os.environ["TRIO_URING_SPIN_US"] = spin_us
    server_end, client_end = socket.socketpair()
    with client_end:
        client = subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(client_end.fileno()), str(requests)],
            pass_fds=[client_end.fileno()],
            stdout=subprocess.PIPE,
            text=True,
        )
    trio_uring.run(serve, server_end)
    out, _ = client.communicate(timeout=120)
    if client.returncode != 0:
        raise SystemExit(f"the client failed (exit {client.returncode})")
    return float(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--spin-us", default=None, help="TRIO_URING_SPIN_US for one run (default: compare)")
    args = parser.parse_args()
    settings = [args.spin_us] if args.spin_us is not None else [str(SPIN_US_DEFAULT), "0"]
    print(f"backend: io_uring; {args.requests} round trips of 64 bytes, one at a time")
    for spin_us in settings:
        medians = [one_run(args.requests, spin_us) for _ in range(3)]
        label = "spin off" if float(spin_us) == 0 else f"spin up to {spin_us} us"
        print(
            f"{label:>20}: median round trip {statistics.median(medians):6.1f} us (best of 3 runs' medians: "
            f"{min(medians):.1f} us); every byte checked"
        )


if __name__ == "__main__":
    main()
