"""The servers the benchmarks measure, one per process.

    python benchmarks/servers.py KIND BACKEND [--cpu N] [--nofile N] [--max-seconds S]

KIND is ``echo``, ``http`` or ``echo-bare``; BACKEND is one of
:data:`BACKENDS`.  ``echo-bare`` (trio backends only) is the echo handler
without trio's stream layers: the stdlib socket's ``recv``/``send`` between
``checkpoint_if_cancelled()`` and ``cancel_shielded_checkpoint()``, as
trio's socket methods do them -- the ceiling for any trio code that keeps
two checkpoints per round trip (``benchmarks/stream_layers.py``).  The server
binds 127.0.0.1 on an ephemeral port, pins itself to CPU ``--cpu``, and
prints one JSON line, ``{"port": ..., "pid": ...}``, on standard output.

Standard input is its control channel: each line ``stats`` is answered with a
JSON line (live connections, the IO backend, and under trio_uring the
``ops_submitted`` counts); end of input makes it exit.  It also exits by
itself after ``--max-seconds``, so no run can leave a server behind.

The trio servers are the same code on both backends: ``trio.serve_tcp`` with
``SocketStream.receive_some`` / ``send_all`` (echo), or h11 over the same
stream (http).  ``trio`` runs them with ``trio.run``, ``trio_uring`` with
``trio_uring.run``.  The asyncio ones are reference points for checking that
the load generator is not the bottleneck: an ``asyncio.Protocol`` (on the
stock event loop, or on uvloop), and uvloop's streams (the issue's stretch
target for echo).  Their HTTP server is a minimal fixed-response parser, not
h11: it is there to be fast, not to be compared like for like.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, cast

import trio

BACKENDS = ("trio", "trio_uring", "asyncio", "uvloop", "uvloop-streams")
TRIO_BACKENDS = ("trio", "trio_uring")
HELLO = b"Hello, world!"
HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n%s" % (len(HELLO), HELLO)


class Live:
    """How many connections have a handler running right now."""

    connections = 0


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def stats(backend: str, io_statistics: Any = None) -> dict[str, Any]:
    ops = getattr(io_statistics, "ops_submitted", None)
    return {
        "connections": Live.connections,
        "backend": backend,
        "io_backend": getattr(io_statistics, "backend", "asyncio"),
        "ops_submitted": dict(ops) if ops is not None else None,
    }


# ---------------------------------------------------------------- trio (both backends)


async def trio_echo(stream: trio.SocketStream) -> None:
    Live.connections += 1
    try:
        async with stream:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        Live.connections -= 1


async def trio_echo_bare(stream: trio.SocketStream) -> None:
    Live.connections += 1
    sock = stream.socket._sock  # type: ignore[attr-defined]
    checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
    cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint
    try:
        with sock:
            while True:
                await checkpoint_if_cancelled()
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
                    data = sock.recv(65536)
                else:
                    await cancel_shielded_checkpoint()
                if not data:
                    return
                await checkpoint_if_cancelled()
                try:
                    sent = sock.send(data)
                except BlockingIOError:
                    sent = 0
                while sent < len(data):  # rare: the socket buffer is full
                    await trio.lowlevel.wait_writable(sock)
                    try:
                        sent += sock.send(data[sent:])
                    except BlockingIOError:
                        pass
                await cancel_shielded_checkpoint()
    except OSError:
        return
    finally:
        Live.connections -= 1


async def trio_http(stream: trio.SocketStream) -> None:
    import h11

    Live.connections += 1
    conn = h11.Connection(h11.SERVER)
    try:
        async with stream:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.EndOfMessage):
                    response = h11.Response(
                        status_code=200,
                        headers=[("content-type", "text/plain"), ("content-length", str(len(HELLO)))],
                    )
                    await stream.send_all(
                        conn.send(response) + conn.send(h11.Data(data=HELLO)) + conn.send(h11.EndOfMessage())
                    )
                    if conn.our_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return
                # h11.Request and h11.Data: wait for the EndOfMessage
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError, h11.LocalProtocolError):
        return
    finally:
        Live.connections -= 1


async def trio_control(backend: str, cancel_scope: trio.CancelScope) -> None:
    """Answer ``stats`` lines on standard input; end the server at EOF."""
    stdin = trio.lowlevel.FdStream(os.dup(0))
    pending = b""
    async with stdin:
        while True:
            data = await stdin.receive_some(4096)
            if not data:
                break
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.strip() == b"stats":
                    emit(stats(backend, trio.lowlevel.current_statistics().io_statistics))
    cancel_scope.cancel()


async def trio_main(kind: str, backend: str, max_seconds: float) -> None:
    handlers: dict[str, Callable[[trio.SocketStream], Awaitable[None]]] = {
        "echo": trio_echo,
        "echo-bare": trio_echo_bare,
        "http": trio_http,
    }
    handler = handlers[kind]
    with trio.move_on_after(max_seconds):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            emit({"port": listeners[0].socket.getsockname()[1], "pid": os.getpid(), "backend": backend})
            nursery.start_soon(trio_control, backend, nursery.cancel_scope)


# ---------------------------------------------------------------- asyncio references


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        Live.connections += 1

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        Live.connections -= 1


class HttpProtocol(EchoProtocol):
    """Answers every complete request head (GET, no body) with HTTP_RESPONSE."""

    pending = b""

    def data_received(self, data: bytes) -> None:
        self.pending += data
        count = self.pending.count(b"\r\n\r\n")
        if count:
            self.pending = self.pending[self.pending.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(HTTP_RESPONSE * count)


async def stream_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    Live.connections += 1
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        Live.connections -= 1
        writer.close()


class ControlProtocol(asyncio.Protocol):
    def __init__(self, backend: str, done: asyncio.Future[None]) -> None:
        self.backend = backend
        self.done = done
        self.pending = b""

    def data_received(self, data: bytes) -> None:
        self.pending += data
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            if line.strip() == b"stats":
                emit(stats(self.backend))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def asyncio_main(kind: str, backend: str, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    server: asyncio.Server
    if backend == "uvloop-streams":
        if kind != "echo":
            raise SystemExit("uvloop-streams serves echo only")
        server = await asyncio.start_server(stream_echo, "127.0.0.1", 0, backlog=4096)
    else:
        protocol = EchoProtocol if kind == "echo" else HttpProtocol
        server = await loop.create_server(protocol, "127.0.0.1", 0, backlog=4096)
    done: asyncio.Future[None] = loop.create_future()
    await loop.connect_read_pipe(lambda: ControlProtocol(backend, done), os.fdopen(os.dup(0), "rb"))
    emit({"port": server.sockets[0].getsockname()[1], "pid": os.getpid(), "backend": backend})
    try:
        await asyncio.wait_for(done, max_seconds)
    except TimeoutError:
        pass
    server.close()


# ---------------------------------------------------------------- process set-up


def setup_process(cpu: int | None, nofile: int) -> None:
    """Pin to one CPU and raise this process's own open-file limit."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = nofile if hard == resource.RLIM_INFINITY else min(nofile, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def serve(kind: str, backend: str, max_seconds: float) -> None:
    if backend == "trio":
        trio.run(trio_main, kind, backend, max_seconds)
    elif backend == "trio_uring":
        import trio_uring

        trio_uring.run(trio_main, kind, backend, max_seconds)
    elif backend == "asyncio":
        asyncio.run(asyncio_main(kind, backend, max_seconds))
    else:
        import uvloop

        uvloop.run(asyncio_main(kind, backend, max_seconds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("echo", "http", "echo-bare"))
    parser.add_argument("backend", choices=BACKENDS)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument("--nofile", type=int, default=4096, help="raise RLIMIT_NOFILE to this (own process only)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="exit by itself after this long")
    args = parser.parse_args(argv)
    setup_process(args.cpu, args.nofile)
    serve(args.kind, args.backend, args.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
