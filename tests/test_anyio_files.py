"""anyio's file API (``anyio.open_file``, ``anyio.Path``, ``anyio.wrap_file``) on io_uring.

Differential: hypothesis draws a file, a mode and a sequence of operations
(the strategies of test_files.py); the sequence runs once with anyio on
stock trio (``anyio.run(backend="trio")``: anyio's own code, io.open in worker
threads) and once with ``trio_uring.anyio_run`` (the hook: trio_uring.open_file
under anyio's AsyncFile), recording every result, every exception and the
bytes on disk after every call; the two records must be identical, and the
io_uring run must not have handed a single job to a worker thread.  The same
for anyio.Path's methods on a small directory tree.

Then: the hook itself (imports made before and after installing, what stays
anyio's own outside a trio_uring run, wrap_file, introspection), and
cancellation of reads and writes in flight, checked byte for byte.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
from anyio import open_file as open_file_imported_early
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_uring
from trio_uring import _anyio_files
from trio_uring.testing import Region, sweep

from .filetools import (
    cancel_a_write_in_flight,
    cancel_in_flight,
    drop_cache,
    outcome,
    read_bytes,
    read_lines_in_region,
    write_bytes,
    write_chunks_in_region,
)
from .test_files import BIG, Op, binary_case, text_case

pytestmark = pytest.mark.filterwarnings("ignore:line buffering:RuntimeWarning")


# ---- counting worker-thread jobs ---------------------------------------------------------------


@contextlib.contextmanager
def thread_jobs() -> Iterator[list[str]]:
    """Every job handed to trio's thread cache (``"job <name>"``: trio.to_thread,
    and so anyio's to_thread on trio), every threading.Thread started
    (``"thread <name>"``) and every call of anyio.to_thread.run_sync
    (``"anyio <function>"``), while inside."""
    import anyio.to_thread
    import trio._threads  # trio.to_thread.run_sync hands its job to this name

    jobs: list[str] = []
    real_soon = trio._threads.start_thread_soon
    real_start = threading.Thread.start
    real_anyio = anyio.to_thread.run_sync

    async def anyio_run_sync(func: Any, *args: Any, **kwargs: Any) -> Any:
        jobs.append(f"anyio {getattr(func, '__name__', func)}")
        return await real_anyio(func, *args, **kwargs)

    def soon(fn: Any, deliver: Any, name: str | None = None) -> None:
        jobs.append(f"job {name}")
        real_soon(fn, deliver, name)

    def start(self: threading.Thread) -> None:
        jobs.append(f"thread {self.name}")
        real_start(self)

    trio._threads.start_thread_soon = soon
    threading.Thread.start = start  # type: ignore[method-assign]
    anyio.to_thread.run_sync = anyio_run_sync
    try:
        yield jobs
    finally:
        anyio.to_thread.run_sync = real_anyio
        trio._threads.start_thread_soon = real_soon
        threading.Thread.start = real_start  # type: ignore[method-assign]


def on_stock(fn: Callable[..., Any], *args: Any) -> Any:
    """anyio's own code: anyio on stock trio."""
    assert not trio_uring.is_installed()
    return anyio.run(fn, *args, backend="trio")


def on_uring(fn: Callable[..., Any], *args: Any) -> tuple[Any, list[str]]:
    """The hook: anyio on trio on io_uring; with the worker-thread jobs seen."""
    with thread_jobs() as jobs:
        value = trio_uring.anyio_run(fn, *args)
    return value, jobs


def uring_file_class() -> type:
    return _anyio_files._async_file_class(anyio.AsyncFile)


# ---- files: the differential run ---------------------------------------------------------------


async def apply(f: Any, op: Op) -> tuple[str, Any]:
    """One of test_files.py's operations, through anyio's AsyncFile API (its
    readline and readlines take no size; readall and peek are not async
    there: read instead)."""
    name, args = op
    if name in ("readinto", "readinto1"):
        buf = bytearray(args[0])
        got = await outcome(getattr(f, name), buf)
        return got[0], (got[1], bytes(buf))
    if name == "next":
        try:
            return "ok", await f.__aiter__().__anext__()
        except StopAsyncIteration:
            return "stop", None
        except Exception as exc:
            return type(exc).__name__, str(exc)
    if name in ("readline", "readlines"):
        return await outcome(getattr(f, name))
    if name in ("readall", "peek"):
        return await outcome(f.read)
    if name == "seek_cookie":
        return "skip", None  # (cookies are the io objects' own: compared in test_files)
    if name == "close":
        return await outcome(f.aclose)
    return await outcome(getattr(f, name), *args)


