"""A small static-file HTTP/1.1 server on trio_uring, sending files with
``trio_uring.sendfile`` (file -> pipe -> socket with SPLICE: the bytes never
pass through Python).

    python examples/static_server.py --root DIR [--port 8000]
    python examples/static_server.py --selftest     # serve a temporary tree, check it, exit

GET and HEAD, keep-alive, one ``Range: bytes=a-b`` range (206), 404 for
what is not a regular file under the root.  The HTTP parsing is hand-rolled
and deliberately minimal: a demo, not a hardened server.
"""

from __future__ import annotations

import argparse
import functools
import mimetypes
import os
import posixpath
import stat
import sys
import tempfile
import urllib.parse

import trio

import trio_uring

MAX_HEAD = 16 * 1024


class BadRequest(Exception):
    pass


async def read_head(stream: trio.SocketStream, buffer: bytearray) -> bytes | None:
    """One request head (up to the blank line); None at a clean EOF."""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD:
            raise BadRequest("request head too large")
        chunk = await stream.receive_some(65536)
        if not chunk:
            if buffer:
                raise BadRequest("connection closed mid-request")
            return None
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    buffer[:] = rest
    return head


def parse(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise BadRequest("bad request line") from None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest("bad header line")
        headers[name.strip().lower()] = value.strip()
    return method, target, version, headers


def resolve(root: str, target: str) -> str | None:
    """The file under ``root`` that ``target`` names, or None if it would
    be outside (``..``, or a symlink out)."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
    clean = posixpath.normpath("/" + path)  # no way above the root
    full = os.path.join(root, clean.lstrip("/"))
    if path.endswith("/") or clean == "/":
        full = os.path.join(full, "index.html")
    if not os.path.realpath(full).startswith(os.path.realpath(root) + os.sep):
        return None
    return full


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(offset, count)`` of a single ``bytes=a-b`` range, if valid."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].partition("-")
    try:
        if first == "":
            count = min(int(last), size)
            return size - count, count
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return None
    return start, end - start + 1


async def respond(stream: trio.SocketStream, status: str, headers: dict[str, str], body: bytes = b"") -> None:
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    await stream.send_all(head.encode("latin-1") + body)


async def serve_file(stream: trio.SocketStream, method: str, path: str, headers: dict[str, str], close: bool) -> None:
    conn = {"Connection": "close" if close else "keep-alive"}
    try:
        st = await trio_uring.Path(path).stat()  # one STATX
        if not stat.S_ISREG(st.st_mode):
            raise FileNotFoundError(path)
        f = await trio_uring.open_file(path, "rb")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
        await respond(stream, "404 Not Found", {"Content-Length": "9", **conn}, b"not found")
        return
    async with f:
        size = st.st_size
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
        wanted = byte_range(headers.get("range"), size)
        offset, count = wanted if wanted else (0, size)
        status = "206 Partial Content" if wanted else "200 OK"
        extra = {"Content-Range": f"bytes {offset}-{offset + count - 1}/{size}"} if wanted else {}
        out = {"Content-Type": kind, "Content-Length": str(count), "Accept-Ranges": "bytes", **extra, **conn}
        await respond(stream, status, out)
        if method == "GET" and count:
            sent = await trio_uring.sendfile(stream, f, offset, count)
            if sent != count:
                raise BadRequest("file changed while sending")


def make_handler(root: str):  # type: ignore[no-untyped-def]
    async def handler(stream: trio.SocketStream) -> None:
        buffer = bytearray()
        try:
            while True:
                head = await read_head(stream, buffer)
                if head is None:
                    return
                method, target, version, headers = parse(head)
                close = version == "HTTP/1.0" or headers.get("connection", "").lower() == "close"
                if method not in ("GET", "HEAD"):
                    await respond(stream, "405 Method Not Allowed", {"Allow": "GET, HEAD", "Content-Length": "0"})
                elif (path := resolve(root, target)) is None:
                    await respond(stream, "404 Not Found", {"Content-Length": "9"}, b"not found")
                else:
                    await serve_file(stream, method, path, headers, close)
                if close:
                    return
        except BadRequest:
            await respond(stream, "400 Bad Request", {"Content-Length": "0", "Connection": "close"})
        except trio.BrokenResourceError:
            pass  # the client went away
        finally:
            await stream.aclose()

    return handler


# ---- the self-test ---------------------------------------------------------------------


async def fetch(stream: trio.SocketStream, buffer: bytearray, request: str) -> tuple[int, dict[str, str], bytes]:
    await stream.send_all(request.encode("latin-1"))
    head = await read_head(stream, buffer)
    assert head is not None, "server closed the connection"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    if request.startswith("HEAD"):
        return status, headers, b""
    while len(buffer) < length:
        chunk = await stream.receive_some(1 << 20)
        assert chunk, "short body"
        buffer += chunk
    body = bytes(buffer[:length])
    del buffer[:length]
    return status, headers, body


def make_tree(root: str) -> dict[str, bytes]:
    files = {
        "hello.txt": b"hello, world\n",
        "empty.bin": b"",
        "big.bin": os.urandom(3 << 20),
        "sub/index.html": b"<h1>index</h1>\n",
        "with space.txt": b"spaces are fine",
    }
    for name, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    return files


async def selftest(clients: int) -> None:
    with tempfile.TemporaryDirectory() as root:
        files = make_tree(root)
        async with trio.open_nursery() as nursery:
            serve = functools.partial(trio.serve_tcp, make_handler(root), 0, host="127.0.0.1")
            listeners = await nursery.start(serve)
            port = listeners[0].socket.getsockname()[1]
            checked = [0, 0]

            async def client(i: int) -> None:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                buffer = bytearray()
                async with stream:
                    for name, data in files.items():
                        target = "/" + urllib.parse.quote(name.replace("index.html", ""))
                        status, headers, body = await fetch(stream, buffer, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n")
                        assert (status, body) == (200, data), (name, status)
                        checked[0] += 1
                        checked[1] += len(body)
                    big = files["big.bin"]
                    status, headers, body = await fetch(
                        stream, buffer, f"GET /big.bin HTTP/1.1\r\nRange: bytes={i}-{i + 99_999}\r\n\r\n"
                    )
                    assert (status, body) == (206, big[i : i + 100_000])
                    status, headers, body = await fetch(stream, buffer, "HEAD /big.bin HTTP/1.1\r\n\r\n")
                    assert (status, headers["content-length"]) == (200, str(len(big)))
                    for bad in ("/missing", "/../../etc/passwd", "/sub", "/%2e%2e/%2e%2e/etc/passwd"):
                        status, _, _ = await fetch(stream, buffer, f"GET {bad} HTTP/1.1\r\n\r\n")
                        assert status == 404, (bad, status)
                    status, headers, _ = await fetch(
                        stream, buffer, "GET /hello.txt HTTP/1.1\r\nConnection: close\r\n\r\n"
                    )
                    assert status == 200
                    assert await stream.receive_some(10) == b""  # the server closed it
                    checked[0] += 8

            async with trio.open_nursery() as clients_nursery:
                for i in range(clients):
                    clients_nursery.start_soon(client, i)
            nursery.cancel_scope.cancel()
        stats = trio.lowlevel.current_statistics().io_statistics
        splices = getattr(stats, "ops_submitted", {}).get("SPLICE", 0)
        print(f"backend: {getattr(stats, 'backend', '?')}")
        print(f"selftest passed: {checked[0]} requests, {checked[1]} body bytes checked, {splices} SPLICE operations")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=".", help="directory to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--selftest", action="store_true", help="serve a temporary tree, fetch from it, exit")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients in the self-test")
    args = parser.parse_args(argv)
    if args.selftest:
        trio_uring.run(selftest, args.clients)
        return 0
    print(f"serving {os.path.abspath(args.root)} on http://{args.host}:{args.port}/ (io_uring)")
    trio_uring.run(functools.partial(trio.serve_tcp, make_handler(args.root), args.port, host=args.host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
