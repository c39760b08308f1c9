"""trio_uring.Path against trio.Path: the same results and the same errors
(type, errno, message, file names) on two identical trees, the io_uring
opcodes it uses instead of threads, cancellation, and trio's thread path for
what has no opcode."""

from __future__ import annotations

import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_uring

from .filetools import cancel_in_flight, exists, isdir, read_bytes, write_bytes
from .helpers import fd_count, ops_submitted, run


def make_tree(root: Path) -> None:
    root.mkdir()
    write_bytes(root / "file", b"some bytes\n")
    write_bytes(root / "text", "héllo\r\nwörld\n".encode())
    (root / "dir").mkdir()
    write_bytes(root / "dir" / "inner", b"inner")
    (root / "empty").mkdir()
    os.symlink("file", root / "link")
    os.symlink("nowhere", root / "broken")
    os.symlink("loop", root / "loop")
    os.mkfifo(root / "fifo")


# Each step: (method name, path relative to the tree, args); args that are
# strings starting with "@" are paths relative to the tree too.
STEPS: list[tuple[str, str, tuple[Any, ...]]] = [
    *[
        (method, name, ())
        for name in ("file", "dir", "link", "broken", "loop", "fifo", "missing", "file/below", "/dev/null", "nul\0")
        for method in (
            "stat",
            "lstat",
            "exists",
            "is_dir",
            "is_file",
            "is_symlink",
            "is_fifo",
            "is_socket",
            "is_char_device",
            "is_block_device",
        )
    ],
    ("samefile", "file", ("@link",)),
    ("samefile", "file", ("@dir",)),
    ("samefile", "missing", ("@file",)),
    ("read_bytes", "file", ()),
    ("read_bytes", "dir", ()),
    ("read_bytes", "missing", ()),
    ("read_text", "text", ()),
    ("read_text", "text", ("latin-1",)),
    ("read_text", "text", ("ascii", "replace")),
    ("write_bytes", "new-bytes", (b"\0\1\2",)),
    ("write_bytes", "dir", (b"x",)),
    ("write_bytes", "new-str", ("not bytes",)),
    ("write_text", "new-text", ("été\n", "utf-8", None, "\r\n")),
    ("write_text", "new-text2", (b"not str",)),
    ("read_bytes", "new-text", ()),
    ("unlink", "new-bytes", ()),
    ("unlink", "missing", ()),
    ("unlink", "missing", (True,)),
    ("unlink", "dir", ()),
    ("rmdir", "empty", ()),
    ("rmdir", "dir", ()),
    ("rmdir", "file", ()),
    ("mkdir", "made", ()),
    ("mkdir", "made", ()),
    ("mkdir", "made", (0o777, False, True)),
    ("mkdir", "file", (0o777, False, True)),
    ("mkdir", "a/b/c", ()),
    ("mkdir", "a/b/c", (0o750, True)),
    ("mkdir", "a/b/c", (0o750, True, True)),
    ("is_dir", "a/b/c", ()),
    ("rename", "new-text", ("@renamed",)),
    ("rename", "missing", ("@x",)),
    ("rename", "dir", ("@file",)),
    ("replace", "renamed", ("@file",)),
    ("read_bytes", "file", ()),
    ("symlink_to", "sym", ("file",)),
    ("symlink_to", "sym", ("file",)),
    ("hardlink_to", "hard", ("@file",)),
    ("hardlink_to", "hard2", ("@missing",)),
    ("stat", "hard", ()),
    ("touch", "touched", ()),
    ("touch", "touched", ()),
    ("touch", "touched", (0o600, False)),
    ("touch", "missing/touched", ()),
    ("exists", "touched", ()),
    # no io_uring opcode: trio's thread path, through the same class
    ("chmod", "touched", (0o640,)),
    ("readlink", "link", ()),
    ("iterdir", "a", ()),
    ("resolve", "link", ()),
]


def normalize(value: Any, root: Path) -> Any:
    text = str(value).replace(str(root), "ROOT")
    if isinstance(value, os.stat_result):
        # inode numbers, times and link counts differ between the trees
        return (stat.S_IFMT(value.st_mode), value.st_size)
    if isinstance(value, (trio.Path, Path)):
        return text
    if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
        return sorted(normalize(v, root) for v in value)
    return value if not isinstance(value, str) else text


