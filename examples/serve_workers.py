"""A TCP echo server on every core: trio_uring.workers.serve_tcp_workers.

    python examples/serve_workers.py [--port 8000] [--workers N] [--pin] [--incoming-cpu]
    python examples/serve_workers.py --selftest

N worker processes (default: one per CPU this process may use), each with its
own io_uring and its own SO_REUSEPORT listening socket on the port.  On each
connection the worker first sends one line, ``worker PID on BACKEND``, then
echoes everything.  ``--pin`` pins worker i to the i-th CPU; with
``--incoming-cpu`` each listener also asks for the connections that arrive on
its worker's CPU (SO_INCOMING_CPU).  Ctrl-C or SIGTERM stops it gracefully.

``--selftest`` starts the server as a child process on a free port with two
workers, connects 20 clients (each checks its echo byte for byte), stops the
server with SIGTERM, checks that it exited with status 0, and prints which
worker served how many connections.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time

import trio

import trio_uring.workers

PATIENCE = 60.0


async def echo(stream: trio.SocketStream) -> None:
    backend = trio.lowlevel.current_statistics().io_statistics.backend
    async with stream:
        await stream.send_all(f"worker {os.getpid()} on {backend}\n".encode())
        async for data in stream:
            await stream.send_all(data)


def serve(port: int, workers: int, pin: bool, incoming_cpu: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    trio_uring.workers.serve_tcp_workers(
        echo,
        port,
        host="127.0.0.1",
        workers=workers,
        cpus="auto" if pin or incoming_cpu else None,
        incoming_cpu=incoming_cpu,
        grace_period=30.0,
    )


def client(port: int, seed: int) -> str:
    rng = random.Random(seed)
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        greeting = b""
        while not greeting.endswith(b"\n"):
            byte = sock.recv(1)
            if not byte:
                raise ConnectionError(f"the server closed the connection after {greeting!r}")
            greeting += byte
        for _ in range(5):
            sent = rng.randbytes(rng.randrange(1, 65536))
            sock.sendall(sent)
            got = b""
            while len(got) < len(sent):
                got += sock.recv(65536)
            if got != sent:
                raise AssertionError("the echo differs")
    return greeting.decode().strip()


def selftest() -> None:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--port", "0", "--workers", "2"],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        port = 0
        while not port:
            line = proc.stderr.readline()
            if not line:
                raise AssertionError("the server exited before listening")
            if found := re.search(r"port (\d+) on", line):
                port = int(found[1])
        served: collections.Counter[str] = collections.Counter()
        deadline = time.monotonic() + PATIENCE
        while sum(served.values()) < 20:
            try:
                served[client(port, sum(served.values()))] += 1
            except ConnectionRefusedError:  # the workers are still starting
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=PATIENCE)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for greeting, count in sorted(served.items()):
        print(f"{greeting}: {count} connections, every byte checked")
    print(f"server exit status {proc.returncode}")
    if proc.returncode != 0:
        raise AssertionError(f"the server failed:\n{stderr}")
    print("selftest passed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--pin", action="store_true", help="pin worker i to the i-th CPU")
    parser.add_argument("--incoming-cpu", action="store_true", help="SO_INCOMING_CPU on each listener (implies --pin)")
    parser.add_argument("--selftest", action="store_true")
    args = parser.parse_args()
    if args.selftest:
        selftest()
    else:
        serve(args.port, args.workers, args.pin, args.incoming_cpu)


if __name__ == "__main__":
    main()
