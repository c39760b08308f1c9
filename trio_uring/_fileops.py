"""One async function per io_uring operation on files and paths.

These are the file counterparts of :mod:`trio_uring.lowlevel`'s socket
functions (which re-exports them): each writes ONE SQE and parks the task on
it through :meth:`UringIOManager.perform`, so cancellation follows the table
in ``_manager.py``:

* if the kernel cancelled the operation (``-ECANCELED``, or an interrupted
  wait), :exc:`trio.Cancelled` is raised and the operation had no effect: a
  cancelled :func:`pread` read nothing, a cancelled :func:`pwrite` wrote
  nothing, a cancelled :func:`openat` opened (and created) nothing;
* if it completed anyway, its result is returned -- the bytes read, the count
  written, the new fd (the caller owns it: it is never leaked) -- and
  ``Cancelled`` comes at the next checkpoint.

Regular-file I/O is the case where the kernel surprises: a READ of cached
pages completes inline, at submission, so there is nothing left to cancel;
a buffered WRITE that cannot be done without blocking is punted to an io-wq
worker, where ASYNC_CANCEL answers -EALREADY once the worker has started and
the write then runs to the end.  Either way the CQE tells what happened, and
that is what is reported.  SPLICE always runs in io-wq (io_uring/splice.c).

One difference from the os functions: on a pipe or a socket, io_uring's
READ / WRITE ignore the offset and use the stream, where pread(2) and
pwrite(2) fail with ESPIPE.

Arguments, results and errors follow the :mod:`os` function of the same
purpose (``os.pread``, ``os.open``, ``os.stat``, ``os.rename``, ``os.splice``
...): ``OSError`` with ``errno``, ``strerror`` and the file name(s) the os
function would put there; ``ValueError("embedded null byte")`` for a path
with a NUL.  Every function is a checkpoint, also when it fails on a bad
argument.  New fds are close-on-exec, as ``os.open``'s are (PEP 446).

Paths, ``struct statx`` buffers, iovec arrays and the caller's buffers live in
:class:`_kernel.Memory` / :class:`_kernel.Buffer` objects handed to
``perform`` as ``keep``, so they outlive a cancelled task (uring-notes §5).
"""

from __future__ import annotations

import errno
import operator
import os
from collections.abc import Iterable
from typing import Any, Final

import trio

from . import _kernel as k
from ._entry import BAD_INPUT as _BAD_INPUT
from ._entry import FileDescriptorLike, run_manager
from ._entry import fileno as _fileno
from ._entry import manager as _manager
from ._entry import raise_at_checkpoint as _raise_at_checkpoint
from ._manager import UringIOManager
from ._sockaddr import IOVEC

__all__ = [
    "fallocate",
    "fdatasync",
    "fsync",
    "ftruncate",
    "linkat",
    "mkdirat",
    "openat",
    "pread",
    "pread_into",
    "preadv",
    "pwrite",
    "pwritev",
    "renameat",
    "splice",
    "statx",
    "symlinkat",
    "unlinkat",
]

#: A path as the os module takes it.
StrOrBytesPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]

_MAX: Final = k.MAX_RW_COUNT
_EMPTY_PATH: Final = k.Memory(1)  # "" for AT_EMPTY_PATH; never written


# ---- helpers ------------------------------------------------------------------------


def oserror(err: int | None, filename: object = None, filename2: object = None) -> OSError:
    """``OSError`` as the os module raises it: the subclass for ``err``, its
    ``strerror``, and the file name(s).  (``err`` is an ``OSError.errno``,
    which perform() always sets.)"""
    err = errno.EIO if err is None else err
    if filename2 is not None:
        return OSError(err, os.strerror(err), filename, None, filename2)
    if filename is not None:
        return OSError(err, os.strerror(err), filename)
    return OSError(err, os.strerror(err))


def cpath(path: StrOrBytesPath) -> tuple[k.Memory, str | bytes]:
    """``path`` as a NUL-terminated C string the kernel can read, and the
    name the os module would report in errors."""
    name = os.fspath(path)
    raw = os.fsencode(name)
    if b"\0" in raw:
        raise ValueError("embedded null byte")
    mem = k.Memory(len(raw) + 1)
    mem.view[: len(raw)] = raw
    return mem, name


def _dirfd(dir_fd: int | None) -> int:
    return k.AT_FDCWD if dir_fd is None else operator.index(dir_fd)


