"""File I/O: trio_uring.open_file / sendfile against trio.open_file and
anyio.open_file on stock trio, alternating.

    python benchmarks/bench_files.py [--quick] [--rounds N] [--json [PATH]] [--dir DIR] [--cpu N]

Cases (issue 4):

``random4k``
    32 tasks, each with its own file object, do ``seek`` + ``read(4096)`` at
    random 4 KiB-aligned offsets of a cached 256 MiB file for a fixed time;
    reads per second.  ``trio_uring.lowlevel.pread`` is shown too.
``seq64k``
    one task reads the whole file with ``read(65536)``; MiB per second.
``smallfiles``
    32 tasks open + read + close 4 KiB files (2,000 of them); files per second.
``sendfile``
    a 100 MiB file to a TCP socket (a thread drains the other end):
    ``trio_uring.sendfile`` against ``read(1 MiB)`` + ``send_all``; MiB per
    second.

Every implementation runs once per round, each in its own run --
``trio.open_file`` and ``anyio.open_file`` on stock trio (``trio.run``,
epoll), trio_uring's on ``trio_uring.run`` -- the order rotated from round
to round (at least 3 rounds); the figure is the median over the rounds and
the ratio the median of the per-round ratios to ``trio.open_file``.
``--cpu N`` pins the process to one CPU; without it, trio's worker threads
may run on the other CPUs (``make bench`` runs both ways).  The files
are created once, in ``--dir`` (default: a temporary directory), and read
once before measuring, so they are in the page cache.  ``--quick`` shrinks
everything (16 MiB files, short runs) to check that the script works.

``main(argv)`` returns 0; it never fails because something was slow.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import trio

import trio_uring

TARGET_RANDOM4K = 8.0  # the target: trio_uring / trio.open_file


@dataclass
class Config:
    quick: bool
    rounds: int
    big_size: int
    random_seconds: float
    tasks: int
    small_files: int
    small_size: int
    send_size: int
    directory: str


@dataclass
class Case:
    name: str
    unit: str
    runs: dict[str, list[float]] = field(default_factory=dict)

    def add(self, impl: str, value: float) -> None:
        self.runs.setdefault(impl, []).append(value)

    def summary(self) -> dict[str, Any]:
        medians = {impl: statistics.median(v) for impl, v in self.runs.items()}
        base = self.runs.get("trio.open_file")
        ratios = {}
        if base:
            for impl, values in self.runs.items():
                ratios[impl] = statistics.median(v / b for v, b in zip(values, base, strict=True) if b)
        return {"unit": self.unit, "runs": self.runs, "median": medians, "ratio_vs_trio": ratios}


Opener = Callable[..., Awaitable[Any]]
OPENERS: dict[str, Opener] = {
    "trio.open_file": trio.open_file,
    "anyio.open_file": anyio.open_file,
    "trio_uring.open_file": trio_uring.open_file,
}


# ---- the cases ----------------------------------------------------------------------


async def random4k(cfg: Config, impl: str, path: str) -> float:
    blocks = cfg.big_size // 4096
    counts: list[int] = []
    deadline = time.perf_counter() + cfg.random_seconds

    async def worker(seed: int) -> None:
        rnd = random.Random(seed)
        n = 0
        if impl == "trio_uring.lowlevel.pread":
            fd = os.open(path, os.O_RDONLY)
            try:
                # at least one read each, however late the task starts (a
                # loaded machine can use up the whole window in open())
                while True:
                    await trio_uring.lowlevel.pread(fd, 4096, rnd.randrange(blocks) * 4096)
                    n += 1
                    if time.perf_counter() >= deadline:
                        break
            finally:
                os.close(fd)
        else:
            f = await OPENERS[impl](path, "rb")
            try:
                while True:
                    await f.seek(rnd.randrange(blocks) * 4096)
                    await f.read(4096)
                    n += 1
                    if time.perf_counter() >= deadline:
                        break
            finally:
                await f.aclose()
        counts.append(n)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(cfg.tasks):
            nursery.start_soon(worker, i)
    return sum(counts) / (time.perf_counter() - start)


async def seq64k(cfg: Config, impl: str, path: str) -> float:
    f = await OPENERS[impl](path, "rb")
    total = 0
    start = time.perf_counter()
    try:
        while chunk := await f.read(65536):
            total += len(chunk)
    finally:
        await f.aclose()
    assert total == cfg.big_size
    return total / (time.perf_counter() - start) / (1 << 20)


async def smallfiles(cfg: Config, impl: str, paths: list[str]) -> float:
    opener = OPENERS[impl]
    todo = list(paths)

    async def worker() -> None:
        while todo:
            f = await opener(todo.pop(), "rb")
            try:
                assert len(await f.read()) == cfg.small_size
            finally:
                await f.aclose()

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(cfg.tasks):
            nursery.start_soon(worker)
    return len(paths) / (time.perf_counter() - start)


def drain(sock: socket.socket, expected: int, done: list[int]) -> None:
    buf = bytearray(1 << 20)
    got = 0
    while got < expected:
        n = sock.recv_into(buf)
        if not n:
            break
        got += n
    done.append(got)


async def sendfile(cfg: Config, impl: str, path: str) -> float:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        stream = await trio.open_tcp_stream(*listener.getsockname())
        peer, _ = listener.accept()
    done: list[int] = []
    receiver = threading.Thread(target=drain, args=(peer, cfg.send_size, done))
    receiver.start()
    start = time.perf_counter()
    try:
        if impl == "trio_uring.sendfile":
            fd = os.open(path, os.O_RDONLY)
            try:
                sent = await trio_uring.sendfile(stream, fd)
            finally:
                os.close(fd)
        else:
            f = await OPENERS[impl](path, "rb")
            sent = 0
            try:
                while chunk := await f.read(1 << 20):
                    await stream.send_all(chunk)
                    sent += len(chunk)
            finally:
                await f.aclose()
        assert sent == cfg.send_size
        await trio.to_thread.run_sync(receiver.join)
        elapsed = time.perf_counter() - start
    finally:
        await stream.aclose()
        peer.close()
    assert done == [cfg.send_size]
    return cfg.send_size / elapsed / (1 << 20)


# ---- setting up ------------------------------------------------------------------------


def make_file(path: str, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        left = size
        while left:
            left -= f.write(block[: min(left, len(block))])


def warm(path: str) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def config(args: argparse.Namespace, directory: str) -> Config:
    if args.quick:
        return Config(True, max(3, args.rounds or 3), 16 << 20, 0.2, 32, 200, 4096, 8 << 20, directory)
    return Config(False, max(3, args.rounds or 5), 256 << 20, 2.0, 32, 2000, 4096, 100 << 20, directory)


def runner_for(impl: str) -> Callable[..., Any]:
    """trio's and anyio's files are measured on stock trio (``trio.run``,
    epoll), as their users run them; trio_uring's on ``trio_uring.run``."""
    return trio_uring.run if impl.startswith("trio_uring") else trio.run


