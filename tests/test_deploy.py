"""Real servers, not only ours: hypercorn under the launcher and on trio_uring.workers.

Each server is checked from inside: examples/asgi_backend.py answers every
request with the IO backend of the trio run that served it and the pid of
the worker process, and prints at start-up (ASGI lifespan) which backend each
worker's run is on.
"""

from __future__ import annotations

import collections
import json
import multiprocessing
import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATIENCE = 60.0

sys.path.insert(0, str(ROOT / "examples"))
import asgi_backend  # noqa: E402 - the example's client and app


def read_started(proc: subprocess.Popen[str], workers: int) -> dict[int, str]:
    """The lifespan lines: {pid: backend} of each worker (a thread reads
    stderr, so a silent server fails the test at the deadline, never hangs it)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=asgi_backend._collect, args=(proc.stderr, lines), daemon=True).start()
    return asgi_backend.wait_started(lines, workers, [])


def get_many(port: int, count: int) -> collections.Counter[tuple[int, str]]:
    served: collections.Counter[tuple[int, str]] = collections.Counter()
    deadline = time.monotonic() + PATIENCE
    while sum(served.values()) < count:
        try:
            info = asgi_backend.get(port)
        except ConnectionRefusedError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
            continue
        served[info["pid"], info["backend"]] += 1
    return served


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=PATIENCE)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, stderr


def test_hypercorn_trio_workers_under_python_dash_m_launcher() -> None:
    """``python -m trio_uring run -m hypercorn --worker-class trio --workers 2``."""
    port = asgi_backend.free_port()
    argv = [sys.executable, "-m", "trio_uring", "run", "-m", "hypercorn", "--worker-class", "trio"]
    argv += ["--workers", "2", "--bind", f"127.0.0.1:{port}", "examples/asgi_backend.py:app"]
    proc = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        started = read_started(proc, 2)
        assert set(started.values()) == {"io_uring"}
        served = get_many(port, 10)
        assert {backend for _, backend in served} == {"io_uring"}
        assert {pid for pid, _ in served} == set(started), f"not both workers served: {served}"
    finally:
        status, stderr = stop(proc)
    assert status == 0, stderr


#: hypercorn's serve() in each process of trio_uring.workers: each worker
#: creates its own SO_REUSEPORT socket (hypercorn sets SO_REUSEPORT when
#: config.workers > 1), so the kernel spreads connections over the workers
HYPERCORN_ON_WORKERS = textwrap.dedent(
    """
    import sys

    import hypercorn.trio
    from hypercorn.config import Config

    import trio_uring.workers
    from asgi_backend import app


    async def main(worker):
        config = Config()
        config.bind = [f"127.0.0.1:{worker.port}"]
        config.workers = worker.count  # > 1: hypercorn sets SO_REUSEPORT on the socket it creates
        await hypercorn.trio.serve(app, config, shutdown_trigger=worker.stopping.wait)


    if __name__ == "__main__":
        trio_uring.workers.run_workers(main, workers=2, port=int(sys.argv[1]), host="127.0.0.1")
    """
)


def test_hypercorn_on_trio_uring_workers_spreads_the_load(tmp_path: Path) -> None:
    script = tmp_path / "hypercorn_workers.py"
    script.write_text(HYPERCORN_ON_WORKERS)
    port = asgi_backend.free_port()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "examples")},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        started = read_started(proc, 2)
        assert set(started.values()) == {"io_uring"}
        served = get_many(port, 40)
        assert {backend for _, backend in served} == {"io_uring"}
        # each connection is hashed to one of the two listening sockets
        per_worker = collections.Counter(pid for (pid, _), n in served.items() for _ in range(n))
        assert set(per_worker) == set(started), per_worker
    finally:
        status, stderr = stop(proc)
    assert status == 0, stderr


# ---- one listening socket shared by several processes -------------------------------------------


def _shared_listener_child(sock: socket.socket, backend: str, ready: Any) -> None:
    import trio

    import trio_uring

    async def serve() -> None:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        await trio.lowlevel.checkpoint()
        ready.set()
        while True:
            stream = await listener.accept()
            await stream.send_all(str(os.getpid()).encode())
            await stream.aclose()

    (trio_uring.run if backend == "io_uring" else trio.run)(serve)


@pytest.mark.parametrize("backend", ["trio", "io_uring"])
def test_processes_sharing_one_listener_all_get_connections(backend: str) -> None:
    """hypercorn's and gunicorn's model: the parent binds one socket, every
    worker accepts on it.  Sequential connections, each to whichever worker
    the kernel wakes: on io_uring each accept() is one ACCEPT request, which
    queues behind the other worker's (a multishot ACCEPT would stay first in
    the socket's exclusive wait queue and take every connection)."""
    ctx = multiprocessing.get_context("spawn")
    with socket.create_server(("127.0.0.1", 0), backlog=128) as sock:
        port = sock.getsockname()[1]
        events = [ctx.Event() for _ in range(2)]
        procs = [ctx.Process(target=_shared_listener_child, args=(sock, backend, e)) for e in events]
        for proc in procs:
            proc.start()
        try:
            for event in events:
                assert event.wait(PATIENCE)
            time.sleep(0.5)  # both accept() calls are waiting
            counts: collections.Counter[str] = collections.Counter()
            for _ in range(100):
                with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as conn:
                    reply = b""
                    while chunk := conn.recv(100):
                        reply += chunk
                counts[reply.decode()] += 1
        finally:
            for proc in procs:
                proc.kill()
                proc.join()
    assert len(counts) == 2, json.dumps(counts)