def _offset(offset: int) -> int:
    off = operator.index(offset)
    if off < 0:
        # io_uring would read -1 as "the file position"; pread(2) says EINVAL.
        raise oserror(errno.EINVAL)
    return off


def _positional(fileno: int, offset: int, writing: bool) -> None:
    """Refuse what pread(2) / pwrite(2) refuse, with their errors, before
    submitting: a zero-length call checks the fd, its mode and the offset's
    range.  io_uring's READ/WRITE would instead ignore the offset of a
    stream -- a pipe, a socket, a tty (man 2 pread: ESPIPE) -- and read,
    write or wait there.  Zero bytes have no other effect (man 2 write)."""
    if writing:
        os.pwrite(fileno, b"", offset)
    else:
        os.pread(fileno, 0, offset)


def _count(n: int) -> int:
    n = operator.index(n)
    if n < 0:
        raise oserror(errno.EINVAL)  # as os.pread(fd, -1, 0)
    return n


def stat_result(mem: k.Memory) -> os.stat_result:
    """The ``struct statx`` in ``mem`` as the ``os.stat_result`` that
    ``os.stat`` returns for the same file (same fields, same float rounding)."""
    (
        _mask,
        blksize,
        _attrs,
        nlink,
        uid,
        gid,
        mode,
        ino,
        size,
        blocks,
        _attrs_mask,
        a_sec,
        a_nsec,
        _b_sec,
        _b_nsec,
        c_sec,
        c_nsec,
        m_sec,
        m_nsec,
        rdev_major,
        rdev_minor,
        dev_major,
        dev_minor,
    ) = k.STATX.unpack_from(mem.view, 0)
    return os.stat_result(
        (mode, ino, os.makedev(dev_major, dev_minor), nlink, uid, gid, size, a_sec, m_sec, c_sec),
        {
            # CPython's fill_time(): sec + nsec * 1e-9, and sec * 10**9 + nsec.
            "st_atime": a_sec + a_nsec * 1e-9,
            "st_mtime": m_sec + m_nsec * 1e-9,
            "st_ctime": c_sec + c_nsec * 1e-9,
            "st_atime_ns": a_sec * 1_000_000_000 + a_nsec,
            "st_mtime_ns": m_sec * 1_000_000_000 + m_nsec,
            "st_ctime_ns": c_sec * 1_000_000_000 + c_nsec,
            "st_blksize": blksize,
            "st_blocks": blocks,
            "st_rdev": os.makedev(rdev_major, rdev_minor),
        },
    )


# ---- the operations, on checked arguments (also used by _file, _path, _sendfile) ----


async def read_into(m: UringIOManager, fd: int, address: int, nbytes: int, offset: int, keep: object) -> int:
    """READ of up to ``nbytes`` at ``offset`` into memory at ``address``."""
    op = await m.perform(fd, m.ring.prep_read, address, min(nbytes, _MAX), offset, keep=keep)
    return op.res


async def write_from(m: UringIOManager, fd: int, address: int, nbytes: int, offset: int, keep: object) -> int:
    """WRITE of up to ``nbytes`` from ``address`` at ``offset`` (-1: at the
    file position, which is how O_APPEND files are written)."""
    op = await m.perform(fd, m.ring.prep_write, address, min(nbytes, _MAX), offset, keep=keep)
    return op.res


async def statx_at(m: UringIOManager, dirfd: int, path: k.Memory, flags: int) -> os.stat_result:
    buf = k.Memory(k.STATX_SIZE)
    await m.perform(dirfd, m.ring.prep_statx, path.address, flags, k.STATX_BASIC_STATS, buf.address, keep=(path, buf))
    return stat_result(buf)


async def fstat(m: UringIOManager, fd: int) -> os.stat_result:
    """STATX of an open fd (AT_EMPTY_PATH), as ``os.fstat``."""
    return await statx_at(m, fd, _EMPTY_PATH, k.AT_EMPTY_PATH)


async def open_at(m: UringIOManager, dirfd: int, path: k.Memory, flags: int, mode: int) -> int:
    """OPENAT; the new fd belongs to the caller.  (perform() only tracks fds
    >= 0 for notify_closing, so AT_FDCWD is simply passed through.)"""
    op = await m.perform(dirfd, m.ring.prep_openat, path.address, flags, mode, keep=path)
    return op.res


async def close_fd(m: UringIOManager, fd: int) -> None:
    """CLOSE, after waking every task waiting on ``fd`` (notify_closing)."""
    trio.lowlevel.notify_closing(fd)
    await m.perform(fd, m.ring.prep_close)


