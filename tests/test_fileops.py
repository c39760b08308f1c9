"""trio_uring.lowlevel file operations: one io_uring operation per call, on
real files, directories, pipes and sockets.

Each operation's normal path against the os function it mirrors, bad input
(the same exception, errno and message as os), fd leaks, and cancellation
while the operation is in the kernel: where the kernel can hold an operation
(a READ on an empty pipe, a WRITE to a full one, an OPENAT waiting for a
lease to break, a SPLICE from an empty pipe) the cancelled operation is
checked to have had no effect, byte for byte; where it cannot (regular-file
I/O completes inline or in an io-wq worker), either outcome is accepted and
checked to be consistent with what the call reported."""

from __future__ import annotations

import errno
import os
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trio_uring import _kernel as k
from trio_uring import lowlevel as ll

from .filetools import cancel_in_flight, exists, isdir, islink, outcome, read_bytes, write_bytes
from .helpers import fd_count, kernel, ops_submitted, run, slowness


@pytest.fixture
def tmp(tmp_path: Path) -> Iterator[Path]:
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


def outcome_of(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except BaseException as exc:
        return type(exc).__name__, (getattr(exc, "errno", None), str(exc))


async def aoutcome_of(coro: Awaitable[Any]) -> tuple[str, Any]:
    try:
        return "ok", await coro
    except BaseException as exc:
        return type(exc).__name__, (getattr(exc, "errno", None), str(exc))


# ---- normal paths -----------------------------------------------------------------------


def test_read_write_family(tmp: Path) -> None:
    async def main() -> None:
        fd = await ll.openat("f", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            assert not os.get_inheritable(fd)  # close-on-exec, like os.open
            assert await ll.pwrite(fd, b"hello world", 0) == 11
            assert await ll.pwrite(fd, memoryview(b"XY"), 20) == 2  # a hole up to 20
            assert await ll.pread(fd, 5, 6) == b"world"
            assert await ll.pread(fd, 100, 18) == b"\0\0XY"
            assert await ll.pread(fd, 10, 1000) == b""
            assert await ll.pread(fd, 0, 0) == b""
            a, b = bytearray(3), bytearray(4)
            assert await ll.preadv(fd, [a, b], 1) == 7
            assert (a, b) == (b"ell", b"o wo")
            assert await ll.pwritev(fd, [b"AB", memoryview(b"CD"), bytearray(b"E")], 0) == 5
            buf = bytearray(8)
            assert await ll.pread_into(fd, memoryview(buf)[2:], 0) == 6
            assert buf == b"\0\0ABCDE "
            assert os.pread(fd, 100, 0) == b"ABCDE world" + b"\0" * 9 + b"XY"
            assert await ll.preadv(fd, [], 0) == 0
            # the file position is neither used nor moved
            assert os.lseek(fd, 0, os.SEEK_CUR) == 0
        finally:
            os.close(fd)
        counts = ops_submitted()
        assert (counts["READ"] >= 5, counts["WRITE"] >= 2) == (True, True)
        assert (counts["READV"], counts["WRITEV"], counts["OPENAT"]) == (2, 1, 1)

    run(main)


def test_statx_is_os_stat(tmp: Path) -> None:
    Path("file").write_bytes(b"x" * 12345)
    os.mkdir("dir")
    os.symlink("file", "link")
    os.symlink("nowhere", "broken")
    os.mkfifo("fifo")

    async def main() -> None:
        for name in ("file", "dir", "link", "fifo", "/dev/null", "/", b"file"):
            assert await ll.statx(name) == os.stat(name), name
            assert await ll.statx(name, follow_symlinks=False) == os.lstat(name), name
        assert await ll.statx(Path("file")) == os.stat("file")
        assert await ll.statx("broken", follow_symlinks=False) == os.lstat("broken")
        st = await ll.statx("file")
        assert st.st_mtime == os.stat("file").st_mtime  # same float rounding
        assert st.st_atime_ns == os.stat("file").st_atime_ns
        assert (st.st_blksize, st.st_blocks) == (os.stat("file").st_blksize, os.stat("file").st_blocks)
        fd = os.open("file", os.O_RDONLY)
        try:
            assert await ll.statx(fd) == os.fstat(fd)
        finally:
            os.close(fd)
        dirfd = os.open("dir", os.O_RDONLY)
        try:
            write_bytes("dir/inner", b"abc")
            assert await ll.statx("inner", dir_fd=dirfd) == os.stat("inner", dir_fd=dirfd)
        finally:
            os.close(dirfd)
        assert ops_submitted()["STATX"] == 19

    run(main)


def test_sync_allocate_truncate(tmp: Path) -> None:
    async def main() -> None:
        fd = os.open("f", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"abc")
            await ll.fsync(fd)
            await ll.fdatasync(fd)
            await ll.fallocate(fd, 0, 0, 1 << 20)
            assert os.fstat(fd).st_size == 1 << 20
            await ll.fallocate(fd, k.FALLOC_FL_KEEP_SIZE, 0, 2 << 20)
            assert os.fstat(fd).st_size == 1 << 20
            await ll.fallocate(fd, k.FALLOC_FL_PUNCH_HOLE | k.FALLOC_FL_KEEP_SIZE, 0, 2)
            assert os.pread(fd, 3, 0) == b"\0\0c"
            await ll.ftruncate(fd, 2)
            assert os.fstat(fd).st_size == 2
            await ll.ftruncate(fd, 10)
            assert os.pread(fd, 20, 0) == b"\0" * 10
        finally:
            os.close(fd)
        counts = ops_submitted()
        # before 6.9 (no FTRUNCATE) the truncations are ftruncate(2) in a thread
        ftruncates = 2 if kernel().has_op("FTRUNCATE") else 0
        assert (counts["FSYNC"], counts["FALLOCATE"], counts.get("FTRUNCATE", 0)) == (2, 3, ftruncates)

    run(main)


def test_namespace_ops(tmp: Path) -> None:
    async def main() -> None:
        write_bytes("a", b"A")
        await ll.renameat("a", "b")
        assert not exists("a")
        assert read_bytes("b") == b"A"
        await ll.mkdirat("d", 0o750)
        assert stat.S_IMODE(os.stat("d").st_mode) == 0o750 & ~_umask()
        await ll.symlinkat("b", "s")
        assert os.readlink("s") == "b"
        await ll.linkat("b", "h")
        assert os.stat("h").st_nlink == 2
        await ll.linkat("s", "hs", follow_symlinks=False)
        assert islink("hs")
        # renameat2 flags
        write_bytes("c", b"C")
        with pytest.raises(FileExistsError):
            await ll.renameat("c", "b", flags=k.RENAME_NOREPLACE)
        await ll.renameat("c", "b", flags=k.RENAME_EXCHANGE)
        assert (read_bytes("b"), read_bytes("c")) == (b"C", b"A")
        # dir_fd relative
        dirfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = await ll.openat("x", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=dirfd)
            os.close(fd)
            await ll.renameat("x", "y", src_dir_fd=dirfd, dst_dir_fd=dirfd)
            await ll.unlinkat("y", dir_fd=dirfd)
            await ll.mkdirat("sub", dir_fd=dirfd)
            await ll.unlinkat("sub", k.AT_REMOVEDIR, dir_fd=dirfd)
        finally:
            os.close(dirfd)
        for name in ("b", "c", "s", "h", "hs"):
            await ll.unlinkat(name)
        await ll.unlinkat("d", k.AT_REMOVEDIR)
        assert os.listdir(".") == []

    run(main)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---- bad input: what os raises, exactly ------------------------------------------------------


def test_errors_match_os(tmp: Path) -> None:
    Path("file").write_text("x")
    os.mkdir("dir")
    Path("dir/inner").write_text("y")
    rdfd = os.open("file", os.O_RDONLY)
    pipe_r, pipe_w = os.pipe()
    bad_fd = 10_000
    cases: list[tuple[Callable[[], Any], Callable[[], Awaitable[Any]]]] = [
        (lambda: os.open("nope", os.O_RDONLY), lambda: ll.openat("nope", os.O_RDONLY)),
        (lambda: os.open("dir", os.O_WRONLY), lambda: ll.openat("dir", os.O_WRONLY)),
        (lambda: os.open("file", os.O_CREAT | os.O_EXCL), lambda: ll.openat("file", os.O_CREAT | os.O_EXCL)),
        (lambda: os.open("file/x", os.O_RDONLY), lambda: ll.openat("file/x", os.O_RDONLY)),
        (lambda: os.open("a\0b", os.O_RDONLY), lambda: ll.openat("a\0b", os.O_RDONLY)),
        (lambda: os.open(b"nope", os.O_RDONLY), lambda: ll.openat(b"nope", os.O_RDONLY)),
        # a NUL in a path: each os function's own ValueError (3.13 names the function and the argument)
        (lambda: os.stat("a\0b"), lambda: ll.statx("a\0b")),
        (lambda: os.stat(b"a\0b"), lambda: ll.statx(b"a\0b")),
        (lambda: os.rename("a\0b", "x"), lambda: ll.renameat("a\0b", "x")),
        (lambda: os.rename("x", "a\0b"), lambda: ll.renameat("x", "a\0b")),
        (lambda: os.unlink("a\0b"), lambda: ll.unlinkat("a\0b")),
        (lambda: os.rmdir("a\0b"), lambda: ll.unlinkat("a\0b", k.AT_REMOVEDIR)),
        (lambda: os.mkdir("a\0b"), lambda: ll.mkdirat("a\0b")),
        (lambda: os.symlink("file", "a\0b"), lambda: ll.symlinkat("file", "a\0b")),
        (lambda: os.link("a\0b", "x"), lambda: ll.linkat("a\0b", "x")),
        (lambda: os.preadv(rdfd, [b"ro"], 0), lambda: ll.preadv(rdfd, [b"ro"], 0)),
        (lambda: os.stat("nope"), lambda: ll.statx("nope")),
        (lambda: os.stat(bad_fd), lambda: ll.statx(bad_fd)),
        (lambda: os.rename("nope", "x"), lambda: ll.renameat("nope", "x")),
        (lambda: os.rename("dir", "file"), lambda: ll.renameat("dir", "file")),
        (lambda: os.unlink("nope"), lambda: ll.unlinkat("nope")),
        (lambda: os.unlink("dir"), lambda: ll.unlinkat("dir")),
        (lambda: os.rmdir("file"), lambda: ll.unlinkat("file", k.AT_REMOVEDIR)),
        (lambda: os.rmdir("dir"), lambda: ll.unlinkat("dir", k.AT_REMOVEDIR)),
        (lambda: os.mkdir("file"), lambda: ll.mkdirat("file")),
        (lambda: os.mkdir("nope/x"), lambda: ll.mkdirat("nope/x")),
        (lambda: os.symlink("file", "dir"), lambda: ll.symlinkat("file", "dir")),
        (lambda: os.link("nope", "x"), lambda: ll.linkat("nope", "x")),
        (lambda: os.link("dir", "x"), lambda: ll.linkat("dir", "x")),
        (lambda: os.pread(bad_fd, 1, 0), lambda: ll.pread(bad_fd, 1, 0)),
        (lambda: os.pread(rdfd, -1, 0), lambda: ll.pread(rdfd, -1, 0)),
        (lambda: os.pread(rdfd, 1, -1), lambda: ll.pread(rdfd, 1, -1)),
        (lambda: os.pwrite(rdfd, b"x", 0), lambda: ll.pwrite(rdfd, b"x", 0)),
        (lambda: os.pwrite(rdfd, b"x", -1), lambda: ll.pwrite(rdfd, b"x", -1)),
        (lambda: os.fsync(bad_fd), lambda: ll.fsync(bad_fd)),
        (lambda: os.ftruncate(rdfd, 0), lambda: ll.ftruncate(rdfd, 0)),
        (lambda: os.ftruncate(bad_fd, 0), lambda: ll.ftruncate(bad_fd, 0)),
        (lambda: os.splice(rdfd, rdfd, 1), lambda: ll.splice(rdfd, rdfd, 1)),
        (lambda: os.splice(rdfd, pipe_w, -1), lambda: ll.splice(rdfd, pipe_w, -1)),
    ]
    try:

        async def main() -> None:
            before = fd_count()
            for sync, asyn in cases:
                expected = outcome_of(sync)
                assert expected[0] != "ok"
                got = await aoutcome_of(asyn())
                assert got == expected
            with pytest.raises(TypeError):
                await ll.pread("not an fd", 1, 0)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                await ll.pread_into(rdfd, b"read-only", 0)
            assert fd_count() == before

        run(main)
    finally:
        for fd in (rdfd, pipe_r, pipe_w):
            os.close(fd)


def test_bad_input_checkpoints(tmp: Path) -> None:
    """A call that fails on its arguments is still a checkpoint: a cancelled
    task gets Cancelled, not the argument error."""

    async def main() -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await ll.openat("a\0b", os.O_RDONLY)
            with pytest.raises(trio.Cancelled):
                await ll.openat("new", os.O_CREAT | os.O_WRONLY)
        assert not exists("new")  # cancelled before it was submitted: nothing created

    run(main)


# ---- cancellation while in flight ----------------------------------------------------------


def test_pread_and_pwrite_on_a_pipe_are_espipe_and_touch_nothing() -> None:
    """os.pread/os.pwrite refuse a pipe (ESPIPE); io_uring's READ/WRITE would
    ignore the offset and read, write or wait.  Ours refuse it as os does,
    and the pipe keeps its bytes.  (io_uring requests on pipes cancelled in
    flight: tests/test_manager.py and examples/pipe_cancel.py.)"""
    r, w = os.pipe()
    try:
        os.write(w, b"already here")

        async def main() -> list[tuple[str, Any]]:
            out = []
            for call in (
                lambda: ll.pread(r, 100, 0),
                lambda: ll.pread_into(r, bytearray(10), 0),
                lambda: ll.preadv(r, [bytearray(10)], 0),
                lambda: ll.pwrite(w, b"x" * 10, 0),
                lambda: ll.pwritev(w, [b"x"], 0),
            ):
                out.append(await outcome(call))
            return out

        got = run(main)
        assert got == [("OSError", f"[Errno {errno.ESPIPE}] {os.strerror(errno.ESPIPE)}")] * 5, got
        assert os.read(r, 100) == b"already here"
    finally:
        os.close(r)
        os.close(w)


def test_cancel_splice_from_empty_pipe(tmp: Path) -> None:
    r, w = os.pipe()
    out = os.open("out", os.O_RDWR | os.O_CREAT, 0o600)
    try:

        async def main() -> None:
            cancelled, _ = await cancel_in_flight(lambda: ll.splice(r, out, 1000, None, 0))
            assert cancelled
            assert os.fstat(out).st_size == 0
            os.write(w, b"then data")
            assert await ll.splice(r, out, 1000, None, 0) == 9
            assert os.pread(out, 100, 0) == b"then data"

        run(main)
    finally:
        for fd in (r, w, out):
            os.close(fd)


LEASE_HOLDER = textwrap.dedent(
    """
    import fcntl, os, signal, sys
    signal.signal(signal.SIGIO, signal.SIG_IGN)  # the lease-break notice
    fd = os.open(sys.argv[1], os.O_RDONLY)
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:  # not every file system takes leases
        print("refused", exc, flush=True)
        sys.exit()
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def test_cancel_openat_waiting_for_a_lease(tmp: Path) -> None:
    """OPENAT for writing waits, in an io-wq worker, until another process's
    read lease is broken (fcntl(2), F_SETLEASE): a deterministic open in
    flight.  Cancelled: no fd, nothing truncated."""
    Path("leased").write_bytes(b"precious")
    holder = subprocess.Popen(
        [sys.executable, "-c", LEASE_HOLDER, "leased"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        said = holder.stdout.readline()
        if said.startswith("refused"):
            # (leases are a file-system feature: fcntl(2), F_SETLEASE)
            pytest.skip(f"the file system of {os.getcwd()} refuses F_SETLEASE: {said.strip()}")
        assert said == "ready\n"

        async def main() -> bool:
            before = fd_count()
            cancelled, fd = await cancel_in_flight(lambda: ll.openat("leased", os.O_WRONLY | os.O_TRUNC))
            if cancelled:
                assert fd_count() == before
                assert read_bytes("leased") == b"precious"
            else:
                # The kernel finished the open before the cancel took (seen on
                # Debian's 6.1 under emulation: the fd came back after the
                # lease-break wait).  The contract then: the caller has the
                # fd, the only new one, and the open's effect is there.
                assert fd_count() == before + 1
                assert os.fstat(fd).st_size == 0
                os.close(fd)
            return cancelled

        cancelled = run(main)
        # (which outcome occurs depends on the kernel; each is checked above)
        print(f"\nOPENAT waiting for a lease, cancelled: {cancelled}")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10 * slowness())


def test_cancelled_regular_file_write_is_consistent(tmp: Path) -> None:
    """A big WRITE to a regular file goes to an io-wq worker; a cancel may
    stop it before it starts (nothing written) or come too late (all of it
    written, and the count returned).  Either way the file says so."""
    data = bytes(range(256)) * (64 * 1024)  # 16 MiB

    async def main() -> None:
        seen = set()
        for i in range(6):
            fd = os.open(f"f{i}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.write(fd, b"before")
                cancelled, n = await cancel_in_flight(lambda fd=fd: ll.pwrite(fd, data, 6))  # type: ignore[misc]
                on_disk = os.pread(fd, len(data) + 100, 0)
                if cancelled:
                    assert on_disk == b"before"
                else:
                    assert on_disk == b"before" + data[:n]
                seen.add(cancelled)
            finally:
                os.close(fd)
        # (which outcomes occur depends on the machine; each is checked above)

    run(main)


def test_cancelled_namespace_ops_are_all_or_nothing(tmp: Path) -> None:
    async def main() -> None:
        for i in range(10):
            cancelled, _ = await cancel_in_flight(lambda i=i: ll.mkdirat(f"d{i}"))  # type: ignore[misc]
            assert isdir(f"d{i}") != cancelled
            os.makedirs(f"d{i}", exist_ok=True)
            cancelled, _ = await cancel_in_flight(lambda i=i: ll.renameat(f"d{i}", f"e{i}"))  # type: ignore[misc]
            assert (isdir(f"d{i}"), isdir(f"e{i}")) == (cancelled, not cancelled)
            write_bytes(f"f{i}", b"x")
            cancelled, fd = await cancel_in_flight(lambda i=i: ll.openat(f"f{i}", os.O_RDONLY))  # type: ignore[misc]
            assert cancelled == (fd is None)
            if fd is not None:
                assert os.fstat(fd).st_ino == os.stat(f"f{i}").st_ino
                os.close(fd)
            cancelled, _ = await cancel_in_flight(lambda i=i: ll.unlinkat(f"f{i}"))  # type: ignore[misc]
            assert exists(f"f{i}") == cancelled

    before = fd_count()
    run(main)
    assert fd_count() == before


def test_splice_file_to_socket(tmp: Path) -> None:
    payload = os.urandom(300_000)
    Path("src").write_bytes(payload)

    async def main() -> None:
        a, b = socket.socketpair()
        r, w = os.pipe()
        fd = os.open("src", os.O_RDONLY)
        try:
            got = bytearray()
            offset = 0
            while offset < len(payload):
                n = await ll.splice(fd, w, 65536, offset, None, k.SPLICE_F_MOVE)
                assert n > 0
                offset += n
                left = n
                while left:
                    left -= await ll.splice(r, a, left, None, None, k.SPLICE_F_MORE)
                while len(got) < offset:
                    got += b.recv(1 << 20)
            assert await ll.splice(fd, w, 65536, offset) == 0  # end of file
            assert bytes(got) == payload
            assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # explicit offsets leave the position
        finally:
            for x in (fd, r, w):
                os.close(x)
            a.close()
            b.close()
        assert ops_submitted()["SPLICE"] >= 2 * (len(payload) // 65536)

    run(main)


def test_no_fd_leaks(tmp: Path) -> None:
    async def main() -> None:
        before = fd_count()
        for _ in range(20):
            fd = await ll.openat("f", os.O_RDWR | os.O_CREAT, 0o600)
            await ll.pwrite(fd, b"x", 0)
            await ll.close(fd)
            with pytest.raises(FileNotFoundError):
                await ll.openat("missing", os.O_RDONLY)
            with pytest.raises(OSError, match="Bad file descriptor"):
                await ll.pread(fd, 1, 0)
        assert fd_count() == before

    run(main)


def test_outside_a_uring_run() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match=r"trio_uring\.run"):
            await ll.pread(0, 1, 0)

    trio.run(main)


def test_offsets_out_of_range_fail_as_os_pread_does(tmp: Path) -> None:
    fd = os.open("f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"data")
        # (2**63 - 1 + 10 overflows loff_t: the kernel says EINVAL)
        cases = [
            (2**62, "ok"),
            (2**63 - 1, "OSError"),
            (2**63, "OverflowError"),
            (2**64, "OverflowError"),
            (-1, "OSError"),
        ]

        def reference(offset: int) -> tuple[str, Any]:
            try:
                return "ok", os.pread(fd, 10, offset)
            except Exception as exc:
                return type(exc).__name__, str(exc)

        async def main() -> list[tuple[str, Any]]:
            return [await outcome(ll.pread, fd, 10, offset) for offset, _ in cases]

        got = run(main)
        assert got == [reference(offset) for offset, _ in cases]
        assert [kind for kind, _ in got] == [kind for _, kind in cases]
    finally:
        os.close(fd)
