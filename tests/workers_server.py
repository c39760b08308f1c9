"""A program for tests/test_workers.py: trio_uring.workers in a process of its own.

    python tests/workers_server.py serve '{"workers": 2, ...}'   serve_tcp_workers(handler, 0, **options)
    python tests/workers_server.py run MODE '{"workers": 2, ...}'  run_workers(MODES[MODE], **options)

The supervisor logs (stderr) ``port N on ...`` first; the ``run`` mains log
``worker I (pid P) listening`` once they are ready.  The handler answers one
line per request line:

- ``who``: a JSON object with the worker's pid, IO backend and CPU affinity;
- ``sleep S``: ``slept`` after S seconds (a handler still running at a stop);
- ``crash``: the worker process exits at once with status 3;
- anything else: echoed.

The exit status is 0 if the supervisor returned, 1 with the
``WorkersFailed`` message on stderr.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable

import trio

import trio_uring.workers
from trio_uring.workers import Worker

# at module level, so that spawned workers (which import this file as
# __mp_main__) log too
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
log = logging.getLogger("workers_server")


async def handler(stream: trio.SocketStream) -> None:
    buffer = b""
    async with stream:
        while True:
            data = await stream.receive_some(4096)
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                await stream.send_all(await answer(line.decode().strip()) + b"\n")


async def answer(request: str) -> bytes:
    if request == "who":
        return json.dumps(
            {
                "pid": os.getpid(),
                "backend": trio.lowlevel.current_statistics().io_statistics.backend,
                "affinity": sorted(os.sched_getaffinity(0)),
            }
        ).encode()
    if request.startswith("sleep "):
        await trio.sleep(float(request.split()[1]))
        return b"slept"
    if request == "crash":
        os._exit(3)
    return request.encode()


# ---- run_workers mains


def emit(obj: dict[str, object]) -> None:
    """One JSON line in one write: the workers share standard output, and with
    PYTHONUNBUFFERED print() writes the text and the newline apart."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def report_and_return(worker: Worker) -> None:
    backend = trio.lowlevel.current_statistics().io_statistics.backend
    emit({"index": worker.index, "pid": worker.pid, "backend": backend})


async def always_fail(worker: Worker) -> None:
    log.info("worker %d (pid %d) listening", worker.index, os.getpid())
    raise RuntimeError(f"worker {worker.index} fails on purpose")


async def wait_for_stop(worker: Worker) -> None:
    log.info("worker %d (pid %d) listening", worker.index, os.getpid())
    await worker.stopping.wait()
    emit({"index": worker.index, "stopped": True})


async def stuck(worker: Worker) -> None:
    """Blocks its trio run: no stop, no cancel can reach it."""
    log.info("worker %d (pid %d) listening", worker.index, os.getpid())
    await trio.lowlevel.checkpoint()
    time.sleep(3600)  # noqa: ASYNC251 - blocking on purpose: a worker that cannot be stopped


async def listen_and_serve(worker: Worker) -> None:
    """What serve_tcp_workers does, by hand: run_workers + Worker.open_listeners."""
    listeners = await worker.open_listeners()
    log.info("worker %d (pid %d) listening", worker.index, os.getpid())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(trio.serve_listeners, handler, listeners, handler_nursery=nursery))
        await worker.stopping.wait()
        nursery.cancel_scope.cancel()


MODES: dict[str, Callable[[Worker], Awaitable[None]]] = {
    "return": report_and_return,
    "fail": always_fail,
    "wait": wait_for_stop,
    "stuck": stuck,
    "serve": listen_and_serve,
}


def main() -> int:
    if sys.argv[1] == "serve":
        fn: Callable[..., None] = functools.partial(trio_uring.workers.serve_tcp_workers, handler, 0)
        options = {"host": "127.0.0.1", **json.loads(sys.argv[2])}
    else:
        fn = functools.partial(trio_uring.workers.run_workers, MODES[sys.argv[2]])
        options = json.loads(sys.argv[3])
    try:
        fn(**options)
    except trio_uring.workers.WorkersFailed as exc:
        print(f"WorkersFailed: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    sys.exit(main())
