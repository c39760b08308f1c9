"""The load generator in Python: the fallback for a machine without a C compiler.

Same command line, same semantics and the same JSON line as ``loadgen.c``
(read that file's comment for what each mode does)::

    python benchmarks/loadgen.py echo HOST PORT CONNS SIZE WARMUP_S DURATION_S MAX_ROUND_TRIPS
    python benchmarks/loadgen.py http HOST PORT CONNS WARMUP_S DURATION_S MAX_ROUND_TRIPS
    python benchmarks/loadgen.py idle HOST PORT CONNS SIZE HOLD_S

One thread, non-blocking sockets and ``select.epoll`` in one tight loop.  It
is slower than the C one; run.py records which one measured, and the check
against the asyncio/uvloop servers says whether it was fast enough.
"""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import select
import socket
import sys
import time
from typing import Any

HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: trio_uring-loadgen\r\n\r\n"
HTTP_BUF = 8192
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class LoadError(Exception):
    pass


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_nofile(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))


def connect_all(host: str, port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=5.0)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(sock)
    return socks


def http_response_length(buf: bytes) -> int:
    """Length of a complete response at the start of ``buf``; 0 if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) >= HTTP_BUF:
            raise LoadError("response head too long")
        return 0
    if not buf.startswith(b"HTTP/1.1 200"):
        raise LoadError(f"unexpected response {buf[:40]!r}")
    match = CONTENT_LENGTH.search(buf, 0, end + 2)
    if match is None:
        raise LoadError("response without content-length")
    total = end + 4 + int(match.group(1))
    return total if len(buf) >= total else 0


def closed_loop(
    mode: str, host: str, port: int, conns: int, size: int, warmup: float, duration: float, max_rt: int
) -> dict[str, Any]:
    started = time.monotonic()
    socks = connect_all(host, port, conns)
    connect_s = time.monotonic() - started
    request = HTTP_REQUEST if mode == "http" else bytes(ord("a") + i % 26 for i in range(size))
    epoll = select.epoll()
    fds: dict[int, socket.socket] = {}
    bufs: dict[int, bytes] = {}
    waiting: set[int] = set()
    for sock in socks:
        sock.setblocking(False)
        fds[sock.fileno()] = sock
        epoll.register(sock.fileno(), select.EPOLLIN)
    errors = 0
    first_error = ""
    t0 = time.monotonic()
    measure_at, end_at = t0 + warmup, t0 + warmup + duration
    measuring = warmup <= 0
    t_measure, cpu_measure = (t0, cpu_s()) if measuring else (0.0, 0.0)
    t_last = stop_at = 0.0
    stopping = False
    done = warmup_done = 0

    def fail(what: str, fd: int) -> None:
        nonlocal errors, first_error
        errors += 1
        first_error = first_error or f"{what} (fd {fd})"
        waiting.discard(fd)
        epoll.unregister(fd)
        fds.pop(fd).close()

    def send(fd: int) -> None:
        if fds[fd].send(request) != len(request):
            raise LoadError("short send")
        waiting.add(fd)
        bufs[fd] = b""

    for fd in list(fds):
        if max_rt > 0 and measuring and len(waiting) >= max_rt:
            break
        send(fd)
    recv = socket.socket.recv
    while True:
        events = epoll.poll(0.05)
        now = time.monotonic()
        if not measuring and now >= measure_at:
            measuring, t_measure, cpu_measure = True, now, cpu_s()
        for fd, _ in events:
            if fd not in fds:
                continue
            try:
                data = recv(fds[fd], 65536)
                if not data:
                    raise LoadError("connection closed by the server")
                buf = bufs[fd] + data
                if mode == "http":
                    length = http_response_length(buf)
                    if length and length != len(buf):
                        raise LoadError("more than one response")
                    complete = length > 0
                else:
                    if len(buf) > size or buf != request[: len(buf)]:
                        raise LoadError("echo differs from what was sent")
                    complete = len(buf) == size
            except BlockingIOError:
                continue
            except (OSError, LoadError) as exc:
                if not stopping or fd in waiting:
                    fail(str(exc), fd)
                else:
                    epoll.unregister(fd)
                    fds.pop(fd).close()
                continue
            bufs[fd] = buf
            if not complete:
                continue
            waiting.discard(fd)
            if measuring:
                done += 1
                t_last = now
            else:
                warmup_done += 1
            if not stopping and measuring and max_rt > 0 and done + len(waiting) >= max_rt:
                stopping, stop_at = True, now
            if not stopping:
                try:
                    send(fd)
                except (OSError, LoadError) as exc:
                    fail(str(exc), fd)
        if not stopping and measuring and now >= end_at:
            stopping, stop_at = True, now
        if stopping and not waiting:
            break
        if stopping and now > stop_at + 2.0:
            errors += 1
            first_error = first_error or "drain timed out"
            break
        if not fds or now > end_at + 10.0:
            if fds:
                errors += 1
                first_error = first_error or "deadline"
            break
    cpu_end = cpu_s()
    elapsed = t_last - t_measure if done else 0.0
    for sock in fds.values():
        sock.close()
    epoll.close()
    return {
        "mode": mode,
        "connections": conns,
        "round_trips": done,
        "warmup_round_trips": warmup_done,
        "elapsed_s": elapsed,
        "rate": done / elapsed if elapsed > 0 else 0.0,
        "cpu_s": cpu_end - cpu_measure,
        "cpu_fraction": (cpu_end - cpu_measure) / (time.monotonic() - t_measure) if elapsed > 0 else 0.0,
        "connect_s": connect_s,
        "errors": errors,
        "first_error": first_error,
        "stopped_by": "count" if max_rt > 0 and done >= max_rt else ("error" if errors else "time"),
    }


def idle(host: str, port: int, conns: int, size: int, hold: float) -> int:
    started = time.monotonic()
    message = bytes(ord("a") + i % 26 for i in range(size))
    socks: list[socket.socket] = []
    error = ""
    try:
        socks = connect_all(host, port, conns)
        for sock in socks:
            sock.sendall(message)
            got = b""
            while len(got) < size:
                chunk = sock.recv(size - len(got))
                if not chunk:
                    break
                got += chunk
            if got != message:
                raise LoadError("echo differs from what was sent")
    except (OSError, LoadError) as exc:
        error = str(exc)
    print(
        json.dumps(
            {
                "mode": "idle",
                "ready": not error,
                "connections": conns,
                "connect_s": time.monotonic() - started,
                "errors": int(bool(error)),
                "first_error": error,
            }
        ),
        flush=True,
    )
    if not error:
        deadline = time.monotonic() + hold
        while time.monotonic() < deadline:
            readable, _, _ = select.select([0], [], [], 0.1)
            if readable and not os.read(0, 256):
                break
    for sock in socks:
        sock.close()
    return 1 if error else 0


USAGE = (__doc__ or "").split("::")[1].split("\n\n")[1]


def main(argv: list[str]) -> int:
    try:
        mode, host, port, conns = argv[0], argv[1], int(argv[2]), int(argv[3])
        raise_nofile(conns + 64)
        if mode == "http" and len(argv) == 7:
            result = closed_loop(mode, host, port, conns, 0, float(argv[4]), float(argv[5]), int(argv[6]))
        elif mode == "echo" and len(argv) == 8:
            args = (int(argv[4]), float(argv[5]), float(argv[6]), int(argv[7]))
            result = closed_loop(mode, host, port, conns, *args)
        elif mode == "idle" and len(argv) == 6:
            return idle(host, port, conns, int(argv[4]), float(argv[5]))
        else:
            raise ValueError(mode)
    except (ValueError, IndexError):
        print(f"usage:\n{USAGE}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(json.dumps({"mode": mode, "errors": 1, "first_error": f"{exc} ({errno.errorcode.get(exc.errno or 0)})"}))
        return 1
    print(json.dumps(result), flush=True)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
