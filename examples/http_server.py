"""An HTTP/1.1 server with h11, on trio_uring: keep-alive, HEAD, bodies.

    python examples/http_server.py [--host 127.0.0.1] [--port 8080]
    python examples/http_server.py --selftest

The protocol is h11's (``pip install h11``); this file only moves bytes
between h11 and a ``trio.SocketStream``, so every accept, receive and send is
an io_uring request once ``trio_uring.run`` starts the program.

Routes:

- ``GET /``: a short greeting;
- ``GET /stats``: JSON with the IO manager's statistics, from inside the run
  (``backend`` is ``"io_uring"``) and the server's connection and request
  counts;
- ``POST /echo``: the request body, sent back;
- ``HEAD`` of a GET route: its headers, no body; anything else 404 or 405.

A connection stays open for the next request (HTTP/1.1 keep-alive) until the
client asks for ``Connection: close``, closes, or stays idle for
``--keepalive`` seconds.

``--selftest`` starts the server on an ephemeral port, talks to it with two
clients -- h11 over trio (many connections at once, many requests on each)
and the standard library's ``http.client`` in a worker thread -- checks every
response, prints a summary with the statistics backend and exits 0, or
exits 1 with the first difference.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
from collections.abc import Iterable
from functools import partial
from http import HTTPStatus
from typing import Any

import h11
import trio

import trio_uring

MAX_RECV = 64 * 1024
SERVER_NAME = f"trio_uring-example/{trio_uring.__version__}"
GREETING = b"Hello from trio_uring\n"
#: Upper bound on the self-test, so a bug can never turn it into a hang.
SELFTEST_DEADLINE = 60.0


async def next_event(stream: trio.SocketStream, conn: h11.Connection) -> Any:
    """The next h11 event, receiving from ``stream`` as h11 needs more data."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(MAX_RECV))


async def send_events(stream: trio.SocketStream, conn: h11.Connection, events: Iterable[Any]) -> None:
    data = b"".join(conn.send(event) or b"" for event in events)
    await stream.send_all(data)


class Server:
    """The routes and the per-connection loop; counts what it served."""

    def __init__(self, keepalive: float) -> None:
        self.keepalive = keepalive
        self.connections = 0
        self.requests = 0

    def route(self, method: bytes, target: bytes, body: bytes) -> tuple[int, bytes, bytes]:
        """(status, content type, body) for one request."""
        path = target.split(b"?", 1)[0]
        if path == b"/echo":
            if method != b"POST":
                return 405, b"text/plain", b"POST only\n"
            return 200, b"application/octet-stream", body
        if path not in (b"/", b"/stats"):
            return 404, b"text/plain", b"not found\n"
        if method not in (b"GET", b"HEAD"):
            return 405, b"text/plain", b"GET or HEAD only\n"
        if path == b"/":
            return 200, b"text/plain; charset=utf-8", GREETING
        stats = trio.lowlevel.current_statistics().io_statistics
        report = {
            "backend": stats.backend,
            "ops_submitted": dict(getattr(stats, "ops_submitted", {})),
            "connections": self.connections,
            "requests": self.requests,
        }
        return 200, b"application/json", json.dumps(report).encode() + b"\n"

    async def respond(
        self, stream: trio.SocketStream, conn: h11.Connection, status: int, content_type: bytes, body: bytes, head: bool
    ) -> None:
        headers = [
            (b"Server", SERVER_NAME.encode()),
            (b"Content-Type", content_type),
            (b"Content-Length", str(len(body)).encode()),
        ]
        events: list[Any] = [h11.Response(status_code=status, headers=headers, reason=HTTPStatus(status).phrase)]
        if not head:
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        await send_events(stream, conn, events)

    async def handle(self, stream: trio.SocketStream) -> None:
        """One connection: requests one after another until either side closes."""
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        async with stream:
            try:
                while True:
                    with trio.move_on_after(self.keepalive):
                        request = await next_event(stream, conn)
                    if not isinstance(request, h11.Request):
                        return  # idle too long, or the client closed between requests
                    body = bytearray()
                    while not isinstance(event := await next_event(stream, conn), h11.EndOfMessage):
                        body += event.data
                    self.requests += 1
                    status, content_type, payload = self.route(request.method, request.target, bytes(body))
                    await self.respond(stream, conn, status, content_type, payload, head=request.method == b"HEAD")
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        return  # Connection: close (either side), or HTTP/1.0
                    conn.start_next_cycle()
            except h11.RemoteProtocolError as exc:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self.respond(stream, conn, exc.error_status_hint, b"text/plain", b"bad request\n", head=False)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return


async def serve(host: str, port: int, keepalive: float) -> None:
    server = Server(keepalive)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, server.handle, port, host=host))
        bound = listeners[0].socket.getsockname()
        backend = trio.lowlevel.current_statistics().io_statistics.backend
        print(f"serving HTTP/1.1 on http://{bound[0]}:{bound[1]}/ ({backend}); Ctrl-C stops it", flush=True)


# ---- the self-test ---------------------------------------------------------------


class SelfTestFailure(AssertionError):
    pass


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SelfTestFailure(what)


