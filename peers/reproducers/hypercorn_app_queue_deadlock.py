"""hypercorn 0.18.0 (trio worker): a connection deadlocks when a request body
arrives in 9 or more pieces while the ASGI app does not read it.

Stock trio, no trio_uring.  The app answers without reading the body (as an
app that rejects a request, or the e2e test's app, does).  The client sends
the body in PIECES TCP segments (default 12).  hypercorn's reader puts each
piece, then the end of the body, into the app's memory channel
(``HTTPStream.handle(Body)`` -> ``app_put``), whose buffer holds
``max_app_queue_size`` = 10 messages.  When the app returns, hypercorn puts
``http.disconnect`` into the same channel (``_maybe_recycle`` ->
``_close_stream``) and, with 9 pieces or more, blocks on the full channel
before it sets ``can_read`` or starts the next cycle; with 10 or more the
reader is blocked there too.  Nobody ever receives from the channel: the
connection neither reads nor closes, and the client's next request on it is
never answered.  8 pieces: answered.

    python hypercorn_app_queue_deadlock.py [PIECES]   # exit 1 if it hung
"""

import socket
import sys

import hypercorn.trio
import trio
import trio.testing
from hypercorn.config import Config

PIECES = int(sys.argv[1]) if len(sys.argv) > 1 else 12


async def app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("no lifespan")
    await trio.sleep(0.5)  # some work before answering; the body is never read
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def request(body: bytes) -> bytes:
    return b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)


async def main() -> int:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.errorlog = None
    async with trio.open_nursery() as nursery:
        shutdown = trio.Event()
        binds = await nursery.start(
            lambda task_status: hypercorn.trio.serve(
                app, config, shutdown_trigger=shutdown.wait, task_status=task_status
            )
        )
        host, port = binds[0].removeprefix("http://").rsplit(":", 1)
        sock = trio.socket.socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await sock.connect((host, int(port)))
        body = b"x" * PIECES
        await sock.send(request(body))
        for byte in body:  # one segment each, read one by one by the server
            await sock.send(bytes([byte]))
            await trio.sleep(0.02)
        first = b""
        while not first.endswith(b"\r\n\r\nok"):
            first += await sock.recv(65536)
        print("first response:", first.split(b"\r\n")[0])
        await sock.send(request(b"y"))
        await sock.send(b"y")
        with trio.move_on_after(5) as scope:
            second = await sock.recv(65536)
            print("second request:", second.split(b"\r\n")[0] or b"the server closed the connection")
        stuck = scope.cancelled_caught
        if stuck:
            print(f"second request: no response and no EOF in 5 s: the connection is deadlocked ({PIECES} body pieces)")
        sock.close()
        shutdown.set()
        nursery.cancel_scope.deadline = trio.current_time() + 2
    return 1 if stuck else 0


if __name__ == "__main__":
    sys.exit(trio.run(main))
