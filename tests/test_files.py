"""trio_uring.open_file against trio.open_file.

The heart of it is differential: hypothesis draws a mode, a buffering, an
encoding / errors / newline setting, the file's initial bytes and a sequence
of operations; the same sequence runs on two copies of the file, one opened
with ``trio.open_file`` (io.open in threads) and one with
``trio_uring.open_file`` (io_uring), and every result, every exception (type
and message) and the bytes on disk after every call must be identical.  The prefetch
must also have foreseen every read (no blocking fallback read).

Then: the object API, bad input (the same exceptions and messages as
trio.open_file), permission errors in a child process that dropped root,
fd leaks, cancellation of reads and writes while in flight (checked byte for
byte), and what falls back to threads."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import trio_uring
from trio_uring import _file
from trio_uring.testing import Region, sweep

from .filetools import (
    cancel_a_write_in_flight,
    cancel_in_flight,
    drop_cache,
    nowait_reads_work,
    outcome,
    read_bytes,
    read_lines_in_region,
    write_bytes,
    write_chunks_in_region,
)
from .helpers import fd_count, kernel, ops_submitted, run, slowness

Op = tuple[str, tuple[Any, ...]]

# io.open (and so both implementations) warns about buffering=1 in binary mode
pytestmark = pytest.mark.filterwarnings("ignore:line buffering:RuntimeWarning")


# ---- applying one operation to a file object ---------------------------------------------------


async def apply(f: Any, op: Op, cookies: list[int]) -> tuple[str, Any]:
    name, args = op
    if name == "readinto" or name == "readinto1":
        buf = bytearray(args[0])
        if not hasattr(f, name):
            return "AttributeError", name
        got = await outcome(getattr(f, name), buf)
        return got[0], (got[1], bytes(buf))
    if name == "next":
        try:
            return "ok", await f.__anext__()
        except StopAsyncIteration:
            return "stop", None
        except Exception as exc:
            return type(exc).__name__, str(exc)
    if name == "seek_cookie":
        if not cookies:
            return "skip", None
        return await outcome(f.seek, cookies[args[0] % len(cookies)])
    if name == "close":
        return await outcome(f.aclose)
    try:
        method = getattr(f, name)
    except AttributeError as exc:  # a method this io class does not have (peek on a writer ...)
        return "AttributeError", str(exc)
    result = await outcome(method, *args)
    if name == "tell" and result[0] == "ok":
        cookies.append(result[1])
    return result


# ---- strategies ------------------------------------------------------------------------------

SIZES = st.one_of(st.integers(0, 40), st.sampled_from([-1, 100, 5000, 20000]))
BINARY_CHUNK = st.one_of(
    st.binary(max_size=60),
    st.lists(st.sampled_from([b"\n", b"\r", b"\r\n", b"ab", b"\xff", b"xyz" * 7]), max_size=20).map(b"".join),
    st.integers(4000, 12000).map(lambda n: bytes(i % 251 for i in range(n))),
)
TEXT_CHUNK = st.one_of(
    st.text(alphabet=st.sampled_from(list("ab\n\r é€😀\t")), max_size=40),
    st.lists(st.sampled_from(["\n", "\r", "\r\n", "line", "é", "😀", "x" * 30]), max_size=20).map("".join),
    st.integers(3000, 9000).map(lambda n: "".join("abcé\n😀"[i % 6] for i in range(n))),
)


def binary_ops(readall: bool) -> st.SearchStrategy[Op]:
    choices: list[st.SearchStrategy[Op]] = [
        st.tuples(st.just("read"), st.tuples(st.one_of(SIZES, st.none()))),
        st.tuples(st.just("readline"), st.tuples(st.one_of(SIZES, st.none()))),
        st.tuples(st.just("readlines"), st.tuples(st.one_of(SIZES, st.none()))),
        st.tuples(st.just("readinto"), st.tuples(st.integers(0, 300))),
        st.tuples(st.just("write"), st.tuples(BINARY_CHUNK)),
        st.tuples(st.just("writelines"), st.tuples(st.lists(BINARY_CHUNK, max_size=3))),
        st.tuples(
            st.just("seek"),
            st.tuples(st.integers(-20, 300), st.sampled_from([0, 0, 1, 2])),
        ),
        st.tuples(st.just("tell"), st.just(())),
        st.tuples(st.just("truncate"), st.one_of(st.just(()), st.tuples(st.integers(-1, 400)))),
        st.tuples(st.just("flush"), st.just(())),
        st.tuples(st.just("next"), st.just(())),
    ]
    if readall:
        choices.append(st.tuples(st.just("readall"), st.just(())))
    else:
        choices += [
            st.tuples(st.just("read1"), st.tuples(SIZES)),
            st.tuples(st.just("readinto1"), st.tuples(st.integers(0, 300))),
            st.tuples(st.just("peek"), st.tuples(st.integers(0, 50))),
        ]
    return st.one_of(choices)


TEXT_OPS: st.SearchStrategy[Op] = st.one_of(
    st.tuples(st.just("read"), st.tuples(st.one_of(SIZES, st.none()))),
    st.tuples(st.just("readline"), st.tuples(st.one_of(SIZES, st.none()))),
    st.tuples(st.just("readlines"), st.tuples(SIZES)),
    st.tuples(st.just("write"), st.tuples(TEXT_CHUNK)),
    st.tuples(st.just("writelines"), st.tuples(st.lists(TEXT_CHUNK, max_size=3))),
    st.tuples(st.just("seek"), st.tuples(st.just(0), st.sampled_from([0, 1, 2]))),
    st.tuples(st.just("seek_cookie"), st.tuples(st.integers(0, 1000))),
    st.tuples(st.just("tell"), st.just(())),
    st.tuples(st.just("truncate"), st.one_of(st.just(()), st.tuples(st.integers(0, 300)))),
    st.tuples(st.just("flush"), st.just(())),
    st.tuples(st.just("next"), st.just(())),
)

MODES = ["r", "r+", "w", "w+", "a", "a+", "x", "x+"]


@st.composite
def binary_case(draw: st.DrawFn) -> tuple[str, int, bytes, list[Op]]:
    mode = draw(st.sampled_from(MODES)) + "b"
    buffering = draw(st.sampled_from([-1, 0, 1, 3, 16, 100, 4096]))
    initial = draw(st.one_of(st.binary(max_size=300), BINARY_CHUNK))
    ops = draw(st.lists(binary_ops(buffering == 0), max_size=25))
    return mode, buffering, initial, ops


@st.composite
def text_case(draw: st.DrawFn) -> tuple[str, int, dict[str, Any], bytes, list[Op]]:
    mode = draw(st.sampled_from(MODES))
    buffering = draw(st.sampled_from([-1, 1, 5, 64, 4096]))
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-16", "utf-8-sig", "utf-32-le"]))
    errors = draw(st.sampled_from([None, "strict", "replace", "ignore", "surrogateescape"]))
    newline = draw(st.sampled_from([None, "", "\n", "\r", "\r\n"]))
    text = draw(TEXT_CHUNK)
    initial = text.encode(encoding, errors="replace" if encoding == "latin-1" else "strict")
    if draw(st.booleans()):
        initial += draw(st.binary(max_size=6))  # maybe undecodable
    ops = draw(st.lists(TEXT_OPS, max_size=25))
    if encoding == "latin-1":
        ops = [(n, (a[0].encode("latin-1", "replace").decode("latin-1"),)) if n == "write" else (n, a) for n, a in ops]
        ops = [
            (n, ([s.encode("latin-1", "replace").decode("latin-1") for s in a[0]],)) if n == "writelines" else (n, a)
            for n, a in ops
        ]
    kwargs = {"encoding": encoding, "errors": errors, "newline": newline}
    return mode, buffering, kwargs, initial, ops


# ---- the differential run ------------------------------------------------------------------


async def differential(
    directory: str, mode: str, buffering: int, kwargs: dict[str, Any], initial: bytes, ops: list[Op]
) -> None:
    paths = [os.path.join(directory, "trio"), os.path.join(directory, "uring")]
    if "x" not in mode:
        for p in paths:
            write_bytes(p, initial)
    reference = await outcome(trio.open_file, paths[0], mode, buffering, **kwargs)
    ours = await outcome(trio_uring.open_file, paths[1], mode, buffering, **kwargs)
    assert reference[0] == ours[0], (reference, ours)
    if reference[0] != "ok":
        assert reference[1].replace(paths[0], "P") == ours[1].replace(paths[1], "P")
        return
    tf, uf = reference[1], ours[1]
    assert isinstance(uf, _file.UringFile)
    assert type(uf.wrapped) is type(tf.wrapped) or buffering == 0
    cookies_t: list[int] = []
    cookies_u: list[int] = []
    for i, op in enumerate([*ops, ("close", ()), ("read", (1,))]):
        expected = await apply(tf, op, cookies_t)
        got = await apply(uf, op, cookies_u)
        assert got == expected, (i, op)
        if op[0] != "close":
            assert uf.sync_reads == 0, (i, op, "a read the prefetch did not foresee")
        # what another reader of the file sees once the call returned
        assert read_bytes(paths[1]) == read_bytes(paths[0]), (i, op, "bytes in the kernel")
    assert read_bytes(paths[1]) == read_bytes(paths[0])


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(binary_case())
@example(("rb", 3, b"\x00", [("peek", (0,)), ("readinto1", (5,))]))  # readinto1 reading past its buffer
# a write of exactly the buffer's size stays in the buffer (CPython's rule), not yet in the kernel
@example(("r+b", -1, b"", [("write", (bytes(i % 251 for i in range(4096)),))]))
# writing nothing past the end does not extend the file
@example(("wb", 0, b"", [("seek", (1, 0)), ("write", (b"",)), ("seek", (0, 2))]))
def test_differential_binary(case: tuple[str, int, bytes, list[Op]]) -> None:
    mode, buffering, initial, ops = case
    with tempfile.TemporaryDirectory() as d:
        run(differential, d, mode, buffering, {}, initial, ops)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text_case())
def test_differential_text(case: tuple[str, int, dict[str, Any], bytes, list[Op]]) -> None:
    mode, buffering, kwargs, initial, ops = case
    with tempfile.TemporaryDirectory() as d:
        run(differential, d, mode, buffering, kwargs, initial, ops)


# ---- the object API ---------------------------------------------------------------------------


def public_names(obj: Any) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


@pytest.mark.parametrize(
    ("mode", "buffering"),
    [("r", -1), ("r+", 1), ("w", -1), ("a+", 64), ("rb", -1), ("r+b", -1), ("wb", 0), ("ab", -1), ("x+b", 0)],
)
def test_same_api_surface(tmp_path: Path, mode: str, buffering: int) -> None:
    async def main() -> None:
        paths = [tmp_path / "t", tmp_path / "u"]
        if "x" not in mode:
            for p in paths:
                write_bytes(p, b"line 1\nline 2\n")
        tf = await trio.open_file(paths[0], mode, buffering)
        uf = await trio_uring.open_file(paths[1], mode, buffering)
        async with tf, uf:
            assert public_names(uf) >= public_names(tf)  # (ours adds sync_reads)
            assert public_names(uf) - public_names(tf) == {"sync_reads"}
            assert type(uf.wrapped).__name__ in {type(tf.wrapped).__name__, "_Raw"}
            for attr in ("mode", "closed", "encoding", "errors", "newlines", "line_buffering", "closefd"):
                if hasattr(tf, attr):
                    assert getattr(uf, attr) == getattr(tf, attr), attr
            assert uf.name == str(paths[1])
            for method in ("readable", "writable", "seekable", "isatty"):
                assert getattr(uf, method)() == getattr(tf, method)(), method
            assert os.fstat(uf.fileno()).st_ino == os.stat(paths[1]).st_ino
            for name in ("peek", "read1", "readinto", "readall", "detach"):
                assert hasattr(uf, name) == hasattr(tf, name), name
        assert uf.closed

    run(main)


def test_iteration_context_manager_and_detach(tmp_path: Path) -> None:
    text = "".join(f"line {i} é\n" for i in range(2000))
    for name in ("t", "u"):
        (tmp_path / name).write_text(text, encoding="utf-8")

    async def main() -> None:
        async with await trio_uring.open_file(tmp_path / "u", encoding="utf-8") as f:
            assert [line async for line in f] == text.splitlines(keepends=True)
            assert f.sync_reads == 0
        assert f.closed
        results = []
        for opener, name in ((trio.open_file, "t"), (trio_uring.open_file, "u")):
            f = await opener(tmp_path / name, encoding="utf-8")
            first = await f.readline()
            buffered = await f.detach()  # the text layer lets go of its buffer
            chunk = await buffered.read(7)
            raw = await buffered.detach()
            rest = await raw.read(5)
            error = await outcome(f.read)
            await raw.aclose()
            results.append((first, chunk, rest, error, type(buffered.wrapped).__name__))
            if opener is trio_uring.open_file:
                assert isinstance(buffered, _file.UringFile)
                assert isinstance(raw, _file.UringFile)
        assert results[0][:4] == results[1][:4]
        assert results[0][4] == results[1][4] == "BufferedReader"

    run(main)


def test_wrapped_is_usable_synchronously(tmp_path: Path) -> None:
    """``wrapped`` is a real io object: using it directly does blocking I/O,
    and the async methods carry on from where it left off."""

    async def main() -> None:
        f = await trio_uring.open_file(tmp_path / "f", "w+b")
        await f.write(b"0123456789")
        f.wrapped.write(b"abc")
        f.wrapped.flush()
        assert read_bytes(tmp_path / "f") == b"0123456789abc"
        await f.seek(2)
        assert f.wrapped.read(3) == b"234"
        assert await f.read(3) == b"567"
        await f.aclose()

    run(main)


def test_concurrent_operations_on_one_file_are_serialized(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096
    write_bytes(tmp_path / "f", data)

    async def main() -> None:
        f = await trio_uring.open_file(tmp_path / "f", "rb")
        chunks: list[bytes] = []

        async def reader() -> None:
            while chunk := await f.read(4096 * 3):
                chunks.append(chunk)

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(reader)
        await f.aclose()
        assert sorted(chunks) == sorted(data[i : i + 4096 * 3] for i in range(0, len(data), 4096 * 3))

    run(main)


def test_io_goes_through_the_ring_not_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = trio.to_thread.run_sync

    async def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(fn)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(trio.to_thread, "run_sync", counting)

    async def main() -> None:
        async with await trio_uring.open_file(tmp_path / "f", "w+") as f:
            await f.write("x" * 100_000)
            assert await f.seek(0, os.SEEK_END) == 100_000  # STATX: where the end is
            await f.seek(0)
            assert len(await f.read()) == 100_000
            await f.truncate(10)
            await f.flush()
        counts = ops_submitted()
        # (the read found the data in the page cache: one preadv2(RWF_NOWAIT),
        # no READ; reads that must wait for the disk are READs)
        # (before 6.9 there is no FTRUNCATE: the truncation is done in place)
        ftruncate = ("FTRUNCATE",) if kernel().has_op("FTRUNCATE") else ()
        for opcode in ("STATX", "OPENAT", "WRITE", *ftruncate, "CLOSE"):
            assert counts.get(opcode, 0) >= 1, opcode
        assert calls == []
        # a plain trio run: trio's own path (threads), same API
        assert read_bytes(tmp_path / "f") == b"x" * 10

    run(main)

    async def plain() -> None:
        async with await trio_uring.open_file(tmp_path / "f") as f:
            assert not isinstance(f, _file.UringFile)
            assert await f.read() == "x" * 10

    trio.run(plain)
    assert calls


def test_special_files_use_threads(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    async def main() -> None:
        async with await trio_uring.open_file("/dev/null", "rb") as f:
            assert not isinstance(f, _file.UringFile)
            assert await f.read() == b""

        def writer() -> None:
            with open(fifo, "wb") as w:
                w.write(b"through the fifo")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, writer)
            # opening a FIFO waits for its writer, as open(2) does
            async with await trio_uring.open_file(fifo, "rb") as f:
                assert await f.read() == b"through the fifo"

    run(main)


# ---- bad input ------------------------------------------------------------------------------


def opener_minus_one(path: str, flags: int) -> int:
    return -1


def opener_str(path: str, flags: int) -> Any:
    return "3"


BAD_OPENS: list[tuple[str, dict[str, Any]]] = [
    ("missing", {"mode": "r"}),
    ("missing", {"mode": "r+b"}),
    ("dir", {"mode": "r"}),
    ("dir", {"mode": "rb", "buffering": 0}),
    ("dir", {"mode": "w"}),
    ("dir", {"mode": "a+b"}),
    ("file/below", {"mode": "r"}),
    ("loop", {"mode": "r"}),
    ("file", {"mode": "x"}),
    ("x" * 300, {"mode": "w"}),
    ("file", {"mode": "rw"}),
    ("file", {"mode": "rr"}),
    ("file", {"mode": "rU"}),
    ("file", {"mode": ""}),
    ("file", {"mode": "tb"}),
    ("file", {"mode": "+"}),
    ("file", {"mode": 5}),
    ("file", {"mode": "r", "buffering": 0}),
    ("file", {"mode": "r", "buffering": "big"}),
    ("file", {"mode": "rb", "encoding": "utf-8"}),
    ("file", {"mode": "rb", "errors": "strict"}),
    ("file", {"mode": "rb", "newline": "\n"}),
    ("file", {"mode": "r", "encoding": "no-such-codec"}),
    ("new1", {"mode": "w", "encoding": "no-such-codec"}),
    ("file", {"mode": "r", "encoding": 5}),
    ("file", {"mode": "r", "errors": 5}),
    ("file", {"mode": "r", "newline": "x"}),
    ("file", {"mode": "r", "closefd": False}),
    ("file", {"mode": "r", "opener": opener_minus_one}),
    ("file", {"mode": "r", "opener": opener_str}),
    ("nul\0byte", {"mode": "r"}),
]


@pytest.mark.parametrize(("name", "kwargs"), BAD_OPENS)
def test_bad_open_same_error_as_trio(tmp_path: Path, name: str, kwargs: dict[str, Any]) -> None:
    for base in ("t", "u"):
        (tmp_path / base).mkdir()
        write_bytes(tmp_path / base / "file", b"contents")
        (tmp_path / base / "dir").mkdir()
        os.symlink("loop", tmp_path / base / "loop")

    async def main() -> None:
        before = fd_count()
        expected = await outcome(trio.open_file, str(tmp_path / "t" / name), **kwargs)
        got = await outcome(trio_uring.open_file, str(tmp_path / "u" / name), **kwargs)
        assert expected[0] != "ok"
        assert (got[0], got[1].replace("/u/", "/t/")) == expected
        assert fd_count() == before
        # same side effects (a file created before the error, or not)
        assert sorted(os.listdir(tmp_path / "u")) == sorted(os.listdir(tmp_path / "t"))

    run(main)


BAD_OPS: list[tuple[str, str, tuple[Any, ...]]] = [
    ("rb", "read", (-5,)),
    ("rb", "read", ("3",)),
    ("rb", "read1", (-2,)),
    ("rb", "readline", (-3,)),
    ("rb", "readline", (2.5,)),
    ("rb", "readlines", ("x",)),
    ("rb", "readinto", (b"immutable",)),
    ("rb", "readinto", (5,)),
    ("rb", "peek", ("x",)),
    ("rb", "seek", (-1,)),
    ("rb", "seek", (0, 7)),
    ("rb", "seek", ("0",)),
    ("rb", "write", (b"x",)),
    ("rb", "write", ("text",)),
    ("rb", "truncate", (0,)),
    ("r+b", "truncate", (-1,)),
    ("r+b", "write", ("text",)),
    ("r+b", "writelines", ([b"a", 5],)),
    ("rb", "fileno", ()),
    ("wb", "read", ()),
    ("wb", "readline", ()),
    ("r", "write", ("x",)),
    ("r", "read", (-7,)),
    ("r", "readline", (-1,)),
    ("r", "seek", (5, 1)),
    ("r", "seek", (-2,)),
    ("r", "truncate", ()),
    ("r+", "write", (b"bytes",)),
    ("r+", "writelines", (["a", 5],)),
    ("w", "read", ()),
    ("w", "tell", ()),
    ("rb", "read", (None,)),
]


@pytest.mark.parametrize("buffering", [-1, 0])
@pytest.mark.parametrize("closed", [False, True])
def test_bad_operations_same_error_as_trio(tmp_path: Path, buffering: int, closed: bool) -> None:
    """Negative sizes, wrong types, wrong modes, closed files: the same
    result or exception (type and message) as trio.open_file."""

    async def main() -> None:
        for mode, method, args in BAD_OPS:
            if buffering == 0 and "b" not in mode:
                continue
            results = []
            for opener, name in ((trio.open_file, "t"), (trio_uring.open_file, "u")):
                write_bytes(tmp_path / name, b"line one\nline two\n")
                f = await opener(tmp_path / name, mode, buffering)
                if closed:
                    await f.aclose()
                if method == "fileno":
                    results.append(("ok", f.fileno() >= 0) if not closed else await outcome(trio.sleep, 0))
                elif hasattr(f, method):
                    results.append(await outcome(getattr(f, method), *args))
                else:
                    results.append(("no such method", method))
                await f.aclose()
                results.append(read_bytes(tmp_path / name))
            assert results[0:2] == results[2:4], (mode, method, args)

    run(main)


def test_bad_fd_and_types(tmp_path: Path) -> None:
    async def main() -> None:
        for file in (-1, 10_000, 3.5, None, [1], b"missing-bytes", Path("missing-path")):
            expected = await outcome(trio.open_file, file)
            got = await outcome(trio_uring.open_file, file)
            assert got == expected, file
            assert expected[0] != "ok"

    run(main)


PERMISSION_CHILD = textwrap.dedent(
    """
    import json, os, sys
    import trio, trio_uring
    root = sys.argv[1]
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)  # from here on, root's files are out of reach

    async def outcome(coro):
        try:
            result = await coro
        except Exception as exc:
            return [type(exc).__name__, str(exc).replace("/u/", "/t/")]
        if hasattr(result, "aclose"):
            await result.aclose()
        return ["ok", None]

    async def main():
        out = []
        for impl, base in ((trio, "t"), (trio_uring, "u")):
            d = os.path.join(root, base)
            rows = [
                await outcome(impl.open_file(os.path.join(d, "secret"))),
                await outcome(impl.open_file(os.path.join(d, "secret"), "rb", buffering=0)),
                await outcome(impl.open_file(os.path.join(d, "public"), "a")),
                await outcome(impl.open_file(os.path.join(d, "public"), "r+b")),
                await outcome(impl.open_file(os.path.join(d, "new"), "w")),
                await outcome(impl.open_file(os.path.join(d, "private", "x"))),
                await outcome(impl.Path(d, "public").unlink()),
                await outcome(impl.Path(d, "public").rename(os.path.join(d, "moved"))),
                await outcome(impl.Path(d, "newdir").mkdir()),
                await outcome(impl.Path(d, "private", "x").exists()),
                await outcome(impl.Path(d, "public").read_text()),
                await outcome(impl.Path(d, "secret").read_bytes()),
                await outcome(impl.Path(d, "public").write_text("x")),
            ]
            out.append(rows)
        print(json.dumps(out))

    trio_uring.run(main)
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to drop it")
def test_permission_errors_as_trio(tmp_path: Path) -> None:
    """As root, nothing is denied: a child process drops to nobody (65534)
    and opens root's files with both implementations."""
    os.chmod(tmp_path, 0o755)
    for base in ("t", "u"):
        d = tmp_path / base
        d.mkdir(mode=0o755)
        os.chmod(d, 0o755)
        write_bytes(d / "secret", b"s")
        os.chmod(d / "secret", 0o600)
        write_bytes(d / "public", b"p")
        os.chmod(d / "public", 0o644)
        (d / "private").mkdir(mode=0o700)
        os.chmod(d / "private", 0o700)
    proc = subprocess.run(
        [sys.executable, "-c", PERMISSION_CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60 * slowness(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    reference, ours = json.loads(proc.stdout)
    assert ours == reference
    assert [row[0] for row in reference].count("PermissionError") >= 9
    assert read_bytes(tmp_path / "u" / "public") == b"p"


def test_no_fd_leaks(tmp_path: Path) -> None:
    write_bytes(tmp_path / "f", b"abc\n" * 1000)

    async def main() -> None:
        gc.collect()  # (files other tests dropped)
        before = fd_count()
        for i in range(30):
            async with await trio_uring.open_file(tmp_path / "f", "rb") as f:
                await f.readline()
            f2 = await trio_uring.open_file(tmp_path / f"w{i}", "w")
            await f2.write("x")
            await f2.aclose()
            for bad in ("missing", "."):
                with pytest.raises(OSError, match=r"No such file|Is a directory"):
                    await trio_uring.open_file(tmp_path / bad)
            with pytest.raises(LookupError):
                await trio_uring.open_file(tmp_path / "f", encoding="nope")
            with trio.move_on_after(0):
                await trio_uring.open_file(tmp_path / "f")
            f3 = await trio_uring.open_file(tmp_path / "f", "rb", buffering=0)
            del f3  # dropped unclosed: closed (with a ResourceWarning) when collected
        gc.collect()
        assert fd_count() == before

    with pytest.warns(ResourceWarning):
        run(main)


# ---- cancellation ------------------------------------------------------------------------------

BIG = bytes(range(251)) * (16 * 4177)  # ~16 MiB, not a multiple of any block size


def test_cancelled_read_is_all_or_nothing(tmp_path: Path) -> None:
    """A big read whose pages are not cached waits for the disk; cancelled
    then, it raises Cancelled with the position unchanged (and reading again
    gives the right bytes), or returns all its data."""
    write_bytes(tmp_path / "f", BIG)

    async def main() -> None:
        for i, buffering in enumerate((-1, 0, 1 << 20, -1)):
            f = await trio_uring.open_file(tmp_path / "f", "rb", buffering)
            assert await f.seek(i * 1000) == i * 1000
            drop_cache(tmp_path / "f")
            cancelled, data = await cancel_in_flight(lambda f=f: f.read(len(BIG)))
            if cancelled:
                assert await f.tell() == i * 1000
                assert await f.read() == BIG[i * 1000 :]
            else:
                assert data == BIG[i * 1000 :]
            assert f.sync_reads == 0
            await f.aclose()

    run(main)


@pytest.mark.parametrize("buffering", [0, -1])
def test_cancelled_big_write_is_all_or_nothing(tmp_path: Path, buffering: int) -> None:
    """Unbuffered writes, and buffered binary writes of a buffer or more, are
    one WRITE, which ext4 runs in an io-wq worker: cancelled, either nothing
    was written (Cancelled, position unchanged) or the count is returned."""

    async def main() -> None:
        for i in range(4):
            path = tmp_path / f"f{i}"
            f = await trio_uring.open_file(path, "wb", buffering)
            await cancel_a_write_in_flight(f, path, BIG)

    run(main)


def test_cancelled_text_write_keeps_what_it_accepted(tmp_path: Path) -> None:
    """A text write hands its bytes to the buffered layer, as io does; if the
    WRITE that pushes them out is cancelled, they stay queued, write()
    reports them written, Cancelled comes at the next checkpoint, and the
    close writes them.  (The cancel lands only if the run loop idles while
    a WRITE is in flight; where the page cache takes every WRITE at submit
    the whole write can finish first -- seen once under the 5.15 profile on
    a loaded machine -- so it tries again, up to 20 times, with the same
    checks on the file each time.)"""
    text = "".join(f"{i:08d} é\n" for i in range(400_000))  # ~4.4 MB of UTF-8
    landed: list[bool] = []

    async def main(path: Path) -> None:
        f = await trio_uring.open_file(path, "w", encoding="utf-8")
        done: list[int] = []
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def go() -> None:
                    done.append(await f.write(text))
                    await trio.lowlevel.checkpoint()  # Cancelled arrives here
                    done.append(-1)

                nursery.start_soon(go)
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
        assert done in ([len(text)], [len(text), -1])
        landed.append(done == [len(text)])
        await f.aclose()
        assert read_bytes(path) == text.encode()

    for attempt in range(20):
        run(main, tmp_path / f"f{attempt}")
        if landed[-1]:
            break
    assert landed[-1], f"the cancel never landed while a WRITE was in flight ({len(landed)} tries)"


async def read_lines_body(region: Region, path: Path, text: str) -> None:
    f = await trio_uring.open_file(path, encoding="utf-8", newline="")
    await read_lines_in_region(region, f, text)
    assert f.sync_reads == 0


def test_sweep_cancels_each_read(tmp_path: Path) -> None:
    """trio_uring.testing.sweep cancels the region at each io_uring
    operation in turn, with either outcome: the lines read before and after
    always add up to the file."""
    text = "".join(("x" * (i * 40_000)) + "\r\n" for i in range(8))
    (tmp_path / "f").write_bytes(text.encode())
    report = sweep(read_lines_body, tmp_path / "f", text)
    report.raise_for_failures()
    assert len(report.ops) >= 3  # (several READs inside the region)


async def write_chunks_body(region: Region, path: Path, buffering: int) -> None:
    await write_chunks_in_region(region, await trio_uring.open_file(path, "wb", buffering), path)


@pytest.mark.parametrize("buffering", [0, -1, 100])
def test_sweep_cancels_each_write(tmp_path: Path, buffering: int) -> None:
    report = sweep(write_chunks_body, tmp_path / "f", buffering)
    report.raise_for_failures()
    assert report.ops


def test_cached_data_is_read_without_a_READ_and_under_faults_with_one(tmp_path: Path) -> None:
    """Data already in the page cache comes with one preadv2(RWF_NOWAIT);
    under trio_uring.testing every read is an io_uring READ (so the sweep
    and the fault plans reach it)."""
    data = os.urandom(100_000)
    write_bytes(tmp_path / "f", data)

    async def read_all() -> tuple[bytes, int]:
        before = ops_submitted().get("READ", 0)
        async with await trio_uring.open_file(tmp_path / "f", "rb") as f:
            got = await f.read()
        return got, ops_submitted().get("READ", 0) - before

    got, reads = run(read_all)
    # where the file system refuses RWF_NOWAIT, the read is a READ instead
    assert (got, reads > 0) == (data, not nowait_reads_work(tmp_path / "f"))
    with trio_uring.testing.faults():
        got, reads = run(read_all)
    assert got == data
    assert reads >= 1


def test_random_reads_match_trio_cached_evicted_and_at_the_end(tmp_path: Path) -> None:
    """seek + read at random offsets (the path that reads cached data with
    one preadv2 and no io_uring request): the same bytes and positions as
    trio.open_file; without READs while the file is cached, with READs once
    the page cache dropped it; short reads at the end of the file; a read in
    a cancelled scope changes nothing."""
    import random

    size = 1_000_003
    write_bytes(tmp_path / "f", os.urandom(size))
    rng = random.Random(5)
    plan = [(rng.randrange(size + 10), rng.choice([1, 100, 4096, 5000, 70_000])) for _ in range(300)]
    plan += [(size - 3, 4096), (size, 10), (size + 5, 10)]

    async def reads(opener: Any) -> list[tuple[bytes, int]]:
        out = []
        async with await opener(tmp_path / "f", "rb") as f:
            for at, n in plan:
                await f.seek(at)
                out.append((await f.read(n), await f.tell()))
        return out

    async def ours(evict: bool) -> tuple[list[tuple[bytes, int]], int]:
        if evict:
            drop_cache(tmp_path / "f")
        before = ops_submitted().get("READ", 0)
        got = await reads(trio_uring.open_file)
        async with await trio_uring.open_file(tmp_path / "f", "rb") as f:
            await f.seek(10)
            with trio.CancelScope() as cs:
                cs.cancel()
                await f.read(4096)
            assert await f.tell() == 10
        return got, ops_submitted().get("READ", 0) - before

    expected = trio.run(reads, trio.open_file)
    cached, cached_reads = run(ours, False)
    evicted, evicted_reads = run(ours, True)
    assert cached == expected
    assert evicted == expected
    # where the file system refuses RWF_NOWAIT, cached data is read with READs too
    assert (cached_reads > 0) == (not nowait_reads_work(tmp_path / "f"))
    assert evicted_reads >= 1


@pytest.mark.parametrize("mode", ["r+b", "w+b", "wb", "ab", "r+"])
def test_seek_flushes_buffered_writes_to_the_kernel_as_trio_does(tmp_path: Path, mode: str) -> None:
    """A seek on a writable buffered file flushes its buffer (io does): once
    it returns, another reader of the file sees the bytes."""
    path = tmp_path / "f"

    async def main(opener: Any) -> bytes:
        write_bytes(path, b"0123456789")
        text = "b" not in mode
        async with await opener(path, mode) as f:
            await f.write("abc" if text else b"abc")  # buffered: not in the kernel yet
            await f.seek(0)
            return read_bytes(path)  # another reader, through its own fd

    assert run(main, trio_uring.open_file) == trio.run(main, trio.open_file)