class H11Client:
    """Requests on one kept-alive connection, with h11."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def request(
        self, method: bytes, target: bytes, body: bytes = b"", close: bool = False
    ) -> tuple[h11.Response, bytes]:
        headers = [(b"Host", b"127.0.0.1"), (b"Content-Length", str(len(body)).encode())]
        if close:
            headers.append((b"Connection", b"close"))
        events = [h11.Request(method=method, target=target, headers=headers), h11.Data(data=body), h11.EndOfMessage()]
        await send_events(self.stream, self.conn, events)
        response = await next_event(self.stream, self.conn)
        check(isinstance(response, h11.Response), f"{method!r} {target!r}: got {response!r}, not a response")
        data = bytearray()
        while not isinstance(event := await next_event(self.stream, self.conn), h11.EndOfMessage):
            data += event.data
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        return response, bytes(data)


async def h11_client(port: int, number: int, requests: int) -> int:
    """``requests`` requests on one connection; the last asks to close it."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        client = H11Client(stream)
        for i in range(requests):
            body = f"client {number} request {i} ".encode() * (1 + i * 50)
            response, echoed = await client.request(b"POST", b"/echo", body, close=i == requests - 1)
            check(response.status_code == 200, f"POST /echo: status {response.status_code}")
            check(echoed == body, f"client {number}: /echo sent back {len(echoed)} bytes, not the {len(body)} sent")
        check(client.conn.our_state is h11.MUST_CLOSE, "the connection did not end with Connection: close")
        check(await stream.receive_some(1) == b"", "the server did not close after Connection: close")
    return requests


def stdlib_client(port: int) -> int:
    """http.client, an implementation of its own, on one kept-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=SELFTEST_DEADLINE)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        check((response.status, response.read()) == (200, GREETING), "GET / over http.client")
        check(response.getheader("Server") == SERVER_NAME, "the Server header")
        sock = connection.sock
        connection.request("HEAD", "/")
        response = connection.getresponse()
        check(response.status == 200, "HEAD /")
        check(response.getheader("Content-Length") == str(len(GREETING)), "HEAD / Content-Length")
        check(response.read() == b"", "HEAD / sent a body")
        connection.request("GET", "/missing")
        response = connection.getresponse()
        check((response.status, response.read()) == (404, b"not found\n"), "GET /missing")
        connection.request("DELETE", "/")
        response = connection.getresponse()
        check(response.status == 405, "DELETE /")
        response.read()
        check(connection.sock is sock, "http.client opened a second connection: keep-alive did not hold")
        return 4
    finally:
        connection.close()


async def selftest(clients: int, requests: int) -> None:
    server = Server(keepalive=SELFTEST_DEADLINE)
    with trio.fail_after(SELFTEST_DEADLINE):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            done = [0]

            async def one(number: int) -> None:
                served = await h11_client(port, number, requests)
                done[0] += served

            async with trio.open_nursery() as client_nursery:
                for number in range(clients):
                    client_nursery.start_soon(one, number)
            served = await trio.to_thread.run_sync(stdlib_client, port)
            done[0] += served

            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                response, body = await H11Client(stream).request(b"GET", b"/stats")
            nursery.cancel_scope.cancel()
    check(response.status_code == 200, "GET /stats")
    stats = json.loads(body)
    # the /stats request counts itself
    check(stats["requests"] == done[0] + 1, f"the server counted {stats['requests']} requests, not {done[0] + 1}")
    check(stats["connections"] == clients + 2, f"{stats['connections']} connections, not {clients + 2}")
    print(f"selftest passed: {done[0] + 1} requests on {clients + 2} keep-alive connections, every response checked")
    print(f"io_statistics.backend: {stats['backend']}")
    ops = stats["ops_submitted"]
    print("ops submitted:", ", ".join(f"{name} {count}" for name, count in sorted(ops.items())))
    check(stats["backend"] == "io_uring", f"the server ran on {stats['backend']}, not io_uring")


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions in a (nested) exception group, or ``[exc]``."""
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, tuple):
        return [leaf for one in inner for leaf in leaves(one)]
    return [exc]


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="an HTTP/1.1 server with h11 on trio_uring")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument("--keepalive", type=float, default=15.0, help="idle seconds before closing (default 15)")
    parser.add_argument("--selftest", action="store_true", help="serve on an ephemeral port, test it, exit")
    parser.add_argument("--clients", type=int, default=8, help="--selftest: concurrent h11 clients (default 8)")
    parser.add_argument("--requests", type=int, default=10, help="--selftest: requests per client (default 10)")
    args = parser.parse_args(argv)
    if args.selftest:
        try:
            trio_uring.run(selftest, args.clients, args.requests)
        except BaseException as exc:  # a failed check, maybe in a nursery (an exception group)
            failures = leaves(exc)
            if not all(isinstance(failure, SelfTestFailure) for failure in failures):
                raise
            for failure in failures:
                print(f"selftest failed: {failure}")
            return 1
        return 0
    try:
        trio_uring.run(serve, args.host, args.port, args.keepalive)
    except BaseException as exc:  # Ctrl-C, raised wherever the program was (maybe in a handler's nursery)
        if not all(isinstance(leaf, KeyboardInterrupt) for leaf in leaves(exc)):
            raise
        print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