async def truncate_fd(m: UringIOManager, fd: int, length: int) -> None:
    await m.perform(fd, m.ring.prep_ftruncate, length)


async def splice_fds(m: UringIOManager, fd_in: int, off_in: int, fd_out: int, off_out: int, n: int, flags: int) -> int:
    op = await m.perform(fd_out, m.ring.prep_splice, off_out, fd_in, off_in, min(n, _MAX), flags)
    return op.res


# ---- reading and writing ------------------------------------------------------------


async def pread(fd: FileDescriptorLike, n: int, offset: int) -> bytes:
    """``os.pread(fd, n, offset)`` as one IORING_OP_READ: at most ``n`` bytes
    from ``offset`` (fewer at the end of the file); the file position is not
    used or changed.  What ``os.pread`` refuses (a pipe or socket: ESPIPE,
    an offset out of range) is refused first, with its error; this and the
    other positional functions make a zero-length ``pread(2)``/``pwrite(2)``
    for that."""
    m = _manager("READ")
    try:
        fileno = _fileno(fd)
        n = _count(n)
        off = _offset(offset)
        _positional(fileno, off, writing=False)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    buf = bytearray(n)
    pin = k.Buffer(buf, writable=True)
    got = await read_into(m, fileno, pin.address, n, off, pin)
    return bytes(buf) if got == n else bytes(memoryview(buf)[:got])


async def pread_into(fd: FileDescriptorLike, buffer: Any, offset: int) -> int:
    """Read into ``buffer`` (a writable bytes-like object, pinned until the
    kernel is done with it) from ``offset``: ``os.preadv(fd, [buffer],
    offset)`` as one IORING_OP_READ.  Returns the number of bytes read."""
    m = _manager("READ")
    try:
        fileno = _fileno(fd)
        pin = k.Buffer(buffer, writable=True)
        off = _offset(offset)
        _positional(fileno, off, writing=False)
    except BufferError:
        await _raise_at_checkpoint(TypeError("pread_into() argument must be a writable, C-contiguous buffer"))
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    return await read_into(m, fileno, pin.address, pin.length, off, pin)


async def pwrite(fd: FileDescriptorLike, data: Any, offset: int) -> int:
    """``os.pwrite(fd, data, offset)`` as one IORING_OP_WRITE; returns the
    number of bytes written.  On an ``O_APPEND`` fd Linux appends whatever
    the offset (pwrite(2), BUGS)."""
    m = _manager("WRITE")
    try:
        fileno = _fileno(fd)
        pin = k.Buffer(data, writable=False)
        off = _offset(offset)
        _positional(fileno, off, writing=True)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    return await write_from(m, fileno, pin.address, pin.length, off, pin)


def _iovecs(pins: list[k.Buffer]) -> k.Memory:
    mem = k.Memory(max(1, len(pins)) * IOVEC.size)
    for i, pin in enumerate(pins):
        IOVEC.pack_into(mem.view, i * IOVEC.size, pin.address, pin.length)
    return mem


async def preadv(fd: FileDescriptorLike, buffers: Iterable[Any], offset: int, flags: int = 0) -> int:
    """``os.preadv(fd, buffers, offset, flags)`` as one IORING_OP_READV:
    scatter into the writable ``buffers`` from ``offset``; returns the total
    number of bytes read.  ``flags`` are RWF_* (``os.RWF_NOWAIT`` ...)."""
    m = _manager("READV")
    try:
        fileno = _fileno(fd)
        pins = [k.Buffer(b, writable=True) for b in buffers]
        off = _offset(offset)
        flags = operator.index(flags)
        _positional(fileno, off, writing=False)
    except BufferError:
        await _raise_at_checkpoint(TypeError("preadv() arg 2 must be a sequence of writable bytes-like objects"))
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    iov = _iovecs(pins)
    op = await m.perform(fileno, m.ring.prep_readv, iov.address, len(pins), off, flags, keep=(iov, pins))
    return op.res


async def pwritev(fd: FileDescriptorLike, buffers: Iterable[Any], offset: int, flags: int = 0) -> int:
    """``os.pwritev(fd, buffers, offset, flags)`` as one IORING_OP_WRITEV:
    gather ``buffers`` and write them at ``offset``; returns the number of
    bytes written."""
    m = _manager("WRITEV")
    try:
        fileno = _fileno(fd)
        pins = [k.Buffer(b, writable=False) for b in buffers]
        off = _offset(offset)
        flags = operator.index(flags)
        _positional(fileno, off, writing=True)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    iov = _iovecs(pins)
    op = await m.perform(fileno, m.ring.prep_writev, iov.address, len(pins), off, flags, keep=(iov, pins))
    return op.res


