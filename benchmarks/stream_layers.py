"""How much of an echo round trip trio's stream layers cost.

    python benchmarks/stream_layers.py [--rounds N] [--conns 64] [--seconds 3]

Three servers, the same C load generator (``make bench``'s, on the other
CPU), alternating, medians over the rounds:

``trio``
    stock trio: ``trio.serve_tcp`` + ``SocketStream.receive_some`` /
    ``send_all`` (``benchmarks/servers.py echo trio``);
``trio, no stream layers``
    stock trio, the handler calling the stdlib socket's ``recv``/``send``
    between ``checkpoint_if_cancelled()`` and ``cancel_shielded_checkpoint()``
    (``servers.py echo-bare trio``): the same system calls and checkpoints
    without the socket method's coroutine, the error-translating context
    manager, the conflict detector, the memoryview slices;
``trio_uring``
    the first server on ``trio_uring.run``, whose ``SocketStream`` methods
    are written out (docs/sockets.md, "SocketStream").

It prints each median and its ratio to stock trio.  Informational: it never
fails because of a number.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from _harness import Server, choose_loadgen, run_loadgen

SERVERS = (
    ("trio", "echo", "trio"),
    ("trio, no stream layers", "echo-bare", "trio"),
    ("trio_uring", "echo", "trio_uring"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    loadgen, described = choose_loadgen("auto")
    print(f"load generator: {described['description']}; {args.conns} connections, 64 B, {args.rounds} rounds")
    rates: dict[str, list[float]] = {label: [] for label, _, _ in SERVERS}
    for r in range(args.rounds):
        order = SERVERS[r % len(SERVERS) :] + SERVERS[: r % len(SERVERS)]
        for label, kind, backend in order:
            with Server(kind, backend, nofile=args.conns + 256) as server:
                result = run_loadgen(
                    loadgen,
                    "echo",
                    server.port,
                    args.conns,
                    64,
                    0.3,
                    args.seconds,
                    50_000_000,
                    timeout=args.seconds + 60,
                )
            rates[label].append(result["rate"])
    base = statistics.median(rates["trio"])
    for label, values in rates.items():
        median = statistics.median(values)
        print(
            f"{label:<24} {median:>10,.0f} round trips/s  {median / base:.2f}x  (rounds: {', '.join(f'{v:,.0f}' for v in values)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
