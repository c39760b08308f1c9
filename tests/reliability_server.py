"""An echo server on trio_uring, run as a child process by the reliability tests.

``python tests/reliability_server.py [--nofile N]`` serves TCP on 127.0.0.1
(``trio.serve_tcp``: multishot ACCEPT, RECV, SEND), prints ``{"port": ...}``,
then answers one JSON line for each line it reads on stdin:

* ``stats``: its file descriptors, RSS (after ``gc.collect()`` and
  ``malloc_trim(0)``, so that it counts live memory rather than what the
  allocator keeps cached), how much of that RSS is the provided-buffer
  ring's data area (see :func:`bufring_kib`), the io_uring requests in
  flight, the manager's per-fd records, the handlers running, connections
  served, bytes echoed, and any error a handler met;
* ``quit``: stops serving and exits.

Being its own process, its figures are the server's alone: the clients (the
test process) neither add to them nor share its allocator.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import json
import os
import resource
import sys

import trio
import trio.lowlevel
from helpers import rss_kib  # tests/ is this script's directory, first on sys.path

import trio_uring


class State:
    def __init__(self) -> None:
        self.active = 0
        self.served = 0
        self.bytes = 0
        self.resets = 0
        self.errors: list[str] = []


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_PAGE = os.sysconf("SC_PAGE_SIZE")


def bufring_kib(manager: object) -> int:
    """KiB of the provided-buffer ring's data area that are resident
    (mincore(2) over its exact range).  That area is one fixed mapping
    (256 x 64 KiB) whose pages count towards RSS once the kernel first
    writes into them, and stay: under load the RSS climbs towards its
    16 MiB for several rounds, the slower the machine the more rounds, and
    then stops.  It is bounded by construction, not a leak; a test that
    compares RSS before and after a round subtracts it."""
    ring = getattr(manager, "_bufring", None)
    if ring is None or not ring.registered:
        return 0
    data = ring._data
    pages = (data.size + _PAGE - 1) // _PAGE
    vec = (ctypes.c_ubyte * pages)()
    if _libc.mincore(data.address, data.size, vec) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(sum(b & 1 for b in vec)) * _PAGE // 1024


def stats(state: State) -> dict[str, object]:
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)
    io = trio.lowlevel.current_statistics().io_statistics
    manager = trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "rss_kib": rss_kib(),
        "bufring_kib": bufring_kib(manager),
        "ops_in_flight": io.ops_in_flight,
        "waiting_read": io.tasks_waiting_read,
        "fd_records": len(manager._fds),
        "handlers": state.active,
        "served": state.served,
        "bytes": state.bytes,
        "resets": state.resets,
        "errors": state.errors[:10],
    }


async def handler(state: State, stream: trio.SocketStream) -> None:
    state.active += 1
    state.served += 1
    try:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                break
            state.bytes += len(data)
            await stream.send_all(data)
    except trio.BrokenResourceError:
        state.resets += 1
    except Exception as exc:  # reported to the test, which fails on it
        state.errors.append(repr(exc))
    finally:
        state.active -= 1
        await stream.aclose()


async def main(nofile: int) -> None:
    if nofile:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if nofile > soft:
            # root may raise the hard limit too; anyone may go up to it
            new_hard = max(hard, nofile) if os.geteuid() == 0 else hard
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(nofile, new_hard), new_hard))
    state = State()
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, functools.partial(handler, state), 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        print(json.dumps({"port": port, "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}), flush=True)
        buffered = b""
        while True:
            while b"\n" not in buffered:
                chunk = await stdin.receive_some()
                if not chunk:
                    nursery.cancel_scope.cancel()
                    return
                buffered += chunk
            line, buffered = buffered.split(b"\n", 1)
            command = line.decode().strip()
            if command == "stats":
                print(json.dumps(stats(state)), flush=True)
            elif command == "quit":
                nursery.cancel_scope.cancel()
                break
            else:
                print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
    await stdin.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--nofile", type=int, default=0)
    trio_uring.run(main, parser.parse_args().nofile)
