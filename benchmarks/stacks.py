"""Real web stacks for the benchmarks: hypercorn's trio worker serving an ASGI app.

    python benchmarks/stacks.py APP BACKEND [--cpu N] [--max-seconds S] [--nofile N]

APP, always at ``GET /``:

``hello``
    a plain ASGI app (no framework): 200 ``Hello, world!``
``json``
    Starlette, a ``JSONResponse`` endpoint
``file64k``
    Starlette, ``FileResponse(path)`` of a 64 KiB file, as users write it
    (Starlette then stats the file in a worker thread, on both backends)
``file64k-stat``
    the same with ``stat_result=await anyio.Path(path).stat()``: no
    worker thread on trio_uring (a STATX)

BACKEND is ``trio`` (``trio.run``) or ``trio_uring`` (``trio_uring.run``):
the same code on both.  Like benchmarks/servers.py, the server binds
127.0.0.1 on an ephemeral port, pins itself to CPU ``--cpu``, prints
``{"port": ..., "pid": ...}`` and answers ``stats`` lines on standard input
(it exits at end of input, or after ``--max-seconds``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
from servers import emit, setup_process, trio_control

APPS = ("hello", "json", "file64k", "file64k-stat")
FILE_SIZE = 64 * 1024
HELLO = b"Hello, world!"

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


async def hello_app(
    scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(HELLO))],
        }
    )
    await send({"type": "http.response.body", "body": HELLO})


def make_app(name: str, directory: str) -> ASGIApp:
    if name == "hello":
        return hello_app
    import anyio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    path = os.path.join(directory, "file64k.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(FILE_SIZE))

    async def json_endpoint(request: Request) -> Response:
        return JSONResponse({"message": "Hello, world!", "items": [1, 2, 3]})

    async def file_endpoint(request: Request) -> Response:
        return FileResponse(path)

    async def file_stat_endpoint(request: Request) -> Response:
        return FileResponse(path, stat_result=await anyio.Path(path).stat())

    endpoint = {"json": json_endpoint, "file64k": file_endpoint, "file64k-stat": file_stat_endpoint}[name]
    return Starlette(routes=[Route("/", endpoint)])


async def main(app_name: str, backend: str, max_seconds: float) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.backlog = 4096
    with tempfile.TemporaryDirectory() as directory:
        app = make_app(app_name, directory)
        with trio.move_on_after(max_seconds):
            async with trio.open_nursery() as nursery:
                binds = await nursery.start(partial(serve, app, config))
                emit({"port": int(binds[0].rsplit(":", 1)[1]), "pid": os.getpid(), "backend": backend})
                nursery.start_soon(trio_control, backend, nursery.cancel_scope)


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("app", choices=APPS)
    parser.add_argument("backend", choices=("trio", "trio_uring"))
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    parser.add_argument("--nofile", type=int, default=4096, help="raise RLIMIT_NOFILE to this (own process only)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="exit by itself after this long")
    args = parser.parse_args(argv)
    setup_process(args.cpu, args.nofile)
    if args.backend == "trio":
        trio.run(main, args.app, args.backend, args.max_seconds)
    else:
        import trio_uring

        trio_uring.run(main, args.app, args.backend, args.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
