"""trio-websocket 0.12.2: a connection reset while the client is still
sending its opening handshake leaves ``open_websocket`` waiting for the whole
``connect_timeout`` (60 s by default) instead of failing at once.

Stock trio, no trio_uring.  The server accepts and resets the connection
(close with ``SO_LINGER`` 0, as a server that rejects a client early, or that
closes with unread data, does).  The client's reader task
(``WebSocketConnection._reader_task``) sends the handshake request, then
reads.  If the send fails, ``_send`` raises ``ConnectionClosed`` and the
reader only sets ``_reader_running = False``; if the receive fails, it calls
``_abort_web_socket``, which sets ``_close_handshake``.  Either way the reader
ends and nothing sets ``_open_handshake`` or records why, so
``connect_websocket`` waits on ``_open_handshake.wait()`` until the connect
timeout cancels it (``ConnectionTimeout``).

    python trio_websocket_reset_during_handshake.py   # exit 1 if it waited out the timeout
"""

import socket
import sys

import trio
from trio_websocket import HandshakeError, open_websocket

TIMEOUT = 3.0


async def main() -> int:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        async def reset_the_first_client() -> None:
            conn, _ = await trio.to_thread.run_sync(listener.accept)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            conn.close()  # RST

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reset_the_first_client)
            start = trio.current_time()
            try:
                async with open_websocket("127.0.0.1", port, "/", use_ssl=False, connect_timeout=TIMEOUT):
                    outcome = "connected?!"
            except (HandshakeError, OSError, trio.TooSlowError) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            took = trio.current_time() - start
    print(f"open_websocket after a reset: {outcome} after {took:.2f} s (connect_timeout={TIMEOUT})")
    return 1 if took >= TIMEOUT else 0


if __name__ == "__main__":
    sys.exit(trio.run(main))