def measure(cfg: Config, report: Callable[[str], None]) -> dict[str, Case]:
    d = cfg.directory
    big, send = os.path.join(d, "big"), os.path.join(d, "send")
    small = [os.path.join(d, "small", f"{i:05d}") for i in range(cfg.small_files)]
    cases = {
        "random4k": Case("random4k", "reads/s"),
        "seq64k": Case("seq64k", "MiB/s"),
        "smallfiles": Case("smallfiles", "files/s"),
        "sendfile": Case("sendfile", "MiB/s"),
    }
    impls = list(OPENERS)
    plan: list[tuple[str, list[str], Callable[[str], Awaitable[float]]]] = [
        ("random4k", [*impls, "trio_uring.lowlevel.pread"], lambda i: random4k(cfg, i, big)),
        ("seq64k", impls, lambda i: seq64k(cfg, i, big)),
        ("smallfiles", impls, lambda i: smallfiles(cfg, i, small)),
        ("sendfile", [*impls, "trio_uring.sendfile"], lambda i: sendfile(cfg, i, send)),
    ]
    for r in range(cfg.rounds):
        for name, names, run_one in plan:
            order = names[r % len(names) :] + names[: r % len(names)]
            for impl in order:
                value = runner_for(impl)(run_one, impl)
                cases[name].add(impl, value)
        report(f"round {r + 1}/{cfg.rounds} done")
    return cases


def table(summary: dict[str, Any]) -> str:
    lines = [f"{'case':<11} {'implementation':<27} {'median':>12}  {'x trio.open_file':>16}"]
    for name, case in summary["cases"].items():
        for impl, median in case["median"].items():
            ratio = case["ratio_vs_trio"].get(impl)
            ratio_text = f"{ratio:.2f}" if ratio is not None else "-"
            lines.append(f"{name:<11} {impl:<27} {median:>12,.1f}  {ratio_text:>16}   {case['unit']}")
    target = summary["target"]
    lines.append(
        f"target: random4k trio_uring.open_file >= {target['ratio']:.0f}x trio.open_file: "
        f"measured {target['measured']:.2f}x ({'met' if target['met'] else 'not met'})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and short runs")
    parser.add_argument("--rounds", type=int, default=0, help="rounds (at least 3; default 5, quick 3)")
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH", help="write JSON to PATH (or stdout)")
    parser.add_argument("--dir", help="where to put the test files (default: a temporary directory)")
    parser.add_argument("--cpu", type=int, help="pin this process to one CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    quiet_stdout = args.json == "-"

    def report(text: str) -> None:
        print(text, file=sys.stderr if quiet_stdout else sys.stdout, flush=True)

    directory = tempfile.mkdtemp(prefix="bench_files-", dir=args.dir)
    try:
        cfg = config(args, directory)
        report(f"creating files in {directory} ...")
        make_file(os.path.join(directory, "big"), cfg.big_size)
        make_file(os.path.join(directory, "send"), cfg.send_size)
        os.mkdir(os.path.join(directory, "small"))
        payload = os.urandom(cfg.small_size)
        for i in range(cfg.small_files):
            with open(os.path.join(directory, "small", f"{i:05d}"), "wb") as f:
                f.write(payload)
        for name in ("big", "send"):
            warm(os.path.join(directory, name))
        cases = measure(cfg, report)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    summary: dict[str, Any] = {
        "config": {k: v for k, v in vars(cfg).items() if k != "directory"},
        "machine": {
            "python": platform.python_version(),
            "kernel": platform.release(),
            "cpus": len(os.sched_getaffinity(0)),
            "trio": trio.__version__,
        },
        "cases": {name: case.summary() for name, case in cases.items()},
    }
    measured = summary["cases"]["random4k"]["ratio_vs_trio"].get("trio_uring.open_file", 0.0)
    summary["target"] = {"ratio": TARGET_RANDOM4K, "measured": measured, "met": measured >= TARGET_RANDOM4K}
    report(table(summary))
    if args.json == "-":
        print(json.dumps(summary, indent=2))
    elif args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
