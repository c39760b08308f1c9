"""Starlette's FileResponse and StaticFiles under hypercorn's trio worker on io_uring.

Files of 0 B to several MiB are served by hypercorn (``hypercorn.trio.serve``)
in a trio_uring run and fetched over loopback by an h11 client in the same
run; every body must be the file, byte for byte.  Every job handed to a
worker thread is counted (trio's ``start_thread_soon`` and
``threading.Thread.start``), not assumed:

* ``FileResponse(path, stat_result=await anyio.Path(path).stat())``: no
  thread at all -- the stat is a STATX, the file is read by
  ``anyio.open_file`` through trio_uring's hook;
* ``FileResponse(path)`` and ``StaticFiles``: Starlette itself calls
  ``anyio.to_thread.run_sync(os.stat, ...)`` (FileResponse without a
  ``stat_result``) and ``anyio.to_thread.run_sync(self.lookup_path, ...)``
  (StaticFiles, plus one ``os.stat`` of its directory) once per request.  Those explicit thread calls stay (trio_uring
  does not rewrite what an application sends to a thread); the file I/O,
  opening and reading, takes none.

The same server on stock trio shows the counter works: there anyio.open_file
and every read are thread jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import h11
import pytest
import trio

import trio_uring

from .test_anyio_files import thread_jobs

starlette = pytest.importorskip("starlette")
hypercorn_trio = pytest.importorskip("hypercorn.trio")

from hypercorn.config import Config  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import FileResponse  # noqa: E402
from starlette.routing import Mount, Route  # noqa: E402
from starlette.staticfiles import StaticFiles  # noqa: E402

SIZES = [0, 1, 4095, 4096, 65536, 65537, 1024 * 1024 + 3, 5 * 1024 * 1024 + 1]


def make_files(directory: Path) -> dict[str, bytes]:
    files = {}
    for size in SIZES:
        data = bytes((i * 7 + size) % 251 for i in range(min(size, 251))) * (size // 251 + 1)
        files[f"f{size}.bin"] = data[:size]
        (directory / f"f{size}.bin").write_bytes(data[:size])
    return files


def make_app(directory: Path) -> Starlette:
    async def with_stat(request: Request) -> FileResponse:
        path = anyio.Path(directory) / request.path_params["name"]
        return FileResponse(path, stat_result=await path.stat())

    async def plain(request: Request) -> FileResponse:
        return FileResponse(directory / request.path_params["name"])

    return Starlette(
        routes=[
            Route("/stat/{name}", with_stat),
            Route("/plain/{name}", plain),
            Mount("/static", StaticFiles(directory=directory)),
        ]
    )


async def fetch(port: int, target: str) -> tuple[int, bytes]:
    """GET ``target`` with h11 over a trio socket: status and body."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    async with stream:
        request = h11.Request(method="GET", target=target, headers=[("Host", "t"), ("Connection", "close")])
        await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
        status, body = 0, bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(1 << 16))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, bytes(body)


async def serve_and_fetch(directory: Path, targets: list[str]) -> list[tuple[int, bytes]]:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    app = make_app(directory)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(hypercorn_trio.serve, app, config)
        port = int(binds[0].rsplit(":", 1)[1])
        results = [await fetch(port, target) for target in targets]
        nursery.cancel_scope.cancel()
    return results


def served(run: Callable[..., Any], directory: Path, prefix: str) -> tuple[list[tuple[int, bytes]], list[str]]:
    targets = [f"/{prefix}/f{size}.bin" for size in SIZES]
    with thread_jobs() as jobs:
        results = run(serve_and_fetch, directory, targets)
    return results, jobs


@pytest.mark.parametrize("prefix", ["stat", "plain", "static"])
def test_starlette_files_on_io_uring(tmp_path: Path, prefix: str) -> None:
    files = make_files(tmp_path)
    results, jobs = served(trio_uring.run, tmp_path, prefix)
    for size, (status, body) in zip(SIZES, results, strict=True):
        assert status == 200, size
        assert body == files[f"f{size}.bin"], size
    # The jobs Starlette itself sends to a thread, one per request; none
    # for opening or reading the file.
    # (StaticFiles also checks its directory, once: os.stat in a thread)
    expected = {"stat": [], "plain": ["stat"] * len(SIZES), "static": ["stat"] + ["lookup_path"] * len(SIZES)}[prefix]
    assert [job.split()[1] for job in jobs if job.startswith("anyio ")] == expected, jobs
    trio_jobs = [job for job in jobs if job.startswith("job ")]
    assert len(trio_jobs) == len(expected), jobs  # no other worker-thread job
    if not expected:
        assert jobs == []  # not a thread started either
    print(f"/{prefix}: {len(SIZES)} files, {sum(SIZES)} bytes, worker-thread jobs: {len(trio_jobs)} {expected[:1]}")


def test_the_counter_sees_anyio_threads_on_stock_trio(tmp_path: Path) -> None:
    files = make_files(tmp_path)
    results, jobs = served(trio.run, tmp_path, "stat")
    assert [body for _, body in results] == [files[f"f{size}.bin"] for size in SIZES]
    names = {job.split()[1] for job in jobs if job.startswith("anyio ")}
    assert {"open", "read", "close"} <= names, names
    print(f"stock trio: {len(jobs)} worker-thread jobs for {len(SIZES)} files")


def test_starlette_zero_copy_extension_not_offered(tmp_path: Path) -> None:
    """Starlette sends ``http.response.pathsend`` (a zero-copy ASGI
    extension) only if the server lists it in ``scope["extensions"]``;
    hypercorn's trio worker does not, so FileResponse reads the file itself
    (docs/anyio.md).  Fails, as a reminder, the day hypercorn offers it."""
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(dict(scope.get("extensions") or {}))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> None:
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = config.errorlog = None
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(hypercorn_trio.serve, app, config)
            status, _ = await fetch(int(binds[0].rsplit(":", 1)[1]), "/")
            assert status == 204
            nursery.cancel_scope.cancel()

    trio_uring.run(main)
    assert seen
    assert "http.response.pathsend" not in seen[0]
    assert "http.response.zerocopysend" not in seen[0]
