"""Where a hypercorn server's time goes, on stock trio and on trio_uring (py-spy).

    python benchmarks/profile_stacks.py [--app hello] [--seconds 10] [--conns 64] [--rate 250]

For each backend, benchmarks/stacks.py serves APP pinned to the server CPU,
wrk (pinned to the other CPU) keeps ``--conns`` keep-alive connections busy,
and ``py-spy record --format raw --idle --nonblocking`` samples the server
for ``--seconds``.  Every sample is charged to the file of its innermost
Python frame (the frame that was running, or waiting in a system call),
grouped into the layers below, and printed as shares of all samples: which
share trio_uring can touch at all (its IO manager, its sockets, and the
system calls they make) and which it cannot (the HTTP protocol, the ASGI
plumbing, trio's scheduler, the application).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import HOST, LOAD_CORE, kill_all, reap, spawn
from _stacks import StackServer

#: (layer, can trio_uring change it?, regular expression on the frame's file)
LAYERS: list[tuple[str, bool, str]] = [
    (
        "IO manager: wait for events (epoll_wait / io_uring_enter)",
        True,
        r"trio/_core/_io_epoll\.py|trio_uring/_ring\.py",
    ),
    ("IO manager: the rest", True, r"trio_uring/_manager\.py|trio/_core/_io_common\.py"),
    (
        "sockets: trio / trio_uring socket layer",
        True,
        r"trio/_socket\.py|trio_uring/(socket|_stream|_sockops|lowlevel)\.py",
    ),
    ("sockets: SocketStream", True, r"trio/_highlevel_socket\.py"),
    ("trio scheduler, cancel scopes, nurseries, channels", False, r"trio/_core/|trio/_channel\.py|trio/_sync\.py"),
    ("trio other (timeouts, utilities)", False, r"trio/"),
    ("h11 (HTTP/1.1 parsing and framing)", False, r"h11/"),
    ("hypercorn (protocol, ASGI plumbing, task groups)", False, r"hypercorn/"),
    ("application (ASGI app, Starlette)", False, r"starlette/|stacks\.py"),
    ("anyio", False, r"anyio/"),
    ("Python stdlib and other", False, r".*"),
]
FRAME = re.compile(r"\((?P<file>[^:()]+):\d+\)$")


def layer_of(stack: str) -> str:
    leaf = stack.rsplit(";", 1)[-1]
    match = FRAME.search(leaf)
    path = match.group("file") if match else leaf
    for name, _, pattern in LAYERS:
        if re.search(pattern, path):
            return name
    return LAYERS[-1][0]


def profile(app: str, backend: str, seconds: float, conns: int, rate: int, out: Path) -> tuple[dict[str, int], float]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with StackServer(app, backend, nofile=conns + 256) as server:
        url = f"http://{HOST}:{server.port}/"
        wrk = spawn(
            ["wrk", "-t1", f"-c{conns}", f"-d{int(seconds) + 3}s", url],
            cpu=LOAD_CORE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)
            subprocess.run(
                [py_spy, "record", "--pid", str(server.pid), "--format", "raw", "--idle", "--nonblocking",
                 "--rate", str(rate), "--duration", str(int(seconds)), "--output", str(out)],
                check=True, capture_output=True,
            )  # fmt: skip
            stdout, _ = wrk.communicate(timeout=seconds + 30)
        finally:
            reap(wrk)
    match = re.search(rb"Requests/sec:\s+([\d.]+)", stdout)
    counts: dict[str, int] = collections.Counter()
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[layer_of(stack)] += int(n)
    return dict(counts), float(match.group(1)) if match else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--app", default="hello")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--keep", help="a directory to keep py-spy's raw output in")
    args = parser.parse_args(argv)
    directory = args.keep or tempfile.mkdtemp(prefix="profile_stacks-")
    os.makedirs(directory, exist_ok=True)
    results = {}
    try:
        for backend in ("trio", "trio_uring"):
            out = Path(directory) / f"{args.app}-{backend}.txt"
            results[backend] = profile(args.app, backend, args.seconds, args.conns, args.rate, out)
    finally:
        kill_all()
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    print(f"{args.app}: wrk -t1 -c{args.conns}, py-spy --idle --nonblocking at {args.rate}/s for {args.seconds:g} s")
    print(f"{'layer (innermost Python frame)':<58} {'trio_uring can change':<22} {'stock':>7} {'uring':>7}")
    totals = {b: sum(c.values()) or 1 for b, (c, _) in results.items()}
    touchable = dict.fromkeys(results, 0.0)
    for name, can, _ in LAYERS:
        shares = {b: 100 * c.get(name, 0) / totals[b] for b, (c, _) in results.items()}
        for b in results:
            touchable[b] += shares[b] if can else 0
        print(f"{name:<58} {'yes' if can else 'no':<22} {shares['trio']:>6.1f}% {shares['trio_uring']:>6.1f}%")
    print(f"{'share trio_uring can touch at all':<81} {touchable['trio']:>6.1f}% {touchable['trio_uring']:>6.1f}%")
    print(
        f"{'requests/s while sampled (py-spy slows it)':<81} {results['trio'][1]:>7,.0f} {results['trio_uring'][1]:>7,.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
