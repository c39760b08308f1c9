"""An ASGI app that says, from inside the server, which IO backend served it.

Serve it with hypercorn's trio worker, two processes, under the launcher::

    trio-uring run hypercorn --worker-class trio --workers 2 --bind 127.0.0.1:8000 \\
        examples/asgi_backend.py:app

    curl http://127.0.0.1:8000/
    {"backend": "io_uring", "pid": 12345}

``GET /`` answers ``trio.lowlevel.current_statistics().io_statistics.backend``
(``io_uring`` under trio_uring, ``epoll`` on trio's own backend) and the pid
of the worker process that handled it.  Nothing in the app or in hypercorn
knows about trio_uring: the launcher's start-up hook installs it in every
worker process hypercorn spawns.

Each worker also prints, when hypercorn starts it (ASGI lifespan startup),
the backend its trio run is on.

``python examples/asgi_backend.py --selftest`` does the above on a free port:
it starts hypercorn under ``trio-uring run``, waits until every worker has
said it started on io_uring, sends 20 requests (each on a new connection),
checks that each was served on io_uring by one of hypercorn's worker
processes and that every worker served some, stops hypercorn with SIGTERM
and prints which worker served how many.  (Which worker accepts a
connection is the kernel's choice: all of hypercorn's workers accept on one
shared socket, and each waiting accept() is one ACCEPT request queued in
that socket's wait queue, so they take turns; docs/deploying.md.)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import trio

#: upper bound for the self-test: a slow machine waits, nothing hangs
PATIENCE = 60.0


def backend() -> str:
    return str(trio.lowlevel.current_statistics().io_statistics.backend)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # every worker says, once, which backend its trio run is on; one
                # write, so that the workers' lines do not interleave on a shared
                # unbuffered stderr (print writes the text and its newline apart)
                sys.stderr.write(f"asgi_backend: worker pid {os.getpid()} started on {backend()}\n")
                sys.stderr.flush()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = json.dumps({"backend": backend(), "pid": os.getpid()}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ---- the self-test -------------------------------------------------------------------------


def get(port: int) -> dict[str, Any]:
    """One ``GET /`` on a new connection (so the workers take turns accepting)."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise AssertionError(f"unexpected response: {response[:200]!r}")
    result: dict[str, Any] = json.loads(body)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def selftest(workers: int, requests: int) -> None:
    bin_dir = Path(sys.executable).parent
    port = free_port()
    argv = [
        str(bin_dir / "trio-uring"),
        "run",
        str(bin_dir / "hypercorn"),
        "--worker-class",
        "trio",
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "examples/asgi_backend.py:app",
    ]
    print("$", " ".join(["trio-uring", "run", "hypercorn", *argv[3:]]))
    proc = subprocess.Popen(
        argv, cwd=Path(__file__).parent.parent, start_new_session=True, stderr=subprocess.PIPE, text=True
    )
    served: collections.Counter[tuple[int, str]] = collections.Counter()
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_collect, args=(proc.stderr, lines), daemon=True).start()
    collected: list[str] = []
    try:
        started = wait_started(lines, workers, collected)
        deadline = time.monotonic() + PATIENCE
        while sum(served.values()) < requests:
            try:
                info = get(port)
            except ConnectionRefusedError:  # a worker is not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
                continue
            served[info["pid"], info["backend"]] += 1
        children = set(_children(proc.pid))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=PATIENCE)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stderr = "".join(collected) + "".join(_drain(lines))
    for pid, where in sorted(started.items()):
        count = sum(n for (p, _), n in served.items() if p == pid)
        print(f"worker pid {pid}: started on {where}, served {count} of {requests} requests")
    print(f"hypercorn exit status {proc.returncode}")
    if set(started.values()) != {"io_uring"} or {b for _, b in served} != {"io_uring"}:
        raise AssertionError(f"not everything ran on io_uring: {started} {served}")
    if not set(started) <= children or not {p for p, _ in served} <= set(started):
        raise AssertionError(f"the workers {sorted(started)} are not hypercorn's children {sorted(children)}")
    if {p for p, _ in served} != set(started):
        raise AssertionError(f"not every worker served a request: {dict(served)}")
    if proc.returncode != 0 or "Traceback" in stderr:
        raise AssertionError(f"hypercorn did not stop cleanly ({proc.returncode}):\n{stderr}")
    print(f"selftest passed: {workers} hypercorn trio workers on io_uring")


def _collect(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def _drain(lines: queue.Queue[str]) -> list[str]:
    drained = []
    with contextlib.suppress(queue.Empty):
        while True:
            drained.append(lines.get(timeout=1.0))
    return drained


def wait_started(lines: queue.Queue[str], workers: int, collected: list[str]) -> dict[int, str]:
    """The workers' start-up lines: {pid: backend}, within PATIENCE seconds."""
    started: dict[int, str] = {}
    deadline = time.monotonic() + PATIENCE
    while len(started) < workers:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(
                f"only {len(started)} of {workers} workers started: {started}\n" + "".join(collected)
            ) from None
        collected.append(line)
        for found in re.finditer(r"worker pid (\d+) started on (\w+)", line):
            started[int(found[1])] = found[2]
    return started


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(x) for x in (task / "children").read_text().split()]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--selftest", action="store_true", help="serve with hypercorn under trio-uring run and check")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    if not args.selftest:
        parser.error("this module is an ASGI app (asgi_backend:app); run it with hypercorn, or with --selftest")
    selftest(args.workers, args.requests)


if __name__ == "__main__":
    main()