async def record(path: str, mode: str, buffering: int, kwargs: dict[str, Any], ops: list[Op]) -> list[Any]:
    """Open ``path`` with anyio.open_file and apply ``ops``: each result and
    the bytes on disk after it."""
    opened = await outcome(anyio.open_file, path, mode, buffering, **kwargs)
    if opened[0] != "ok":
        return [(opened[0], opened[1].replace(path, "P"))]
    f = opened[1]
    on_ring = isinstance(f, uring_file_class())
    log: list[Any] = [("opened", type(f.wrapped).__name__ if buffering else "raw", f.mode if hasattr(f, "mode") else None)]
    for op in [*ops, ("close", ()), ("read", (1,))]:
        log.append((op, await apply(f, op), read_bytes(path)))
        if on_ring and op[0] != "close":
            assert f._uring.sync_reads == 0, (op, "a read the prefetch did not foresee")
    log.append(on_ring)
    return log


def differential(mode: str, buffering: int, kwargs: dict[str, Any], initial: bytes, ops: list[Op]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f")
        if "x" not in mode:
            write_bytes(path, initial)
        expected = on_stock(record, path, mode, buffering, kwargs, ops)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        if "x" not in mode:
            write_bytes(path, initial)
        got, jobs = on_uring(record, path, mode, buffering, kwargs, ops)
    assert expected[-1] is False
    if len(got) == 1:  # the open failed, the same way
        assert got == expected
        return
    assert got[-1] is True, "anyio.open_file on io_uring did not give trio_uring's file"
    for i, (e, g) in enumerate(zip(expected[:-1], got[:-1], strict=True)):
        assert g == e, (i, ops)
    assert jobs == []


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(binary_case())
def test_differential_binary(case: tuple[str, int, bytes, list[Op]]) -> None:
    mode, buffering, initial, ops = case
    differential(mode, buffering, {}, initial, ops)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text_case())
def test_differential_text(case: tuple[str, int, dict[str, Any], bytes, list[Op]]) -> None:
    mode, buffering, kwargs, initial, ops = case
    differential(mode, buffering, kwargs, initial, ops)


# ---- anyio.wrap_file of a plain open() file: the differential run -------------------------------


def plain_file_class() -> type:
    return _anyio_files._plain_file_class(anyio.AsyncFile)


async def wrap_record(path: str, mode: str, buffering: int, ops: list[Op]) -> list[Any]:
    """``anyio.wrap_file(open(path, mode, buffering))`` and ``ops``: each
    result, ``tell()`` and the bytes on disk after it."""
    try:
        fp = open(path, mode, buffering)  # noqa: ASYNC230, SIM115  -- the object under test is a plain one
    except OSError as exc:
        return [(type(exc).__name__, str(exc).replace(path, "P"))]
    f = anyio.wrap_file(fp)
    on_ring = isinstance(f, plain_file_class())
    log: list[Any] = [("wrapped", type(fp).__name__)]
    for op in [*ops, ("close", ()), ("read", (1,))]:
        log.append((op, await apply(f, op), await outcome(f.tell), read_bytes(path)))
    log.append(on_ring and f._plain.own)
    return log


