"""A library's own tests, run under a session-wide fault mode, no edits.

    python examples/session_faults.py

This file is both a tiny "library" with its tests and the script that runs
them.  The library reads newline-terminated lines from a trio stream, two
ways:

- ``naive_readline`` receives once and assumes the whole line came with it;
- ``LineReader.readline`` keeps what it received until a newline arrives.

Their tests pass as they are (on loopback a short line arrives in one
piece).  Run as a script, this file runs pytest on itself twice: with
``--trio-uring`` alone, then with ``--trio-uring --trio-uring-faults
short_io=1``, where every receive returns at most one byte, as a slow
network may deliver it.  The naive reader's test then fails, and the
summary says what was injected.
"""

from __future__ import annotations

import re
import subprocess
import sys

import trio

# ---- the "library" -------------------------------------------------------------


async def naive_readline(stream: trio.abc.ReceiveStream) -> bytes:
    return bytes(await stream.receive_some(4096))  # the bug: one receive, one line


class LineReader:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def readline(self) -> bytes:
        while b"\n" not in self.buffer:
            data = await self.stream.receive_some(4096)
            if not data:
                raise EOFError("the stream ended in the middle of a line")
            self.buffer += data
        line, _, rest = self.buffer.partition(b"\n")
        self.buffer = bytearray(rest)
        return bytes(line) + b"\n"


# ---- its tests (plain trio.run: they need no pytest plugin but ours) -------------


async def exchange(read_two_lines):  # type: ignore[no-untyped-def]
    a, b = trio.socket.socketpair()
    left, right = trio.SocketStream(a), trio.SocketStream(b)
    async with left, right:
        await left.send_all(b"hello\nworld\n")
        return await read_two_lines(right)


def test_naive_reader() -> None:
    async def read_two(stream):  # type: ignore[no-untyped-def]
        return await naive_readline(stream)

    assert trio.run(exchange, read_two) == b"hello\nworld\n"  # "both lines", it believes


def test_line_reader() -> None:
    async def read_two(stream):  # type: ignore[no-untyped-def]
        reader = LineReader(stream)
        return [await reader.readline(), await reader.readline()]

    assert trio.run(exchange, read_two) == [b"hello\n", b"world\n"]


# ---- run as a script ------------------------------------------------------------


def pytest(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout


def main() -> int:
    outcomes = []
    for args in (["--trio-uring"], ["--trio-uring", "--trio-uring-faults", "short_io=1"]):
        print(f"$ pytest {' '.join(args)} examples/session_faults.py")
        out = pytest(*args)
        for line in out.splitlines():
            if line.startswith(("FAILED", "trio_uring")) or re.match(r"  (short_io|errno|\d+ io_uring)|\d+ (passed|failed)", line):
                print("  " + line)
        outcomes.append(re.findall(r"(\d+ (?:passed|failed))", out))
    if outcomes != [["2 passed"], ["1 failed", "1 passed"]]:
        print("unexpected outcomes:", outcomes)
        return 1
    print("as expected: the naive reader fails once receives are short; LineReader passes both ways")
    return 0


if __name__ == "__main__":
    sys.exit(main())
