"""The server of benchmarks/bench_workers.py: an echo server on trio_uring.workers.

    python benchmarks/workers_server.py BACKEND WORKERS STATS_DIR [--cpus 0,1] [--nofile N]

``trio_uring.workers.run_workers`` with WORKERS processes on BACKEND
(``io_uring`` or ``trio``: the same code, the same supervisor, the same
SO_REUSEPORT listener per worker; only the IO manager differs), on an
ephemeral port of 127.0.0.1; the supervisor's log, with ``port N on``
first, goes to standard output.  Each worker serves the echo handler of benchmarks/servers.py
(``trio.serve_listeners`` with ``receive_some`` / ``send_all``) and writes its
counters -- pid, bytes echoed, connections accepted -- to
``STATS_DIR/worker-I.json`` every 0.2 s, so that the benchmark can tell
how the load was shared.  SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import resource
import sys
from pathlib import Path

import trio

import trio_uring.workers
from trio_uring.workers import Worker


class Counters:
    bytes = 0
    connections = 0


async def echo(stream: trio.SocketStream) -> None:
    Counters.connections += 1
    try:
        async with stream:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                await stream.send_all(data)
                Counters.bytes += len(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return


def write_stats(path: Path, worker: Worker) -> None:
    scratch = path.with_suffix(".tmp")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats = {
        "index": worker.index,
        "pid": os.getpid(),
        "cpu": worker.cpu,
        "backend": trio.lowlevel.current_statistics().io_statistics.backend,
        "bytes": Counters.bytes,
        "connections": Counters.connections,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }
    scratch.write_text(json.dumps(stats))
    os.replace(scratch, path)


async def main(stats_dir: str, nofile: int, worker: Worker) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(nofile, hard), hard))
    path = Path(stats_dir) / f"worker-{worker.index}.json"
    listeners = await worker.open_listeners()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(trio.serve_listeners, echo, listeners, handler_nursery=nursery))
        while not worker.stopping.is_set():
            write_stats(path, worker)
            with trio.move_on_after(0.2):
                await worker.stopping.wait()
        nursery.cancel_scope.cancel()


def cli() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("backend", choices=["io_uring", "trio"])
    parser.add_argument("workers", type=int)
    parser.add_argument("stats_dir")
    parser.add_argument("--cpus", help="comma-separated CPUs to pin worker i to (default: no pinning)")
    parser.add_argument("--nofile", type=int, default=4096)
    args = parser.parse_args()
    # the supervisor's log, with the port it reserved, on standard output
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    trio_uring.workers.run_workers(
        functools.partial(main, args.stats_dir, args.nofile),
        workers=args.workers,
        port=0,
        host="127.0.0.1",
        cpus=[int(c) for c in args.cpus.split(",")] if args.cpus else None,
        backend=args.backend,
        grace_period=2.0,
    )


if __name__ == "__main__":
    cli()