async def outcome(fn: Callable[[], Awaitable[Any]], root: Path) -> tuple[str, Any]:
    try:
        return "ok", normalize(await fn(), root)
    except Exception as exc:
        return type(exc).__name__, normalize(str(exc), root)


def test_differential(tmp_path: Path) -> None:
    make_tree(tmp_path / "t")
    make_tree(tmp_path / "u")

    async def main() -> None:
        before = fd_count()
        for i, (method, name, args) in enumerate(STEPS):
            results = []
            for cls, tree in ((trio.Path, tmp_path / "t"), (trio_uring.Path, tmp_path / "u")):
                path = cls(tree / name) if not name.startswith("/") else cls(name)
                real_args = tuple(tree / a[1:] if isinstance(a, str) and a.startswith("@") else a for a in args)
                bound = getattr(path, method)
                results.append(await outcome(lambda b=bound, a=real_args: b(*a), tree))
            assert results[0] == results[1], (i, method, name, args)
        assert fd_count() == before
        counts = ops_submitted()
        # (READ is not among them: the reads find their data in the page
        # cache and take it with preadv2(RWF_NOWAIT))
        for opcode in ("STATX", "OPENAT", "WRITE", "CLOSE", "UNLINKAT", "RENAMEAT", "MKDIRAT", "SYMLINKAT"):
            assert counts.get(opcode, 0) > 0, opcode
        assert counts.get("LINKAT", 0) > 0

    run(main)
    for root, dirs, files in os.walk(tmp_path / "t"):
        mirror = tmp_path / "u" / os.path.relpath(root, tmp_path / "t")
        assert sorted(os.listdir(mirror)) == sorted(dirs + files), root
        for f in files:
            if not os.path.islink(os.path.join(root, f)) and stat.S_ISREG(os.lstat(os.path.join(root, f)).st_mode):
                assert read_bytes(mirror / f) == read_bytes(os.path.join(root, f))


def test_is_a_trio_path(tmp_path: Path) -> None:
    p = trio_uring.Path(tmp_path) / "x"
    assert isinstance(p, trio.Path)
    assert type(p) is trio_uring.Path
    assert type(p.parent) is trio_uring.Path
    assert repr(p) == f"trio_uring.Path({str(tmp_path / 'x')!r})"
    assert os.fspath(p) == str(tmp_path / "x")

    async def main() -> None:
        assert type(await trio_uring.Path.cwd()) is trio_uring.Path
        await p.write_text("hi")
        assert type(await p.rename(tmp_path / "y")) is trio_uring.Path
        assert type(await trio_uring.Path(tmp_path).absolute()) is trio_uring.Path

    run(main)


def test_outside_a_uring_run(tmp_path: Path) -> None:
    """Under plain trio.run, the same class works through trio's threads."""
    p = trio_uring.Path(tmp_path) / "f"

    async def main() -> None:
        await p.write_bytes(b"abc")
        assert await p.read_bytes() == b"abc"
        assert await p.exists()
        await p.rename(tmp_path / "g")
        await trio_uring.Path(tmp_path, "d", "e").mkdir(parents=True)
        await trio_uring.Path(tmp_path, "g").unlink()
        assert not await p.exists()

    trio.run(main)
    assert isdir(tmp_path / "d" / "e")


def test_cancelled_path_ops_are_all_or_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        for i in range(10):
            d = trio_uring.Path(tmp_path, f"d{i}")
            cancelled, _ = await cancel_in_flight(d.mkdir)
            assert isdir(d) != cancelled
            if cancelled:
                await d.mkdir()
            target = trio_uring.Path(tmp_path, f"e{i}")
            cancelled, new = await cancel_in_flight(lambda d=d, t=target: d.rename(t))
            assert (isdir(d), isdir(target)) == (cancelled, not cancelled)
            assert cancelled or new == target
            f = trio_uring.Path(tmp_path, f"f{i}")
            write_bytes(f, b"x")
            cancelled, _ = await cancel_in_flight(f.unlink)
            assert exists(f) == cancelled

    run(main)


def test_mkdir_parents_race_and_modes(tmp_path: Path) -> None:
    async def main() -> None:
        deep = trio_uring.Path(tmp_path, "p", "q", "r")

        async def make() -> None:
            await deep.mkdir(parents=True, exist_ok=True)

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(make)
        assert isdir(deep)
        with pytest.raises(FileExistsError) as info:
            await deep.mkdir(parents=True)
        assert info.value.filename == str(deep)

    run(main)