def wrap_differential(mode: str, buffering: int, initial: bytes, ops: list[Op]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f")
        if "x" not in mode:
            write_bytes(path, initial)
        expected = on_stock(wrap_record, path, mode, buffering, ops)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        if "x" not in mode:
            write_bytes(path, initial)
        got, jobs = on_uring(wrap_record, path, mode, buffering, ops)
    assert expected[-1] is False
    if len(got) == 1:  # the open failed, the same way
        assert got == expected
        return
    for i, (e, g) in enumerate(zip(expected[:-1], got[:-1], strict=True)):
        assert g == e, (i, ops)
    if buffering != 0 and "+" in mode:
        # a BufferedRandom: anyio's own AsyncFile, in anyio's threads (docs/anyio.md)
        assert got[-1] is False
        return
    assert got[-1] is True, "anyio.wrap_file on io_uring did not give (or gave up) the ring's file"
    assert jobs == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(binary_case())
def test_wrap_file_differential(case: tuple[str, int, bytes, list[Op]]) -> None:
    """Every binary mode (r, r+, w, w+, a, a+, x, x+), unbuffered and with
    buffers of 3 bytes to 4 KiB and the default."""
    mode, buffering, initial, ops = case
    wrap_differential(mode, buffering, initial, ops)


# ---- anyio.Path: the differential run ------------------------------------------------------------

NAMES = ["a", "b", "d", "d/x", "d/e", "d/e/y", "missing/z", "link"]
PATH_OPS = st.one_of(
    st.tuples(st.just("write_bytes"), st.tuples(st.binary(max_size=50_000))),
    st.tuples(st.just("write_text"), st.tuples(st.text(alphabet="ab\né😀\r", max_size=50))),
    st.tuples(st.just("read_bytes"), st.just(())),
    st.tuples(st.just("read_text"), st.just(())),
    st.tuples(st.just("stat"), st.just(())),
    st.tuples(st.just("lstat"), st.just(())),
    st.tuples(st.just("exists"), st.just(())),
    st.tuples(st.just("is_dir"), st.just(())),
    st.tuples(st.just("is_file"), st.just(())),
    st.tuples(st.just("is_symlink"), st.just(())),
    st.tuples(st.just("is_fifo"), st.just(())),
    st.tuples(st.just("mkdir"), st.tuples(st.sampled_from([0o777, 0o700]), st.booleans(), st.booleans())),
    st.tuples(st.just("unlink"), st.tuples(st.booleans())),
    st.tuples(st.just("rmdir"), st.just(())),
    st.tuples(st.just("rename"), st.tuples(st.sampled_from(NAMES))),
    st.tuples(st.just("replace"), st.tuples(st.sampled_from(NAMES))),
    st.tuples(st.just("touch"), st.tuples(st.sampled_from([0o666, 0o600]), st.booleans())),
    st.tuples(st.just("symlink_to"), st.tuples(st.sampled_from(NAMES))),
    st.tuples(st.just("hardlink_to"), st.tuples(st.sampled_from(NAMES))),
    st.tuples(st.just("samefile"), st.tuples(st.sampled_from(NAMES))),
    st.tuples(st.just("open_read"), st.tuples(st.sampled_from(["rb", "r"]))),
    st.tuples(st.just("open_append"), st.tuples(st.binary(max_size=20))),
)


def snapshot(root: str) -> list[tuple[str, str, Any]]:
    """What is in the tree: kind and contents, link targets, modes."""
    seen: list[tuple[str, str, Any]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st_ = os.lstat(p)
            if os.path.islink(p):
                seen.append((rel, "link", os.readlink(p).replace(root, "R")))
            elif os.path.isdir(p):
                seen.append((rel, "dir", st_.st_mode))
            else:
                seen.append((rel, "file", (read_bytes(p), st_.st_mode, st_.st_nlink)))
    return sorted(seen)


def stat_fields(st_: os.stat_result) -> tuple[int, ...]:
    return (st_.st_mode, st_.st_size, st_.st_nlink, st_.st_uid, st_.st_gid)


async def path_op(root: str, name: str, op: str, args: tuple[Any, ...]) -> tuple[str, Any]:
    p = anyio.Path(root) / name
    if op in ("rename", "replace", "symlink_to", "hardlink_to", "samefile"):
        other = anyio.Path(root) / args[0]
        got = await outcome(getattr(p, op), other)
        if got[0] == "ok" and isinstance(got[1], anyio.Path):
            assert type(got[1]) is anyio.Path
            return "ok", str(got[1]).removeprefix(root)
        return got
    if op == "open_read":

        async def read() -> Any:
            async with await p.open(args[0]) as f:
                assert isinstance(f, anyio.AsyncFile)
                return await f.read()

        return await outcome(read)
    if op == "open_append":

        async def append() -> Any:
            async with await p.open("ab") as f:
                return await f.write(args[0])

        return await outcome(append)
    got = await outcome(getattr(p, op), *args)
    if got[0] == "ok" and isinstance(got[1], os.stat_result):
        return "ok", stat_fields(got[1])
    return got


async def path_record(root: str, steps: list[tuple[str, Op]]) -> list[Any]:
    log = []
    for name, (op, args) in steps:
        result = await path_op(root, name, op, args)
        if result[0] != "ok":
            result = (result[0], result[1].replace(root, "R"))
        log.append((name, op, result, snapshot(root)))
    return log


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(NAMES), PATH_OPS), max_size=20))
def test_differential_path(steps: list[tuple[str, Op]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        roots = [os.path.join(d, "stock"), os.path.join(d, "uring")]
        for root in roots:
            os.mkdir(root)
            os.mkdir(os.path.join(root, "d"))
            write_bytes(os.path.join(root, "a"), b"first")
        expected = on_stock(path_record, roots[0], steps)
        got, jobs = on_uring(path_record, roots[1], steps)
    assert got == expected
    # touch() of a file that exists is utimensat(2): no io_uring opcode, a thread
    touches = sum(1 for name, (op, args) in steps if op == "touch")
    assert len([j for j in jobs if "utime" in j]) <= touches
    assert [j for j in jobs if "utime" not in j] == []


# ---- the hook ----------------------------------------------------------------------------------


def test_everything_in_the_ring_without_threads(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)

    async def main() -> dict[str, int]:
        before = dict(trio.lowlevel.current_statistics().io_statistics.ops_submitted)
        p = anyio.Path(tmp_path) / "f.bin"
        assert await p.write_bytes(data) == len(data)
        assert await p.read_bytes() == data
        assert await p.exists()
        assert await p.is_file()
        assert not await p.is_dir()
        assert (await p.stat()).st_size == len(data)
        await (anyio.Path(tmp_path) / "sub" / "deeper").mkdir(parents=True)
        q = await p.rename(tmp_path / "sub" / "g.bin")
        assert isinstance(q, anyio.Path)
        # the anyio.open_file bound by `from anyio import open_file` at import time
        async with await open_file_imported_early(q, "rb") as f:
            assert isinstance(f, anyio.AsyncFile)
            assert isinstance(f, uring_file_class())
            await f.seek(1000)
            assert await f.read(4096) == data[1000:5096]
            assert await f.tell() == 5096
        async with await anyio.open_file(tmp_path / "t.txt", "w+", encoding="utf-8") as t:
            await t.write("é\n" * 1000)
            await t.seek(0)
            assert [line async for line in t] == ["é\n"] * 1000
        await q.unlink()
        after = trio.lowlevel.current_statistics().io_statistics.ops_submitted
        return {name: n - before.get(name, 0) for name, n in after.items()}

    ops, jobs = on_uring(main)
    assert jobs == []
    for opcode in ("OPENAT", "STATX", "WRITE", "CLOSE", "MKDIRAT", "RENAMEAT", "UNLINKAT"):
        assert ops.get(opcode, 0) >= 1, (opcode, ops)


def test_anyio_own_code_outside_a_trio_uring_run(tmp_path: Path) -> None:
    write_bytes(tmp_path / "f", b"data")

    async def main() -> tuple[type, bytes]:
        async with await anyio.open_file(tmp_path / "f", "rb") as f:
            return type(f), await f.read()

    for backend in ("asyncio", "trio"):
        with thread_jobs() as jobs:
            kind, data = anyio.run(main, backend=backend)
        assert (kind, data) == (anyio.AsyncFile, b"data"), backend
        if backend == "trio":
            assert jobs, "anyio on stock trio uses worker threads"
    async def wrapped() -> type:
        with open(tmp_path / "f", "rb") as fp:  # noqa: ASYNC230
            f = anyio.wrap_file(fp)
            assert await f.read() == b"data"
            return type(f)

    # asyncio while installed: still anyio's own
    with trio_uring.installed():
        kind, data = anyio.run(main, backend="asyncio")
        assert kind is anyio.AsyncFile
        assert anyio.run(wrapped, backend="asyncio") is anyio.AsyncFile
        assert anyio.run(wrapped, backend="trio") is plain_file_class()
    # a plain file wrapped outside any run, then used on asyncio: anyio's code
    with trio_uring.installed(), open(tmp_path / "f", "rb") as fp:
        f = anyio.wrap_file(fp)
        assert isinstance(f, plain_file_class())

        async def read_it() -> bytes:
            return await f.read()  # type: ignore[no-any-return]

        with thread_jobs() as jobs:
            assert anyio.run(read_it, backend="asyncio") == b"data"
        assert jobs
    with trio_uring.installed():
        kind, data = anyio.run(main, backend="trio")
        assert kind is uring_file_class()
    # and once uninstalled, anyio's functions are anyio's again
    assert anyio.open_file.__code__.co_filename.endswith(os.path.join("anyio", "_core", "_fileio.py"))
    assert "__signature__" not in vars(anyio.open_file)
    assert anyio.Path.read_bytes.__module__ == "anyio._core._fileio"


def test_signatures_and_identity_kept() -> None:
    before = inspect.signature(anyio.open_file), inspect.signature(anyio.wrap_file)
    with trio_uring.installed():
        assert anyio.open_file is open_file_imported_early
        assert (inspect.signature(anyio.open_file), inspect.signature(anyio.wrap_file)) == before
        assert inspect.iscoroutinefunction(anyio.open_file)
        assert inspect.signature(anyio.Path.mkdir) == inspect.signature(anyio.Path.mkdir.__trio_uring_original__)
    assert (inspect.signature(anyio.open_file), inspect.signature(anyio.wrap_file)) == before


def test_bad_arguments_same_errors(tmp_path: Path) -> None:
    calls: list[tuple[Any, ...]] = [
        (tmp_path / "f", "rz"),
        (tmp_path / "f", "r", -1, None, None, None, True, None, None),  # one positional too many
        (tmp_path / "nope" / "f", "r"),
        (tmp_path, "r"),
        (tmp_path / "f", "wb", 0, "utf-8"),
    ]

    async def main() -> list[tuple[str, Any]]:
        results = [await outcome(anyio.open_file, *args) for args in calls]
        results.append(await outcome(anyio.open_file, tmp_path / "f", "w", limiter="no"))
        results.append(await outcome(anyio.open_file, tmp_path / "f", "w", bogus=1))
        results.append(await outcome(anyio.Path(tmp_path / "f").read_text, "utf-8", "strict", "\n"))
        results.append(await outcome(anyio.Path(tmp_path / "f").mkdir, 0o777, False, False, True))
        return [(kind, str(value).replace(str(tmp_path), "T")) for kind, value in results]

    expected = on_stock(main)
    got, _ = on_uring(main)
    assert got == expected
    assert "TypeError" in {kind for kind, _ in got}


def test_wrap_file(tmp_path: Path) -> None:
    write_bytes(tmp_path / "f", b"0123456789")

    async def main() -> None:
        f = await anyio.open_file(tmp_path / "f", "r+b")
        again = anyio.wrap_file(f.wrapped)
        assert isinstance(again, uring_file_class())
        assert again.wrapped is f.wrapped
        assert await again.read(3) == b"012"
        assert await f.read(3) == b"345"  # one file, one position
        limiter = anyio.CapacityLimiter(1)
        assert anyio.wrap_file(f.wrapped, limiter=limiter).limiter is limiter
        await again.aclose()
        assert f.closed
        # a plain open() binary file: the ring's file (its I/O in the ring)
        with open(tmp_path / "f", "rb") as plain:  # noqa: ASYNC230
            w = anyio.wrap_file(plain)
            assert type(w) is plain_file_class()
            assert w.wrapped is plain
            assert await w.read(4) == b"0123"
            w2 = anyio.wrap_file(plain, limiter=limiter)  # wrapped again: one state, one position
            assert type(w2) is plain_file_class()
            assert w2._plain is w._plain
            assert await w2.read() == b"456789"
        # what stays anyio's own: text, BufferedRandom, a BytesIO, a subclass
        with open(tmp_path / "f", encoding="utf-8") as text:  # noqa: ASYNC230
            assert type(anyio.wrap_file(text)) is anyio.AsyncFile
        with open(tmp_path / "f", "r+b") as both:  # noqa: ASYNC230
            assert type(anyio.wrap_file(both)) is anyio.AsyncFile
        assert type(anyio.wrap_file(io.BytesIO(b"x"))) is anyio.AsyncFile
        with open(tmp_path / "f", "rb", buffering=0) as raw:  # noqa: ASYNC230
            sub = type("Sub", (io.BufferedReader,), {})(raw)
            assert type(anyio.wrap_file(sub)) is anyio.AsyncFile
        # and a plain file whose buffer holds writes we cannot see
        with open(tmp_path / "g", "wb") as pending:  # noqa: ASYNC230
            pending.write(b"unflushed")
            assert type(anyio.wrap_file(pending)) is anyio.AsyncFile

    on_uring(main)


def test_wrap_file_in_the_ring_without_threads(tmp_path: Path) -> None:
    """wrap_file of plain open() binary files: the data through READ and
    WRITE, every byte checked, and not one worker-thread job or thread."""
    data = os.urandom(3 * 1024 * 1024 + 17)

    async def main() -> dict[str, int]:
        before = dict(trio.lowlevel.current_statistics().io_statistics.ops_submitted)
        for buffering in (-1, 0):
            path = tmp_path / f"f{buffering}"
            with open(path, "wb", buffering) as fp:  # noqa: ASYNC230
                f = anyio.wrap_file(fp)
                assert isinstance(f, plain_file_class())
                assert await f.write(data[:5]) == 5
                assert await f.write(data[5:]) == len(data) - 5
                await f.flush()
            async with anyio.wrap_file(open(path, "ab", buffering)) as f:  # noqa: ASYNC230
                assert isinstance(f, plain_file_class())
                assert await f.write(b"tail") == 4
                assert await f.tell() == len(data) + 4
            async with anyio.wrap_file(open(path, "rb", buffering)) as f:  # noqa: ASYNC230
                assert isinstance(f, plain_file_class())
                assert await f.read(10) == data[:10]
                assert await f.seek(-4, os.SEEK_END) == len(data)
                assert await f.read() == b"tail"
                await f.seek(100)
                assert await f.read() == data[100:] + b"tail"
            with open(path, "r+b", 0) as fp:  # noqa: ASYNC230
                f = anyio.wrap_file(fp)
                assert isinstance(f, plain_file_class())
                await f.seek(1)
                assert await f.write(b"xy") == 2
                assert await f.read(3) == data[3:6]
                assert await f.truncate() == 6
            assert read_bytes(path) == data[:1] + b"xy" + data[3:6]
        after = trio.lowlevel.current_statistics().io_statistics.ops_submitted
        return {name: n - before.get(name, 0) for name, n in after.items()}

    ops, jobs = on_uring(main)
    assert jobs == []
    assert ops.get("READ", 0) >= 1, ops
    assert ops.get("WRITE", 0) >= 4, ops


def test_wrap_file_object_used_directly(tmp_path: Path) -> None:
    """An object the program uses itself between two calls goes back to
    anyio's code, with nothing lost; one holding read-ahead is anyio's."""
    path = tmp_path / "f"

    async def main() -> None:
        with open(path, "wb") as fp:  # noqa: ASYNC230
            f = anyio.wrap_file(fp)
            assert isinstance(f, plain_file_class())
            assert await f.write(b"ab") == 2  # in fp's buffer
            fp.write(b"cd")  # the program's own write
            assert await f.write(b"ef") == 2  # anyio's code from now on
            assert not f._plain.own
            assert await f.tell() == 6
        assert read_bytes(path) == b"abcdef"
        with open(path, "rb") as fp:  # noqa: ASYNC230
            assert fp.read(1) == b"a"  # now it holds read-ahead
            f = anyio.wrap_file(fp)
            assert type(f) is anyio.AsyncFile
            assert await f.read1(10) == b"bcdef"

    _, jobs = on_uring(main)
    assert jobs  # anyio's threads


def test_imported_after_installing(tmp_path: Path) -> None:
    """anyio imported for the first time while installed: hooked on import."""
    code = textwrap.dedent(
        f"""
        import sys, trio_uring
        assert "anyio" not in sys.modules
        trio_uring.install()
        import anyio
        from trio_uring import _anyio_files
        async def main():
            async with await anyio.open_file({str(tmp_path / "f")!r}, "w") as f:
                await f.write("hi")
            return type(f) is _anyio_files._async_file_class(anyio.AsyncFile)
        assert anyio.run(main, backend="trio")
        trio_uring.uninstall()
        assert not any(isinstance(f, _anyio_files._Finder) for f in sys.meta_path)
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert read_bytes(tmp_path / "f") == b"hi"


def test_fifo_is_anyio_own(tmp_path: Path) -> None:
    """A FIFO cannot be read at offsets: anyio's own AsyncFile over io.open's
    object (opened and read in threads, as trio_uring.open_file does)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    async def main() -> bytes:
        async def writer() -> None:
            async with await anyio.open_file(fifo, "wb") as w:
                await w.write(b"through the pipe")

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            async with await anyio.open_file(fifo, "rb") as r:
                assert type(r) is anyio.AsyncFile
                return await r.read()  # type: ignore[no-any-return]

    data, jobs = on_uring(main)
    assert data == b"through the pipe"
    assert jobs


# ---- cancellation ------------------------------------------------------------------------------


async def open_anyio(path: Path, mode: str, buffering: int) -> Any:
    f = await anyio.open_file(path, mode, buffering)
    assert isinstance(f, uring_file_class())
    return f


async def open_wrapped(path: Path, mode: str, buffering: int) -> Any:
    """anyio.wrap_file of a plain open() file."""
    f = anyio.wrap_file(open(path, mode, buffering))  # noqa: ASYNC230, SIM115
    assert isinstance(f, plain_file_class())
    return f


OPENERS = {"open_file": open_anyio, "wrap_file": open_wrapped}


@pytest.mark.parametrize("how", OPENERS)
def test_cancelled_read_is_all_or_nothing(tmp_path: Path, how: str) -> None:
    write_bytes(tmp_path / "f", BIG)

    async def main() -> list[bool]:
        seen = []
        for i, buffering in enumerate((-1, 0, -1)):
            f = await OPENERS[how](tmp_path / "f", "rb", buffering)
            assert await f.seek(i * 1000) == i * 1000
            drop_cache(tmp_path / "f")
            cancelled, data = await cancel_in_flight(lambda f=f: f.read(len(BIG)))
            seen.append(cancelled)
            if cancelled:
                assert await f.tell() == i * 1000
                assert await f.read() == BIG[i * 1000 :]
            else:
                assert data == BIG[i * 1000 :]
            await f.aclose()
        return seen

    seen, jobs = on_uring(main)
    assert jobs == []
    print("reads cancelled in flight:", sum(seen), "of", len(seen))


@pytest.mark.parametrize("how", OPENERS)
@pytest.mark.parametrize("buffering", [0, -1])
def test_cancelled_write_is_all_or_nothing(tmp_path: Path, buffering: int, how: str) -> None:
    async def main() -> list[bool]:
        seen = []
        for i in range(3):
            path = tmp_path / f"f{i}"
            f = await OPENERS[how](path, "wb", buffering)
            seen.append(await cancel_a_write_in_flight(f, path, BIG))
        return seen

    seen, jobs = on_uring(main)
    assert jobs == []
    print("writes cancelled in flight:", sum(seen), "of", len(seen))


# Deterministic: trio_uring.testing.sweep cancels the region at each io_uring
# operation in turn, once with the kernel cancelling it and once with the
# operation completing first (the races the tests above leave to the disk).


async def anyio_read_lines_body(region: Region, path: Path, text: str) -> None:
    f = await anyio.open_file(path, encoding="utf-8", newline="")
    assert isinstance(f, uring_file_class())
    await read_lines_in_region(region, f, text)


async def wrapped_read_lines_body(region: Region, path: Path, data: bytes, buffering: int) -> None:
    await read_lines_in_region(region, await open_wrapped(path, "rb", buffering), data)


def test_sweep_cancels_each_read(tmp_path: Path) -> None:
    text = "".join(("x" * (i * 40_000)) + "\r\n" for i in range(8))
    (tmp_path / "f").write_bytes(text.encode())
    report = sweep(anyio_read_lines_body, tmp_path / "f", text)
    report.raise_for_failures()
    assert len(report.ops) >= 3


@pytest.mark.parametrize("buffering", [0, -1])
def test_sweep_cancels_each_read_of_a_wrapped_file(tmp_path: Path, buffering: int) -> None:
    data = b"".join((b"x" * (i * 40_000)) + b"\r\n" for i in range(8))
    (tmp_path / "f").write_bytes(data)
    report = sweep(wrapped_read_lines_body, tmp_path / "f", data, buffering)
    report.raise_for_failures()
    assert len(report.ops) >= 3


async def anyio_write_chunks_body(region: Region, path: Path, buffering: int, how: str) -> None:
    await write_chunks_in_region(region, await OPENERS[how](path, "wb", buffering), path)


@pytest.mark.parametrize("how", OPENERS)
@pytest.mark.parametrize("buffering", [0, -1, 100])
def test_sweep_cancels_each_write(tmp_path: Path, buffering: int, how: str) -> None:
    report = sweep(anyio_write_chunks_body, tmp_path / "f", buffering, how)
    report.raise_for_failures()
    assert report.ops