# ---- file-level operations ----------------------------------------------------------


async def openat(path: StrOrBytesPath, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
    """``os.open(path, flags, mode, dir_fd=dir_fd)`` as one IORING_OP_OPENAT.
    The new fd is close-on-exec (as with ``os.open``) and belongs to the
    caller, also when the task was cancelled after the open completed."""
    m = _manager("OPENAT")
    try:
        mem, name = cpath(path)
        dirfd = _dirfd(dir_fd)
        flags = operator.index(flags) | os.O_CLOEXEC
        mode = operator.index(mode)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    try:
        return await open_at(m, dirfd, mem, flags, mode)
    except OSError as exc:
        raise oserror(exc.errno, name) from None


async def statx(
    path: StrOrBytesPath | int, *, dir_fd: int | None = None, follow_symlinks: bool = True
) -> os.stat_result:
    """``os.stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)`` as
    one IORING_OP_STATX; ``path`` may be an open fd, as with ``os.stat``."""
    m = _manager("STATX")
    name: str | bytes | int
    try:
        if isinstance(path, int):
            dirfd, mem, name, flags = path, _EMPTY_PATH, path, k.AT_EMPTY_PATH
        else:
            mem, name = cpath(path)
            dirfd = _dirfd(dir_fd)
            flags = 0 if follow_symlinks else k.AT_SYMLINK_NOFOLLOW
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    try:
        return await statx_at(m, dirfd, mem, flags)
    except OSError as exc:
        raise oserror(exc.errno, name) from None


async def _fsync(fd: FileDescriptorLike, flags: int) -> None:
    m = _manager("FSYNC")
    try:
        fileno = _fileno(fd)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    await m.perform(fileno, m.ring.prep_fsync, flags)


async def fsync(fd: FileDescriptorLike) -> None:
    """``os.fsync(fd)`` as one IORING_OP_FSYNC."""
    await _fsync(fd, 0)


async def fdatasync(fd: FileDescriptorLike) -> None:
    """``os.fdatasync(fd)``: IORING_OP_FSYNC with IORING_FSYNC_DATASYNC."""
    await _fsync(fd, k.IORING_FSYNC_DATASYNC)


async def fallocate(fd: FileDescriptorLike, mode: int, offset: int, length: int) -> None:
    """fallocate(2) as one IORING_OP_FALLOCATE: ``mode`` 0 allocates (and
    extends the file), or ``FALLOC_FL_KEEP_SIZE``, ``FALLOC_FL_PUNCH_HOLE |
    FALLOC_FL_KEEP_SIZE``, ``FALLOC_FL_ZERO_RANGE`` ... (``trio_uring._kernel``)."""
    m = _manager("FALLOCATE")
    try:
        fileno = _fileno(fd)
        mode = operator.index(mode)
        off = _offset(offset)
        length = operator.index(length)
        if length <= 0:
            raise oserror(errno.EINVAL)  # fallocate(2): len <= 0 is EINVAL
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    await m.perform(fileno, m.ring.prep_fallocate, mode, off, length)


async def ftruncate(fd: FileDescriptorLike, length: int) -> None:
    """``os.ftruncate(fd, length)`` as one IORING_OP_FTRUNCATE (Linux 6.9).
    Where the kernel lacks that opcode, ftruncate(2) itself runs in a worker
    thread (``trio.to_thread.run_sync``): the same result and errors as
    ``os.ftruncate``, and the same cancellation rule (once started, it
    finishes, and ``Cancelled`` comes at the next checkpoint)."""
    m = run_manager()
    try:
        fileno = _fileno(fd)
        length = _offset(length)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    if m.kernel.has_op("FTRUNCATE"):
        await truncate_fd(m, fileno, length)
    else:
        await trio.to_thread.run_sync(os.ftruncate, fileno, length)


# ---- the namespace ------------------------------------------------------------------


async def renameat(
    src: StrOrBytesPath,
    dst: StrOrBytesPath,
    *,
    src_dir_fd: int | None = None,
    dst_dir_fd: int | None = None,
    flags: int = 0,
) -> None:
    """``os.rename(src, dst, ...)`` as one IORING_OP_RENAMEAT; ``flags`` are
    renameat2(2)'s (``RENAME_NOREPLACE``, ``RENAME_EXCHANGE``)."""
    m = _manager("RENAMEAT")
    try:
        old, old_name = cpath(src)
        new, new_name = cpath(dst)
        olddir, newdir = _dirfd(src_dir_fd), _dirfd(dst_dir_fd)
        flags = operator.index(flags)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    try:
        await m.perform(olddir, m.ring.prep_renameat, old.address, newdir, new.address, flags, keep=(old, new))
    except OSError as exc:
        raise oserror(exc.errno, old_name, new_name) from None


async def unlinkat(path: StrOrBytesPath, flags: int = 0, *, dir_fd: int | None = None) -> None:
    """``os.unlink(path)`` as one IORING_OP_UNLINKAT, or ``os.rmdir(path)``
    with ``flags=AT_REMOVEDIR``."""
    m = _manager("UNLINKAT")
    try:
        mem, name = cpath(path)
        dirfd = _dirfd(dir_fd)
        flags = operator.index(flags)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    try:
        await m.perform(dirfd, m.ring.prep_unlinkat, mem.address, flags, keep=mem)
    except OSError as exc:
        raise oserror(exc.errno, name) from None


async def mkdirat(path: StrOrBytesPath, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
    """``os.mkdir(path, mode)`` as one IORING_OP_MKDIRAT (the umask applies)."""
    m = _manager("MKDIRAT")
    try:
        mem, name = cpath(path)
        dirfd = _dirfd(dir_fd)
        mode = operator.index(mode)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    try:
        await m.perform(dirfd, m.ring.prep_mkdirat, mem.address, mode, keep=mem)
    except OSError as exc:
        raise oserror(exc.errno, name) from None


async def symlinkat(target: StrOrBytesPath, path: StrOrBytesPath, *, dir_fd: int | None = None) -> None:
    """``os.symlink(target, path)`` as one IORING_OP_SYMLINKAT: ``path``
    becomes a symbolic link to ``target``."""
    m = _manager("SYMLINKAT")
    try:
        tmem, tname = cpath(target)
        lmem, lname = cpath(path)
        dirfd = _dirfd(dir_fd)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    try:
        await m.perform(dirfd, m.ring.prep_symlinkat, tmem.address, lmem.address, keep=(tmem, lmem))
    except OSError as exc:
        raise oserror(exc.errno, tname, lname) from None


async def linkat(
    src: StrOrBytesPath,
    dst: StrOrBytesPath,
    *,
    src_dir_fd: int | None = None,
    dst_dir_fd: int | None = None,
    follow_symlinks: bool = True,
) -> None:
    """``os.link(src, dst, ...)`` as one IORING_OP_LINKAT."""
    m = _manager("LINKAT")
    try:
        old, old_name = cpath(src)
        new, new_name = cpath(dst)
        olddir, newdir = _dirfd(src_dir_fd), _dirfd(dst_dir_fd)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    flags = k.AT_SYMLINK_FOLLOW if follow_symlinks else 0
    try:
        await m.perform(olddir, m.ring.prep_linkat, old.address, newdir, new.address, flags, keep=(old, new))
    except OSError as exc:
        raise oserror(exc.errno, old_name, new_name) from None


# ---- pipes ----------------------------------------------------------------------------


async def splice(
    src: FileDescriptorLike,
    dst: FileDescriptorLike,
    count: int,
    offset_src: int | None = None,
    offset_dst: int | None = None,
    flags: int = 0,
) -> int:
    """``os.splice(src, dst, count, offset_src, offset_dst, flags)`` as one
    IORING_OP_SPLICE: move up to ``count`` bytes between two fds, one of
    which must be a pipe, without copying them through user space.  An
    offset of ``None`` means the fd's file position (and must be ``None``
    for a pipe end).  Returns the number of bytes moved (0 at end of file).

    The kernel runs it in an io-wq worker; cancelling a splice that waits
    on an empty or full pipe interrupts it (nothing moved: ``Cancelled``)."""
    m = _manager("SPLICE")
    try:
        fd_in, fd_out = _fileno(src), _fileno(dst)
        n = operator.index(count)
        if n < 0:
            raise ValueError("negative value for 'count' not allowed")
        off_in = -1 if offset_src is None else _offset(offset_src)
        off_out = -1 if offset_dst is None else _offset(offset_dst)
        flags = operator.index(flags)
    except _BAD_INPUT as exc:
        await _raise_at_checkpoint(exc)
    return await splice_fds(m, fd_in, off_in, fd_out, off_out, n, flags)
