"""Cancelled means it did not happen: io_uring reads that lose no byte.

    python examples/pipe_cancel.py [--bytes N] [--seed S]

A writer task puts a known byte sequence into a pipe in random-sized pieces
with random pauses.  A reader task reads it back with io_uring READ requests,
each under a random, very short ``trio.move_on_after``, so many reads are
cancelled while the kernel holds them.  At the end the bytes the reader kept
must equal the bytes written, in order: a read that raised ``Cancelled``
consumed nothing, and a read that completed delivered its data even when its
deadline had already passed.

How that is guaranteed (see ``trio_uring/_manager.py``): when a task is
cancelled while its READ is in the kernel, the abort function queues an
``IORING_OP_ASYNC_CANCEL`` and returns ``Abort.FAILED``, so the task stays
parked until the READ's own completion arrives.  If that completion is
``-ECANCELED`` the read had no effect and the task gets ``Cancelled``; if the
read won the race, its byte count is returned and ``Cancelled`` waits for the
next checkpoint.  The buffer stays pinned the whole time, which is also why
this demo can safely reuse one buffer for every read.

This uses the IO manager's ``perform`` directly.  There is no public
low-level API yet (a ``trio_uring.lowlevel`` module is planned), so the manager
is fetched from trio's private run context,
``trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager``: an escape hatch for
demos and experiments, not an interface to build on.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

import trio
import trio._core._run

import trio_uring
from trio_uring._kernel import Buffer
from trio_uring._manager import UringIOManager

#: Upper bound on the whole run, so a bug can never turn this into a hang.
DEADLINE_SECONDS = 30.0
MAX_READ = 8192
MAX_PIECE = 4096


def current_uring_manager() -> UringIOManager:
    """The running trio_uring IO manager (private; see the module docstring)."""
    manager = trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager
    if not isinstance(manager, UringIOManager):
        raise RuntimeError(f"not running on trio_uring (the IO manager is {type(manager).__name__})")
    return manager


class Tally:
    def __init__(self) -> None:
        self.reads = 0
        self.cancelled = 0
        self.late = 0  # completed although the deadline had passed
        self.writes = 0


async def writer(manager: UringIOManager, fd: int, data: bytes, rng: random.Random, tally: Tally) -> None:
    """Write ``data`` in random pieces with random pauses, then close ``fd``."""
    try:
        pos = 0
        while pos < len(data):
            piece = Buffer(data[pos : pos + rng.randint(1, MAX_PIECE)], writable=False)
            op = await manager.perform(fd, manager.ring.prep_write, piece.address, piece.length, -1, keep=piece)
            pos += op.res  # a pipe write may be partial
            tally.writes += 1
            await trio.sleep(rng.uniform(0, 0.002))
    finally:
        os.close(fd)  # the reader sees EOF


async def reader(manager: UringIOManager, fd: int, rng: random.Random, tally: Tally) -> bytes:
    """Read until EOF, each read under a random short timeout."""
    storage = bytearray(MAX_READ)
    buf = Buffer(storage, writable=True)  # pinned: ``storage`` cannot be resized now
    received = bytearray()
    while True:
        nbytes = rng.randint(1, MAX_READ)
        count: int | None = None
        with trio.move_on_after(rng.uniform(0, 0.001)) as scope:
            if scope.cancel_called:
                # The deadline passed before we got here: perform would raise
                # Cancelled before submitting anything.  Not interesting.
                continue
            op = await manager.perform(fd, manager.ring.prep_read, buf.address, nbytes, -1, keep=buf)
            count = op.res
        tally.reads += 1
        if count is None:
            # Cancelled while in flight: the kernel confirmed the READ did
            # nothing, so no byte went missing.
            tally.cancelled += 1
            continue
        if scope.cancel_called:
            tally.late += 1  # the read won the race against its cancellation
        if count == 0:
            return bytes(received)
        received += storage[:count]


async def main(nbytes: int, seed: int) -> None:
    manager = current_uring_manager()
    rng = random.Random(seed)
    data = rng.randbytes(nbytes)
    tally = Tally()
    read_fd, write_fd = os.pipe()
    result: list[bytes] = []

    async def read_into_result() -> None:
        result.append(await reader(manager, read_fd, random.Random(seed + 1), tally))

    start = time.perf_counter()
    try:
        with trio.fail_after(DEADLINE_SECONDS):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer, manager, write_fd, data, random.Random(seed + 2), tally)
                nursery.start_soon(read_into_result)
    finally:
        os.close(read_fd)
    elapsed = time.perf_counter() - start
    stats = manager.statistics()

    (got,) = result
    print(f"{tally.writes} writes, {tally.reads} reads in {elapsed:.2f} s (seed {seed})")
    print(f"{tally.cancelled} reads were cancelled while in flight and consumed nothing")
    print(f"{tally.late} reads completed although their deadline had passed; their data was kept")
    submitted = ", ".join(f"{name} {count}" for name, count in sorted(stats.ops_submitted.items()))
    print(f"io_uring ops submitted ({stats.ring_mode} ring): {submitted}")
    if got != data:
        at = next((i for i, (a, b) in enumerate(zip(data, got, strict=False)) if a != b), min(len(data), len(got)))
        raise SystemExit(f"FAILED: {len(data)} bytes written, {len(got)} read; first difference at byte {at}")
    print(f"all {len(data)} bytes arrived intact and in order")
    if tally.cancelled == 0:
        print("note: no read happened to be cancelled in flight this time; try a larger --bytes")


def main_cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cancelled io_uring reads lose no byte (trio_uring demo).")
    parser.add_argument("--bytes", type=int, default=256 * 1024, help="how many bytes to send (default 262144)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    args = parser.parse_args(argv)
    if args.bytes < 1:
        parser.error("--bytes must be at least 1")
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    trio_uring.run(main, args.bytes, seed)
    return 0


if __name__ == "__main__":
    sys.exit(main_cli())
