"""anyio's file API on io_uring: anyio.Path and anyio.open_file, no worker threads.

    python examples/anyio_files.py [--files 20] [--size 100000] [--how anyio_run|installed|run]

An anyio program -- nothing in ``work()`` names trio_uring -- makes a
directory, writes files with ``anyio.Path.write_bytes``, reads them back
with ``anyio.open_file`` (a seek and a read, then the rest), renames and
removes them, keeping a log in a file it opened itself with ``open()``
and wrapped with ``anyio.wrap_file``.  Run on io_uring (``--how`` picks one of the three ways of
docs/anyio.md), every call is an io_uring operation; then the same program
runs with anyio on stock trio, where each call is a worker-thread job.  Both
are counted in both runs: calls of ``anyio.to_thread.run_sync`` and threads
started.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading

import anyio
import anyio.to_thread
import trio

import trio_uring

started: list[str] = []
_real_start = threading.Thread.start


def _counting_start(self: threading.Thread) -> None:
    started.append(self.name)
    _real_start(self)


threading.Thread.start = _counting_start  # type: ignore[method-assign]

# anyio's own file code hands every call to anyio.to_thread.run_sync: count those too
jobs: list[str] = []
_real_run_sync = anyio.to_thread.run_sync


async def _counting_run_sync(func: object, *args: object, **kwargs: object) -> object:
    jobs.append(getattr(func, "__name__", repr(func)))
    return await _real_run_sync(func, *args, **kwargs)  # type: ignore[arg-type]


anyio.to_thread.run_sync = _counting_run_sync  # type: ignore[assignment]


async def work(root: str, files: int, size: int) -> tuple[str, dict[str, int]]:
    base = anyio.Path(root) / "data"
    await base.mkdir(parents=True, exist_ok=True)
    log_path = os.path.join(root, f"log-{os.getpid()}-{len(jobs)}.txt")
    # a file object the program opened itself: anyio.wrap_file
    async with anyio.wrap_file(open(log_path, "ab")) as log:  # noqa: ASYNC230
        await write_files(base, files, size, log)
    async with anyio.wrap_file(open(log_path, "rb")) as f:  # noqa: ASYNC230
        assert [line async for line in f] == [b"f%d.bin checked\n" % i for i in range(files)]
    await base.rmdir()
    stats = trio.lowlevel.current_statistics().io_statistics
    return stats.backend, dict(getattr(stats, "ops_submitted", {}))


async def write_files(base: anyio.Path, files: int, size: int, log: anyio.AsyncFile[bytes]) -> None:
    for i in range(files):
        payload = bytes((i + j) % 251 for j in range(size))
        path = base / f"f{i}.bin"
        assert await path.write_bytes(payload) == size
        async with await anyio.open_file(path, "rb") as f:
            await f.seek(size // 2)
            tail = await f.read()
            await f.seek(0)
            head = await f.read(size // 2)
        assert head + tail == payload, "bytes differ"
        assert (await path.stat()).st_size == size
        moved = await path.rename(base / f"g{i}.bin")
        assert await moved.read_bytes() == payload
        await moved.unlink()
        await log.write(b"f%d.bin checked\n" % i)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--how", choices=("anyio_run", "installed", "run"), default="anyio_run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        if args.how == "anyio_run":
            backend, ops = trio_uring.anyio_run(work, root, args.files, args.size)
        elif args.how == "installed":
            with trio_uring.installed():
                backend, ops = anyio.run(work, root, args.files, args.size, backend="trio")
        else:
            backend, ops = trio_uring.run(work, root, args.files, args.size)
        on_uring = len(started), len(jobs)
        print(f"{args.files} files of {args.size} bytes written, read back, checked, renamed and removed; a log kept")
        print(f"io_statistics.backend: {backend}")
        print("ops submitted: " + ", ".join(f"{name} {n}" for name, n in sorted(ops.items())))
        print(f"on io_uring: worker-thread jobs {on_uring[1]}, threads started {on_uring[0]}")
        anyio.run(work, os.path.join(root, "stock"), args.files, args.size, backend="trio")
        print(
            f"the same program on stock trio: worker-thread jobs {len(jobs) - on_uring[1]}, "
            f"threads started {len(started) - on_uring[0]}"
        )


if __name__ == "__main__":
    main()
