"""``trio_uring.open_file``: trio's asynchronous files, with their I/O on io_uring.

What we must reproduce
----------------------

``trio.open_file`` is ``io.open`` run in a worker thread, wrapped so that
every method that may block runs in a thread too.  Its results are therefore
CPython's ``io`` stack to the letter: ``TextIOWrapper``'s decoding, newline
translation, ``tell()`` cookies and their ``seek()``, ``BufferedReader`` /
``BufferedWriter`` / ``BufferedRandom`` buffering, error messages.  Writing
those layers again, asynchronously, would give something *like* them.  So
we keep them, and replace only what is under them.

How
---

The ``io`` layers only touch the world through their raw file.  Ours,
:class:`_Raw`, is an ``io.RawIOBase`` that does no I/O while an operation is
being driven by the async wrapper:

* its reads are served from a small cache of the file's bytes (a few
  extents, never more than a couple of MiB after an operation);
* its writes, truncations and the final close are queued, and its position
  lives in user space.

Each async method of :class:`UringFile` then runs in three steps:

1. **prefetch** -- from the method and its arguments, and the positions of
   the buffered layer (``buffer.tell()``) and of the raw file, work out which
   bytes the synchronous ``io`` method may ask the raw file for, and READ
   those that are not cached yet (one SQE per missing range, at explicit
   offsets).  ``readline`` looks for the end of the line in the cache and
   READs further until it finds one.  Nothing the caller can see has changed
   yet: if a READ is cancelled, :exc:`trio.Cancelled` is raised and the file
   position is exactly where it was (the bytes that did arrive stay cached);
2. **the io method itself**, synchronously, on the cached bytes: its result,
   its error, its effect on the buffered and text layers are CPython's own;
3. **commit** -- queued WRITEs (and FTRUNCATE, CLOSE) go to the kernel in
   order.

The prefetch is exact for binary files (CPython's buffered layer reads at
most ``n`` bytes plus one buffer fill for ``read(n)``, and so on); for text
it is an upper bound computed from the codec's largest character and the
text layer's chunk size.  Should the ``io`` layers ever ask for a byte that
was not prefetched (a codec that eats bytes with ``errors="ignore"``,
``f.wrapped`` used directly, a file changed underneath), the raw file reads
it with a blocking ``os.preadv`` -- correct, but not asynchronous; those are
counted in :attr:`_Raw.sync_reads`, which the tests keep at zero.

Cancellation
------------

* a read raises ``Cancelled`` with the position unchanged, or returns its
  data (the prefetch happens before anything changes, and once the io method
  ran, its result is returned);
* an unbuffered write (``buffering=0``) is one WRITE: ``Cancelled`` means
  nothing was written, otherwise it returns the count written; a buffered
  binary write larger than its buffer is flushed and written the same
  way, bypassing the buffer;
* buffered writes that fit the buffer, and text writes, *accept* the data into the
  file's buffers, exactly as ``io`` does; if the WRITE that pushes buffered
  bytes to the kernel is cancelled, whatever the kernel did not take stays
  queued (in order, ahead of everything else) and goes out with the next
  operation, ``flush()`` or ``aclose()``; the write returns normally and
  ``Cancelled`` comes at the next checkpoint;
* ``aclose()`` is shielded, as trio's: the file is always closed.

What falls back to threads
--------------------------

Regular files only: streams have no offsets.  Opening a FIFO read-only
through io_uring would not wait for a writer (the kernel tries OPENAT with
O_NONBLOCK first and keeps the result; io_uring/openclose.c), so a read-only
open STATXes the path first, and anything but a regular file is opened with
``io.open`` in a worker thread and wrapped by ``trio.wrap_file``.  Opened for
writing, OPENAT behaves as open(2), except ENXIO for a FIFO with no reader:
that is retried in a thread.  A special file met after the open (a race, an
fd passed in) is wrapped the same way.  An ``opener`` is called in a thread,
as trio does.  And everything goes to trio when the current run is not on
io_uring (plain ``trio.run``) or the kernel lacks an opcode.
"""

from __future__ import annotations

import codecs
import errno
import functools
import io
import operator
import os
import stat
import sys
import warnings
from collections.abc import Awaitable, Callable, Iterable
from typing import IO, TYPE_CHECKING, Any, Final, Generic, Literal, TypeVar, overload

import trio
import trio._core._run as _trio_run
from trio._file_io import _FILE_ASYNC_METHODS, _FILE_SYNC_ATTRS, AsyncIOWrapper
from trio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled

from . import _fileops as fo
from . import _kernel as k
from ._entry import manager as _manager
from ._entry import raise_at_checkpoint as _raise_at_checkpoint
from ._manager import UringIOManager
from ._support import UnsupportedError

if TYPE_CHECKING:
    from io import BufferedRandom, BufferedReader, BufferedWriter, FileIO, TextIOWrapper

    from _typeshed import (
        OpenBinaryMode,
        OpenBinaryModeReading,
        OpenBinaryModeUpdating,
        OpenBinaryModeWriting,
        OpenTextMode,
        StrOrBytesPath,
    )

__all__ = ["UringFile", "current_manager", "open_file"]

FileT_co = TypeVar("FileT_co", covariant=True)
_Opener = Callable[[str, int], int]

_KiB: Final = 1024
_MiB: Final = 1024 * 1024
#: Read-ahead window for sequential reads, grown from 0 up to this.
_MAX_READAHEAD: Final = 1 * _MiB
_MIN_READAHEAD: Final = 64 * _KiB
#: After each operation the cache keeps [position - back, position + ahead).
_KEEP_AHEAD: Final = 2 * _MiB
#: First step of a readline scan for the end of the line.
_SCAN_STEP: Final = 64 * _KiB
#: Everything at or beyond this offset: "to the end of the file".
_TO_EOF: Final = 1 << 63


# opcodes asked about -> (the io manager asked of, the answer); on the hot path
_CHECKED: dict[tuple[str, ...], tuple[object, UringIOManager | None]] = {}


def current_manager(*opcodes: str) -> UringIOManager | None:
    """The current run's io_uring manager if it has every opcode named, else
    None (a plain trio run, or a kernel without them): the callers then use
    trio's thread path.  Remembered per run (the probe does not change)."""
    try:
        io_manager: object = trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager
    except AttributeError:
        return None
    seen = _CHECKED.get(opcodes)
    if seen is not None and seen[0] is io_manager:
        return seen[1]
    m: UringIOManager | None = None
    try:
        for name in opcodes:
            m = _manager(name)
    except (RuntimeError, UnsupportedError):
        m = None
    _CHECKED[opcodes] = (io_manager, m)
    return m


# ---- the raw file -------------------------------------------------------------------------


class _Raw(io.RawIOBase):
    """A regular file under CPython's buffered and text layers.

    While :attr:`driving` is set (an async operation is running), it does no
    I/O: reads come from the cache the prefetch filled, writes / truncate /
    close are queued for the commit.  Otherwise (``f.wrapped`` used directly,
    or a close from the garbage collector) it does ordinary blocking I/O.
    The position is ours; the kernel's file offset is not used, except that
    O_APPEND writes go to the end of the file wherever it is.
    """

    def __init__(
        self,
        fd: int,
        name: str | bytes | int,
        mode: str,
        *,
        readable: bool,
        writable: bool,
        appending: bool,
        closefd: bool,
        blksize: int,
        size: int,
        pos: int,
    ) -> None:
        super().__init__()
        self._fd = fd
        self.name = name
        self.mode = mode
        self.closefd = closefd
        self._blksize = blksize
        self._readable = readable
        self._writable = writable
        self._appending = appending
        self._pos = pos
        #: the file's size as far as we know (STATX, our writes and truncates)
        self._size = size
        #: the end of the file, when a short READ (or our truncate) showed it
        #: during the current operation; None: ask the kernel
        self._eof: int | None = None
        #: cached file contents: [offset, bytes], sorted, not overlapping
        self._extents: list[tuple[int, bytearray]] = []
        #: ("w", offset or -1 for O_APPEND, data), ("t", size, b""), ("c", 0, b"")
        self._queue: list[tuple[str, int, bytes]] = []
        self._fd_open = True
        self.driving = False
        #: reads the prefetch did not foresee, done with a blocking pread
        self.sync_reads = 0
        #: io_uring operations done for this file (each one a checkpoint)
        self.ios = 0
        self._seq = pos  # where the last prefetch ended: sequential reads start there
        self._readahead = 0
        #: cached data can be read with preadv2(RWF_NOWAIT) (until the file
        #: system says it cannot)
        self._nowait = True

    # ---- what FileIO offers ----

    def __repr__(self) -> str:
        if self.closed:
            return f"<{type(self).__qualname__} [closed]>"
        return f"<{type(self).__qualname__} name={self.name!r} mode={self.mode!r} closefd={self.closefd}>"

    def __getstate__(self) -> object:
        raise TypeError(f"cannot pickle {type(self).__qualname__!r} object")

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def fileno(self) -> int:
        self._check_open()
        return self._fd

    def readable(self) -> bool:
        self._check_open()
        return self._readable

    def writable(self) -> bool:
        self._check_open()
        return self._writable

    def seekable(self) -> bool:
        self._check_open()
        return True

    def isatty(self) -> bool:
        self._check_open()
        return False  # a regular file

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, pos: int, whence: int = 0, /) -> int:
        self._check_open()
        pos = operator.index(pos)
        whence = operator.index(whence)
        if whence == os.SEEK_SET:
            new = pos
        elif whence == os.SEEK_CUR:
            new = self._pos + pos
        elif whence == os.SEEK_END:
            if not self.driving:
                self._settle_sync()
                self._size = os.fstat(self._fd).st_size
            new = self._size + pos
        elif whence in (os.SEEK_DATA, os.SEEK_HOLE):
            # Only the kernel knows the holes: lseek(2), which moves its
            # offset, not ours, and does no I/O on a local file system.
            self._settle_sync()
            new = os.lseek(self._fd, pos, whence)
        else:
            raise fo.oserror(errno.EINVAL)
        if new < 0:
            raise fo.oserror(errno.EINVAL)
        self._pos = new
        return new

    # Like FileIO's, each method checks its arguments' types first, then
    # whether the file is closed, then the mode.

    def read(self, size: int | None = -1, /) -> bytes:
        if size is not None and not isinstance(size, int):
            raise TypeError(f"argument should be integer or None, not '{type(size).__name__}'")
        self._check_open()
        if not self._readable:
            raise io.UnsupportedOperation("File not open for reading")
        if size is None or size < 0:
            return self.readall()
        buf = bytearray(size)
        n = self.readinto(buf)
        return bytes(buf) if n == size else bytes(memoryview(buf)[:n])

    def readinto(self, buffer: Any, /) -> int:
        if (
            type(buffer) is memoryview
            and buffer.format == "B"
            and buffer.ndim == 1
            and buffer.c_contiguous
            and not buffer.readonly
            and self._readable
        ):
            # what the buffered layer passes: read straight into it
            self._check_open()
            n = self._read_at(self._pos, buffer)
            self._pos += n
            return n
        try:
            view = memoryview(buffer)
        except TypeError:
            view = None
        if view is None or view.readonly:
            raise TypeError(f"readinto() argument must be read-write bytes-like object, not {type(buffer).__name__}")
        self._check_open()
        if not self._readable:
            raise io.UnsupportedOperation("File not open for reading")
        with view, view.cast("B") as mv:
            n = self._read_at(self._pos, mv)
        self._pos += n
        return n

    def readall(self) -> bytes:
        self._check_open()
        if not self._readable:
            raise fo.oserror(errno.EBADF)  # FileIO.readall just read(2)s: EBADF
        pos = self._pos
        if self.driving and self._eof is not None and self._covered(pos, self._eof) >= self._eof:
            data = self._cached(pos, self._eof) if pos < self._eof else b""
        else:
            chunks = []
            size = max(io.DEFAULT_BUFFER_SIZE, self._size - pos + 1)
            while True:
                buf = bytearray(size)
                n = self._read_at(pos, memoryview(buf))
                if n == 0:
                    break
                chunks.append(buf[:n] if n < size else buf)
                pos += n
            data = b"".join(chunks)
        self._pos += len(data)
        return data

    def write(self, data: Any, /) -> int:
        try:
            chunk = bytes(memoryview(data))
        except TypeError:
            raise TypeError(f"a bytes-like object is required, not '{type(data).__name__}'") from None
        self._check_open()
        if not self._writable:
            raise io.UnsupportedOperation("File not open for writing")
        at = self._size if self._appending else self._pos
        if self.driving:
            self._queue.append(("w", -1 if self._appending else at, chunk))
        else:
            self._settle_sync()
            self._pwrite_sync(-1 if self._appending else at, chunk)
        self.wrote(at, chunk)
        return len(chunk)

    def wrote(self, at: int, chunk: bytes) -> None:
        """Account for ``chunk`` written (or queued) at ``at``."""
        self._cache_write(at, chunk)
        end = at + len(chunk)
        if chunk:  # writing nothing past the end does not extend the file
            self._size = max(self._size, end)
            if self._eof is not None:
                self._eof = max(self._eof, end)
        self._pos = end

    def truncate(self, size: int | None = None, /) -> int:
        self._check_open()
        if not self._writable:
            raise io.UnsupportedOperation("File not open for writing")
        size = self._pos if size is None else operator.index(size)
        if size < 0:
            raise fo.oserror(errno.EINVAL)
        if self.driving:
            self._queue.append(("t", size, b""))
        else:
            self._settle_sync()
            os.ftruncate(self._fd, size)
        self.truncated(size)
        return size

    def truncated(self, size: int) -> None:
        self._cache_truncate(size)
        self._size = self._eof = size

    def flush(self) -> None:
        self._check_open()

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()
        finally:
            if not self.closefd:
                # FileIO moves the fd's (shared) offset; leave it where ours is.
                self._fd_open = False
                try:
                    os.lseek(self._fd, self._pos, os.SEEK_SET)
                except OSError:
                    pass
            if self.driving:
                self._queue.append(("c", 0, b""))
            elif self.closefd and self._fd_open:
                try:
                    self._settle_sync()
                finally:
                    self._fd_open = False
                    os.close(self._fd)

    def _dealloc_warn(self, source: object) -> None:
        # The buffered layers call this when they are collected unclosed.
        if self._fd_open and self.closefd:
            warnings.warn(f"unclosed file {source!r}", ResourceWarning, stacklevel=2, source=source)

    def __del__(self) -> None:
        if not self.closed and self.closefd:
            self._dealloc_warn(self)
        super().__del__()

    # ---- blocking I/O, when not driven ----

    def _read_at(self, pos: int, mv: memoryview) -> int:
        n = self._cache_read(pos, mv)
        if n == len(mv) or (self.driving and self._eof is not None and pos + n >= self._eof):
            return n
        # Not foreseen by the prefetch (or not driven at all): a blocking
        # read.  No queued write overlaps it: those are all in the cache.
        if self.driving:
            self.sync_reads += 1
        else:
            self._settle_sync()
        got = os.preadv(self._fd, [mv[n:]], pos + n)
        if got:
            self._cache_insert(pos + n, bytearray(mv[n : n + got]))
        if self.driving and n + got < len(mv):
            self._eof = pos + n + got
        return n + got

    def _pwrite_sync(self, at: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view) if at < 0 else os.pwrite(self._fd, view, at)
            view = view[n:]
            if at >= 0:
                at += n

    def _settle_sync(self) -> None:
        """Carry out what an interrupted commit left queued, blocking."""
        while self._queue:
            kind, arg, data = self._queue.pop(0)
            if kind == "w":
                self._pwrite_sync(arg, data)
            elif kind == "t":
                os.ftruncate(self._fd, arg)
            elif self._fd_open:
                self._fd_open = False
                os.close(self._fd)

    # ---- the cache ----

    def _covered(self, start: int, end: int) -> int:
        """How far from ``start`` (up to ``end``) the cache has every byte."""
        at = start
        for off, data in self._extents:
            if off > at:
                break
            at = max(at, off + len(data))
            if at >= end:
                return end
        return at

    def _cache_read(self, pos: int, mv: memoryview) -> int:
        n, want = 0, len(mv)
        for off, data in self._extents:
            at = pos + n
            if off > at:
                break
            end = off + len(data)
            if end <= at:
                continue
            take = min(end - at, want - n)
            mv[n : n + take] = memoryview(data)[at - off : at - off + take]
            n += take
            if n == want:
                break
        return n

    def _cached(self, start: int, end: int) -> bytes:
        out = bytearray(end - start)
        n = self._cache_read(start, memoryview(out))
        return bytes(memoryview(out)[:n])

    def _cache_insert(self, pos: int, data: bytearray) -> None:
        """Add bytes read from the file at ``pos`` where nothing is cached
        (cached bytes may be newer: queued writes)."""
        end = pos + len(data)
        extents = self._extents
        if not extents or pos >= extents[-1][0] + len(extents[-1][1]):
            if data:
                extents.append((pos, data))  # the usual case: nothing there yet
            return
        gaps: list[tuple[int, bytearray]] = []
        at = pos
        for off, ext in self._extents:
            if off >= end:
                break
            if off > at:
                gaps.append((at, data[at - pos : off - pos]))
            at = max(at, off + len(ext))
        if at < end:
            gaps.append((at, data if at == pos else data[at - pos :]))
        if gaps:
            self._extents = sorted(self._extents + [g for g in gaps if g[1]], key=lambda e: e[0])

    def _cache_write(self, pos: int, data: bytes) -> None:
        end = pos + len(data)
        for off, ext in self._extents:
            if off < end and pos < off + len(ext):
                lo, hi = max(pos, off), min(end, off + len(ext))
                ext[lo - off : hi - off] = data[lo - pos : hi - pos]
        self._cache_insert(pos, bytearray(data))

    def _cache_truncate(self, size: int) -> None:
        kept = []
        for off, ext in self._extents:
            if off + len(ext) <= size:
                kept.append((off, ext))
            elif off < size:
                kept.append((off, ext[: size - off]))
        self._extents = kept

    def trim(self, keep_from: int) -> None:
        """After an operation: forget what lies far from where we are."""
        self._eof = None
        extents = self._extents
        if extents:
            lo, hi = keep_from, self._pos + _KEEP_AHEAD
            if extents[0][0] + len(extents[0][1]) <= lo or extents[-1][0] >= hi:
                self._extents = [(off, ext) for off, ext in extents if off + len(ext) > lo and off < hi]

    # ---- the async side: prefetch and commit ----

    def _read_cached(self, buf: bytearray, at: int) -> int | None:
        """What the page cache already holds at ``at``, with one
        ``preadv2(RWF_NOWAIT)``, which never blocks (preadv2(2)); None if
        any of it would have to come from the disk.  For cached data one
        system call costs far less than a READ's trip through the ring and
        the scheduler; the caller's method is a checkpoint either way.
        (Under trio_uring.testing every read is a READ, ``m.force_ring``.)"""
        if not self._nowait:
            return None
        try:
            return os.preadv(self._fd, [buf], at, os.RWF_NOWAIT)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                self._nowait = False  # this file system cannot say: use the ring
                return None
            raise

    async def ensure(self, m: UringIOManager, start: int, end: int) -> None:
        """Cache the file's bytes [start, end), or up to its end, with one
        READ per missing range.  Sequential reads get a growing read-ahead."""
        if self._covered(start, end) >= end:
            return
        at = start
        while at < end and (self._eof is None or at < self._eof):
            at = self._covered(at, end)
            if at >= end or (self._eof is not None and at >= self._eof):
                return
            stop = end
            for off, _ext in self._extents:
                if off > at:
                    stop = min(stop, off)
                    break
            if at == self._seq:
                self._readahead = min(max(2 * self._readahead, _MIN_READAHEAD), _MAX_READAHEAD)
                if stop == end:
                    stop = max(stop, at + self._readahead)
            else:
                self._readahead = 0
            at = await self._read_extent(m, at, min(stop - at, k.MAX_RW_COUNT))

    async def _read_extent(self, m: UringIOManager, at: int, n: int) -> int:
        buf = bytearray(n)
        got = None if m.force_ring else self._read_cached(buf, at)
        if got is None:
            pin = k.Buffer(buf, writable=True)
            self.ios += 1
            op = await m.perform(self._fd, m.ring.prep_read, pin.address, n, at, keep=pin)  # (the hot path: inline)
            got = op.res
            del op, pin
        if got < n:
            # Nothing at ``at`` means the end is at or before it; a short read
            # of a regular file ends at the end of the file -- unless the file
            # is bigger than that, as far as we know: then read on.
            if not got or at + got >= self._size:
                self._eof = at + got
            buf = buf[:got]
        if got:
            self._cache_insert(at, buf)
        self._seq = at + got
        return at + got

    async def ensure_eof(self, m: UringIOManager, start: int) -> None:
        """Cache everything from ``start`` to the end of the file; the first
        READ asks for one byte more than STATX said is there (as FileIO's
        readall), so a file that did not grow takes one READ."""
        at, want = start, 0
        while self._eof is None:
            at = self._covered(at, _TO_EOF)
            want = max(2 * want, _MIN_READAHEAD) if want else max(self._size - at, 0) + 1
            at = await self._read_extent(m, at, min(want, k.MAX_RW_COUNT))

    async def refresh_size(self, m: UringIOManager) -> None:
        """STATX the fd: the size SEEK_END is relative to."""
        self.ios += 1
        self._size = (await fo.fstat(m, self._fd)).st_size

    async def find_line_end(
        self, m: UringIOManager, start: int, needles: tuple[bytes, ...], unit: int, limit: int
    ) -> int:
        """The offset just past the first of ``needles`` (aligned to ``unit``
        bytes from the start of the file) at or after ``start``; or the end of
        the file, or ``limit``, if that comes first."""
        longest = max(len(n) for n in needles)
        pos, step = start, _SCAN_STEP
        while True:
            end = min(pos + step, limit)
            await self.ensure(m, pos, end)
            data = self._cached(pos, end)
            best = -1
            for needle in needles:
                i = data.find(needle)
                while i >= 0 and (pos + i) % unit:
                    i = data.find(needle, i + 1)
                if i >= 0 and (best < 0 or i + len(needle) < best):
                    best = i + len(needle)
            if best >= 0:
                return pos + best
            if pos + len(data) < end or end >= limit:
                return pos + len(data)
            pos = max(pos + 1, pos + len(data) - longest + 1)
            pos -= pos % unit
            step *= 2

    async def settle(self, m: UringIOManager) -> None:
        """Send what is queued to the kernel, in order.  On Cancelled or an
        error, what the kernel did not take stays queued."""
        while self._queue:
            kind, arg, data = self._queue[0]
            self.ios += 1
            if kind == "w":
                pin = k.Buffer(data, writable=False)
                n = await fo.write_from(m, self._fd, pin.address, len(data), arg, pin)
                if n < len(data):
                    if n == 0:
                        raise fo.oserror(errno.EIO)
                    self._queue[0] = ("w", arg + n if arg >= 0 else arg, data[n:])
                    continue
            elif kind == "t":
                if m.kernel.has_op("FTRUNCATE"):
                    await fo.truncate_fd(m, self._fd, arg)
                else:  # before Linux 6.9: a metadata update, done in place
                    os.ftruncate(self._fd, arg)
            elif self._fd_open:
                self._queue.pop(0)
                self._fd_open = False
                await fo.close_fd(m, self._fd)
                continue
            self._queue.pop(0)

    def abandon(self) -> None:
        """The close could not write everything: drop it, as io does when a
        flush fails during close()."""
        self._queue = [item for item in self._queue if item[0] == "c"]


# ---- codecs: how far a text operation may read ----------------------------------------

# Largest encoded character, for the common codecs (single-byte charmap
# codecs are recognised by their decoding table; anything else: 8).
_MAX_CHAR: Final = {
    "utf-8": 4,
    "utf-8-sig": 4,
    "utf-16": 4,
    "utf-16-le": 4,
    "utf-16-be": 4,
    "utf-32": 4,
    "utf-32-le": 4,
    "utf-32-be": 4,
    "ascii": 1,
    "iso8859-1": 1,
    "gb18030": 4,
    "gbk": 2,
    "big5": 2,
    "shift_jis": 2,
    "cp932": 2,
    "euc_jp": 3,
    "euc_kr": 2,
}


@functools.lru_cache(maxsize=64)
def _text_profile(encoding: str, errors: str | None, newline: str | None) -> tuple[int, int, tuple[bytes, ...]] | None:
    """``(unit, max_bytes_per_char, line_terminators)`` for the bytes of a
    text file, or None when we cannot bound them (prefetch to the end)."""
    try:
        info = codecs.lookup(encoding)

        def encoded(text: str) -> bytes:
            enc = info.incrementalencoder()
            enc.encode("a")  # past any BOM
            return bytes(enc.encode(text))

        lf, cr = encoded("\n"), encoded("\r")
    except Exception:
        return None
    if not lf or len(lf) != len(cr) or errors == "ignore":
        return None
    module = sys.modules.get(getattr(info.incrementaldecoder, "__module__", ""), None)
    widest = 1 if hasattr(module, "decoding_table") else _MAX_CHAR.get(info.name, 8)
    if newline == "\n":
        needles: tuple[bytes, ...] = (lf,)
    elif newline == "\r":
        needles = (cr,)
    elif newline == "\r\n":
        needles = (cr + lf,)
    else:
        needles = (lf, cr)
    # "\r\n" read as one "\n": twice the bytes per character.
    return len(lf), 2 * widest, needles


# ---- the async file -------------------------------------------------------------------------


_Kind = Literal["raw", "buffered", "text"]


class UringFile(AsyncIOWrapper[FileT_co], Generic[FileT_co]):
    """An :term:`asynchronous file object` like ``trio.open_file``'s (it is a
    ``trio._file_io.AsyncIOWrapper``), whose I/O goes through io_uring.

    ``wrapped`` is the real ``io.TextIOWrapper`` / ``io.Buffered*`` object
    (over trio_uring's raw file instead of ``io.FileIO``); using it directly
    is allowed and does blocking I/O, as with trio's.
    """

    def __init__(self, file: FileT_co, raw: _Raw, buffer_size: int) -> None:
        super().__init__(file)
        self._raw = raw
        self._buffer_size = buffer_size
        self._kind: _Kind = (
            "text" if isinstance(file, io.TextIOBase) else "raw" if isinstance(file, io.RawIOBase) else "buffered"
        )
        # One operation at a time, as io's own lock does (a flag and a
        # parking lot: cheaper than trio.Lock on every call).
        self._busy = False
        self._waiters = trio.lowlevel.ParkingLot()
        #: the run whose io manager _run_manager answered for (hot path)
        self._run_io: object = None
        self._run_manager: UringIOManager | None = None

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> object:
            if name in _FILE_SYNC_ATTRS:
                return getattr(self._wrapped, name)
            if name in _FILE_ASYNC_METHODS:
                getattr(self._wrapped, name)  # AttributeError, as trio's, if the io object lacks it
                method = getattr(self, "_async_" + name)
                setattr(self, name, method)
                return method
            raise AttributeError(name)

    # ---- the driver ----

    async def _drive(self, plan: Callable[..., Awaitable[None]] | None, fn: Callable[..., Any], *args: Any) -> Any:
        """prefetch (``plan``), run ``fn(*args)`` on the io object, commit.

        The hot path of every method: no helper coroutines where nothing is
        queued and nobody waits."""
        m = self._manager_now()
        if m is None:
            return await trio.to_thread.run_sync(fn, *args)
        # one operation at a time, as io's own lock does
        await checkpoint_if_cancelled()
        while self._busy:
            await self._waiters.park()
        self._busy = True
        raw = self._raw
        raw.driving = True
        ios = raw.ios
        try:
            if raw._queue:
                await raw.settle(m)  # left by a cancelled commit: Cancelled here = not started
            if plan is not None and raw._readable and not raw.closed:
                await plan(m, *args)
            try:
                return fn(*args)
            finally:
                if raw._queue:
                    await self._commit(m)
                if raw.ios == ios:
                    await cancel_shielded_checkpoint()
        finally:
            self._release()

    def _manager_now(self) -> UringIOManager | None:
        """The current run's manager, if it has the file opcodes (None: a
        stock run, or a kernel without them); remembered per run."""
        try:
            io_manager: object = _trio_run.GLOBAL_RUN_CONTEXT.runner.io_manager
        except AttributeError:
            io_manager = None
        if io_manager is not self._run_io:
            self._run_io, self._run_manager = io_manager, current_manager("READ", "WRITE", "CLOSE", "STATX")
        return self._run_manager

    async def _acquire(self) -> None:
        await checkpoint_if_cancelled()
        while self._busy:
            await self._waiters.park()
        self._busy = True

    def _release(self) -> None:
        """After an operation: let the next one in."""
        raw = self._raw
        raw.driving = False
        # Keep what a later operation may still scan: the buffered layer is
        # at most a buffer away from the raw position.
        if raw._extents:
            raw.trim(raw._pos - 2 * self._buffer_size)
        else:
            raw._eof = None
        self._busy = False
        if self._waiters:
            self._waiters.unpark()

    async def _commit(self, m: UringIOManager) -> None:
        """Send the queued writes.  If that is cancelled, the io layers have
        taken the data all the same: it stays queued for the next operation,
        flush or aclose, and Cancelled is delivered at the next checkpoint
        (cancellation is level-triggered)."""
        if self._raw._queue:
            try:
                await self._raw.settle(m)
            except trio.Cancelled:
                pass

    def _buffer_pos(self) -> int:
        """The position of the buffered layer (bytes consumed by the reader)."""
        if self._kind == "raw":
            return self._raw._pos
        buffer: Any = self._wrapped.buffer if self._kind == "text" else self._wrapped  # type: ignore[attr-defined]
        return int(buffer.tell())

    def _span(self) -> tuple[int, int, int]:
        """``(lo, hi, have)`` for the raw reads the next operation may do.

        They begin at the raw position or at the buffered layer's: a
        BufferedReader reads on from the raw position, holding ``have`` bytes
        ahead of its own; a BufferedRandom first writes its buffer back and
        rewinds to its own position (except read1, which reads on from the
        raw position without writing back; bufferedio.c).  ``lo`` is the
        smaller, ``hi`` the larger."""
        raw = self._raw
        raw_pos = raw._pos
        try:
            logical = self._buffer_pos()
        except (ValueError, OSError, AttributeError):  # closed, detached
            return raw_pos, raw_pos, 0
        have = raw_pos - logical if self._plain_reader() else 0
        lo, hi = min(raw_pos, logical), max(raw_pos, logical)
        if raw._appending:
            # Buffered writes about to be flushed go to the end of the file
            # (O_APPEND), and the reads after them start there.
            lo, hi = min(lo, raw._size), max(hi, raw._size)
        return lo, hi, max(0, have)

    def _plain_reader(self) -> bool:
        return self._kind == "buffered" and not self._raw._writable

    def _extent(self, n: int) -> int:
        """How far BufferedReader.read(n), holding nothing, reads the raw
        file: whole blocks straight into the result, then one buffer fill."""
        block = self._buffer_size
        return n - n % block + (block if n % block else 0)

    def _profile(self) -> tuple[int, int, tuple[bytes, ...]] | None:
        text: Any = self._wrapped
        return _text_profile(text.encoding, text.errors, self._newline)

    _newline: str | None = None

    @property
    def sync_reads(self) -> int:
        """Reads the prefetch did not foresee, done with a blocking pread."""
        return self._raw.sync_reads

    # ---- the plans: which bytes each method may read ----

    async def _plan_read(self, m: UringIOManager, size: int | None = -1) -> None:
        raw = self._raw
        lo, hi, have = self._span()
        try:
            n = -1 if size is None else operator.index(size)
        except TypeError:
            return
        if n < 0:
            await raw.ensure_eof(m, lo)
        elif self._kind == "raw":
            await raw.ensure(m, lo, lo + n)
        elif self._plain_reader():
            if n > have:
                await raw.ensure(m, hi, hi + self._extent(n - have))
        elif self._kind == "buffered":
            await raw.ensure(m, lo, hi + n + self._buffer_size)
        else:
            profile = self._profile()
            if profile is None:
                await raw.ensure_eof(m, lo)
            else:
                await raw.ensure(m, lo, hi + 2 * profile[1] * n + self._text_slack())

    async def _plan_read_plain(self, m: UringIOManager, n: int) -> None:
        """:meth:`_plan_read` for a read-only BufferedReader and ``n > 0``,
        the commonest call, written out: its raw reads start at the raw
        position, which is never behind the buffered layer's."""
        raw = self._raw
        try:
            have = raw._pos - int(self._wrapped.tell())  # type: ignore[attr-defined]
        except (ValueError, OSError):  # closed, detached: the io method says so
            return
        if n > have:
            start = raw._pos
            end = start + self._extent(n - max(0, have))
            if not raw._extents and start != raw._seq and end - start <= k.MAX_RW_COUNT:
                # nothing cached, not sequential (no read-ahead): what
                # ensure() would do, without its scans
                raw._readahead = 0
                at = await raw._read_extent(m, start, end - start)
                if at < end and (raw._eof is None or at < raw._eof):
                    await raw.ensure(m, at, end)  # short, yet not at the end: as ensure() goes on
            elif raw._covered(start, end) < end:
                await raw.ensure(m, start, end)

    def _text_slack(self) -> int:
        chunk = int(getattr(self._wrapped, "_CHUNK_SIZE", 8192))
        return 3 * chunk + 2 * self._buffer_size

    async def _plan_read1(self, m: UringIOManager, size: int = -1) -> None:
        lo, hi, have = self._span()
        try:
            n = operator.index(size)
        except TypeError:
            return
        if n < 0:
            n = self._buffer_size
        if not have:
            await self._raw.ensure(m, lo, hi + max(n, self._buffer_size))

    async def _plan_readinto(self, m: UringIOManager, buffer: Any) -> None:
        try:
            n = memoryview(buffer).nbytes
        except TypeError:
            return
        await self._plan_read(m, n)

    async def _plan_readinto1(self, m: UringIOManager, buffer: Any) -> None:
        try:
            n = memoryview(buffer).nbytes
        except TypeError:
            return
        _lo, hi, have = self._span()
        if have and n - have > self._buffer_size:
            # Unlike read1, CPython's readinto1 goes on after copying what is
            # buffered when the rest is bigger than the buffer: one raw read
            # straight into the caller's buffer (_buffered_readinto_generic
            # in Modules/_io/bufferedio.c).
            await self._raw.ensure(m, hi, hi + (n - have))
            return
        await self._plan_read1(m, n)

    async def _plan_peek(self, m: UringIOManager, size: int = 0) -> None:
        lo, hi, have = self._span()
        if not have:
            await self._raw.ensure(m, lo, hi + self._buffer_size)

    async def _plan_readline(self, m: UringIOManager, size: int | None = -1) -> None:
        try:
            limit = -1 if size is None else operator.index(size)
        except TypeError:
            return
        await self._through_line(m, limit, 0)

    async def _plan_readlines(self, m: UringIOManager, hint: int | None = -1) -> None:
        try:
            n = -1 if hint is None else operator.index(hint)
        except TypeError:
            return
        if n <= 0:
            await self._raw.ensure_eof(m, self._span()[0])
        else:
            # The last line read is the one holding the hint-th character.
            await self._through_line(m, -1, n)

    async def _through_line(self, m: UringIOManager, limit: int, skip: int) -> None:
        """Prefetch through the end of the line that holds the ``skip``-th
        character (the current line for 0), at most ``limit`` characters."""
        raw = self._raw
        lo, hi, _have = self._span()
        try:
            logical = self._buffer_pos()
        except (ValueError, OSError, AttributeError):  # closed, detached
            return
        if self._kind == "text":
            profile = self._profile()
            if profile is None:
                await raw.ensure_eof(m, lo)
                return
            unit, widest, needles = profile
            slack = self._text_slack()
        else:
            unit, widest, needles, slack = 1, 1, (b"\n",), self._buffer_size
        bound = _TO_EOF if limit < 0 else logical + widest * limit + unit
        end = await raw.find_line_end(m, logical + widest * skip, needles, unit, bound)
        await raw.ensure(m, lo, max(hi, end) + unit + slack)

    async def _plan_seek(self, m: UringIOManager, target: int, whence: int = 0) -> None:
        if whence == os.SEEK_END:
            await self._raw.refresh_size(m)
            return
        if self._kind != "text":
            return
        try:
            cookie = operator.index(target)
            if whence == os.SEEK_CUR and cookie == 0:
                cookie = self._wrapped.tell()  # type: ignore[attr-defined]  # no I/O: decodes the snapshot
            elif whence != os.SEEK_SET or cookie < 0:
                return
        except Exception:
            return  # the io method raises it again, for real
        # TextIOWrapper's cookie: start_pos | dec_flags << 64 |
        # bytes_to_feed << 96 | chars_to_skip << 128 | need_eof << 160;
        # seek() reads bytes_to_feed bytes from start_pos (textio.c).
        start_pos = cookie & 0xFFFFFFFFFFFFFFFF
        feed = (cookie >> 96) & 0xFFFFFFFF
        if feed:
            raw_pos = self._raw._pos
            near = abs(start_pos - raw_pos) <= self._buffer_size
            lo = min(start_pos, raw_pos) if near else start_pos
            hi = max(start_pos, raw_pos) if near else start_pos
            await self._raw.ensure(m, lo, hi + feed + self._buffer_size)

    # ---- the methods ----

    async def _async_read(self, size: int | None = -1, /) -> Any:
        if type(size) is int and size > 0 and self._plain_reader():
            raw = self._raw
            if not (self._busy or raw._extents or raw._queue) and raw._nowait and raw._fd_open and not raw.closed:
                m = self._manager_now()
                if m is not None and not m.force_ring:
                    data = await self._read_random(raw, size)
                    if data is not None:
                        return data
            return await self._drive(self._plan_read_plain, self._wrapped.read, size)  # type: ignore[attr-defined]
        return await self._drive(self._plan_read, self._wrapped.read, size)  # type: ignore[attr-defined]

    async def _read_random(self, raw: _Raw, size: int) -> bytes | None:
        """``read(size)`` of a read-only binary file with nothing cached,
        the way random reads come (seek, read, seek ...): what ``_drive``
        with ``_plan_read_plain`` does, written out.  The raw bytes the
        buffered layer will ask for are read with one
        ``preadv2(RWF_NOWAIT)``; None (nothing done but the cancel check)
        if that cannot serve them -- not in the page cache, the end of the
        file, a read-ahead run, an error -- and the general path follows."""
        await checkpoint_if_cancelled()
        wrapped: Any = self._wrapped
        try:
            have = raw._pos - int(wrapped.tell())
        except (ValueError, OSError):
            return None
        start = raw._pos
        if size > have:
            if start == raw._seq:
                return None  # sequential: ensure() grows a read-ahead
            n = self._extent(size - max(0, have))
            buf = bytearray(n)
            try:
                got = os.preadv(raw._fd, [buf], start, os.RWF_NOWAIT)
            except OSError:
                return None
            if got != n:
                return None
            raw._extents.append((start, buf))
            raw._seq = start + n
            raw._readahead = 0
        self._busy = True
        raw.driving = True
        try:
            data: bytes = wrapped.read(size)
        finally:
            self._release()
            await cancel_shielded_checkpoint()
        return data

    async def _async_readall(self) -> Any:
        return await self._drive(self._plan_read, self._wrapped.readall)  # type: ignore[attr-defined]

    async def _async_read1(self, size: int = -1, /) -> bytes:
        return await self._drive(self._plan_read1, self._wrapped.read1, size)  # type: ignore[attr-defined, no-any-return]

    async def _async_readinto(self, buffer: Any, /) -> int | None:
        return await self._drive(self._plan_readinto, self._wrapped.readinto, buffer)  # type: ignore[attr-defined, no-any-return]

    async def _async_readinto1(self, buffer: Any, /) -> int:
        return await self._drive(self._plan_readinto1, self._wrapped.readinto1, buffer)  # type: ignore[attr-defined, no-any-return]

    async def _async_peek(self, size: int = 0, /) -> bytes:
        return await self._drive(self._plan_peek, self._wrapped.peek, size)  # type: ignore[attr-defined, no-any-return]

    async def _async_readline(self, size: int | None = -1, /) -> Any:
        return await self._drive(self._plan_readline, self._wrapped.readline, size)  # type: ignore[attr-defined]

    async def _async_readlines(self, hint: int | None = -1, /) -> list[Any]:
        return await self._drive(self._plan_readlines, self._wrapped.readlines, hint)  # type: ignore[attr-defined, no-any-return]

    async def _async_seek(self, target: int, whence: int = 0, /) -> int:
        # Only SEEK_END (the size) and a text cookie (the bytes to replay) need a plan.
        if whence == os.SEEK_END or self._kind == "text":
            return await self._drive(self._plan_seek, self._wrapped.seek, target, whence)  # type: ignore[attr-defined, no-any-return]
        raw = self._raw
        # (a writable file's seek may flush the buffered layer: its writes
        # must be committed, which _drive does)
        if self._busy or raw._writable or raw._queue or self._manager_now() is None:
            return await self._drive(None, self._wrapped.seek, target, whence)  # type: ignore[attr-defined, no-any-return]
        # _drive with no plan and nothing queued, without its coroutine
        # (seek is hot in random reads)
        await checkpoint_if_cancelled()
        self._busy = True
        raw.driving = True
        try:
            return self._wrapped.seek(target, whence)  # type: ignore[attr-defined, no-any-return]
        finally:
            self._release()
            await cancel_shielded_checkpoint()

    async def _async_tell(self) -> int:
        return await self._drive(None, self._wrapped.tell)  # type: ignore[attr-defined, no-any-return]

    async def _async_flush(self) -> None:
        await self._drive(None, self._wrapped.flush)  # type: ignore[attr-defined]

    async def _async_truncate(self, size: int | None = None, /) -> int:
        if self._kind == "raw":
            return await self._raw_truncate(size)
        return await self._drive(None, self._wrapped.truncate, size)  # type: ignore[attr-defined, no-any-return]

    async def _async_writelines(self, lines: Iterable[Any], /) -> None:
        await self._drive(None, self._wrapped.writelines, lines)  # type: ignore[attr-defined]

    async def _async_write(self, data: Any, /) -> int:
        if self._kind == "raw":
            return await self._direct_write(data, flush_first=False)
        if self._kind == "buffered":
            try:
                n = memoryview(data).nbytes
            except TypeError:
                n = 0
            # (CPython buffers a write that fits the buffer, even exactly:
            # bufferedio.c, _io__Buffered_write_impl)
            if n > self._buffer_size and not self._raw.closed and self._raw._writable:
                return await self._direct_write(data, flush_first=True)
        return await self._drive(None, self._wrapped.write, data)  # type: ignore[attr-defined, no-any-return]

    # ---- writes with exact cancellation ----

    async def _direct_write(self, data: Any, *, flush_first: bool) -> int:
        """WRITE ``data`` itself: ``Cancelled`` means none of it was written,
        otherwise the count written is returned.  Unbuffered files do one
        WRITE, as FileIO.write does one write(2); buffered ones first flush
        their buffer and repeat a short WRITE, as BufferedWriter does."""
        m = current_manager("READ", "WRITE", "CLOSE", "STATX")
        raw = self._raw
        if m is None or raw.closed:
            return await self._drive(None, self._wrapped.write, data)  # type: ignore[attr-defined, no-any-return]
        wrapped: Any = self._wrapped
        await self._acquire()
        raw.driving = True
        try:
            try:
                pin = k.Buffer(data, writable=False)
            except TypeError:
                wrapped.write(data)  # not bytes-like: let the io object raise its own TypeError
                raise
            if not raw._writable:
                raise io.UnsupportedOperation("File not open for writing")
            if flush_first:
                wrapped.flush()  # the buffered bytes go first (queued), and the read buffer is dropped
            if raw._queue:
                await raw.settle(m)
            at = raw._size if raw._appending else raw._pos
            written = 0
            try:
                while written < pin.length:
                    offset = -1 if raw._appending else at + written
                    raw.ios += 1
                    n = await fo.write_from(m, raw._fd, pin.address + written, pin.length - written, offset, pin)
                    written += n
                    if not flush_first or n == 0:
                        break
            except (trio.Cancelled, OSError):
                if not written:
                    raise
            with memoryview(data) as view, view.cast("B") as mv:
                raw.wrote(at, bytes(mv[:written]))
            if flush_first:
                wrapped.seek(at + written)  # the buffered layer catches up: empty, at the new position
                if written < pin.length and pin.length:
                    return written
                return memoryview(data).nbytes
            return written
        finally:
            self._release()

    async def _raw_truncate(self, size: int | None) -> int:
        """FileIO.truncate as one FTRUNCATE: ``Cancelled`` means not truncated."""
        raw = self._raw
        if raw.closed or not raw._writable:
            return await self._drive(None, self._wrapped.truncate, size)  # type: ignore[attr-defined, no-any-return]
        m = current_manager("FTRUNCATE")
        if m is None:
            return await self._drive(None, self._wrapped.truncate, size)  # type: ignore[attr-defined, no-any-return]
        try:
            length = raw._pos if size is None else operator.index(size)
            if length < 0:
                raise fo.oserror(errno.EINVAL)
        except (TypeError, OSError) as exc:
            await _raise_at_checkpoint(exc)
        await self._acquire()
        try:
            if raw._queue:
                await raw.settle(m)
            raw.ios += 1
            await fo.truncate_fd(m, raw._fd, length)
            raw.truncated(length)
        finally:
            self._release()
        return length

    # ---- the rest of the interface ----

    def __aiter__(self) -> UringFile[FileT_co]:
        return self

    async def __anext__(self) -> Any:
        line = await self._async_readline()
        if line:
            return line
        raise StopAsyncIteration

    async def detach(self) -> Any:
        """Like ``io.BufferedIOBase.detach`` / ``TextIOBase.detach``, but
        async; the result is wrapped again (and still on io_uring)."""
        inner = await self._drive(None, self._wrapped.detach)  # type: ignore[attr-defined]
        wrapper = UringFile(inner, self._raw, self._buffer_size)
        return wrapper

    async def aclose(self) -> None:
        """Like ``io.IOBase.close``, but async: flush, then CLOSE.  Shielded
        from cancellation, as trio's: the file is closed either way."""
        with trio.CancelScope(shield=True):
            m = current_manager("READ", "WRITE", "CLOSE", "STATX")
            if m is None:
                await trio.to_thread.run_sync(self._wrapped.close)  # type: ignore[attr-defined]
            else:
                await self._close(m)
        await trio.lowlevel.checkpoint_if_cancelled()

    async def _close(self, m: UringIOManager) -> None:
        await self._acquire()
        raw = self._raw
        raw.driving = True
        try:
            try:
                self._wrapped.close()  # type: ignore[attr-defined]
            finally:
                try:
                    await raw.settle(m)
                except OSError:
                    raw.abandon()  # the data cannot be written; still close
                    await raw.settle(m)
                    raise
        finally:
            self._release()


# ---- open_file ------------------------------------------------------------------------------


class _Validated(Exception):
    """Raised by our opener: io.open has checked every argument."""

    def __init__(self, name: str | bytes, flags: int) -> None:
        super().__init__()
        self.name = name
        self.flags = flags


def _validate_opener(name: str | bytes, flags: int) -> int:
    raise _Validated(name, flags)


def _validate(
    file: Any, mode: str, buffering: int, encoding: str | None, errors: str | None, newline: str | None, closefd: bool
) -> tuple[str | bytes | int, int]:
    """Check the arguments exactly as ``io.open`` does, by letting it check
    them: it calls the opener after every check and before any I/O.  Returns
    the name FileIO would use and the open(2) flags it would pass."""
    is_fd = isinstance(file, int)
    try:
        open(  # noqa: SIM115  -- never returns: our opener raises
            "-" if is_fd else file,
            mode,
            buffering,
            encoding,
            errors,
            newline,
            True if is_fd else closefd,
            _validate_opener,
        )
    except _Validated as ok:
        if is_fd:
            if file < 0:
                raise ValueError("negative file descriptor") from None
            return int(file), ok.flags
        return ok.name, ok.flags
    raise AssertionError("io.open did not call the opener")  # pragma: no cover


def _fileio_mode(mode: str) -> tuple[str, bool, bool, bool]:
    """FileIO's ``mode`` attribute and (readable, writable, appending)."""
    updating = "+" in mode
    if "x" in mode:
        return ("xb+" if updating else "xb"), updating, True, False
    if "a" in mode:
        return ("ab+" if updating else "ab"), updating, True, True
    if "r" in mode:
        return ("rb+" if updating else "rb"), True, updating, False
    return ("rb+" if updating else "wb"), updating, True, False


def _build(
    raw: _Raw,
    mode: str,
    buffering: int,
    encoding: str | None,
    errors: str | None,
    newline: str | None,
) -> tuple[Any, int]:
    """The rest of ``io.open`` (Modules/_io/_iomodule.c) on our raw file:
    returns the io object and its buffer size."""
    line_buffering = False
    if buffering == 1:  # (isatty() is False: a regular file)
        buffering = -1
        line_buffering = True
    if buffering < 0:
        buffering = raw._blksize
    if buffering == 0:
        if "b" not in mode:
            raise ValueError("can't have unbuffered text I/O")
        return raw, 0
    cls: type[io.BufferedReader | io.BufferedWriter | io.BufferedRandom]
    if "+" in mode:
        cls = io.BufferedRandom
    elif "r" in mode:
        cls = io.BufferedReader
    else:
        cls = io.BufferedWriter
    buffer = cls(raw, buffering)
    if "b" in mode:
        return buffer, buffering
    text = io.TextIOWrapper(buffer, encoding, errors, newline, line_buffering)
    setattr(text, "mode", mode)  # noqa: B010  -- as io.open does (typeshed: read-only)
    return text, buffering


async def _thread_open(*args: Any) -> AsyncIOWrapper[Any]:
    return trio.wrap_file(await trio.to_thread.run_sync(io.open, *args))


@overload
async def open_file(
    file: StrOrBytesPath | int,
    mode: OpenTextMode = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: _Opener | None = None,
) -> AsyncIOWrapper[TextIOWrapper]: ...


@overload
async def open_file(
    file: StrOrBytesPath | int,
    mode: OpenBinaryMode,
    buffering: Literal[0],
    encoding: None = None,
    errors: None = None,
    newline: None = None,
    closefd: bool = True,
    opener: _Opener | None = None,
) -> AsyncIOWrapper[FileIO]: ...


@overload
async def open_file(
    file: StrOrBytesPath | int,
    mode: OpenBinaryModeUpdating,
    buffering: Literal[-1, 1] = -1,
    encoding: None = None,
    errors: None = None,
    newline: None = None,
    closefd: bool = True,
    opener: _Opener | None = None,
) -> AsyncIOWrapper[BufferedRandom]: ...


@overload
async def open_file(
    file: StrOrBytesPath | int,
    mode: OpenBinaryModeWriting,
    buffering: Literal[-1, 1] = -1,
    encoding: None = None,
    errors: None = None,
    newline: None = None,
    closefd: bool = True,
    opener: _Opener | None = None,
) -> AsyncIOWrapper[BufferedWriter]: ...


@overload
async def open_file(
    file: StrOrBytesPath | int,
    mode: OpenBinaryModeReading,
    buffering: Literal[-1, 1] = -1,
    encoding: None = None,
    errors: None = None,
    newline: None = None,
    closefd: bool = True,
    opener: _Opener | None = None,
) -> AsyncIOWrapper[BufferedReader]: ...


@overload
async def open_file(
    file: StrOrBytesPath | int,
    mode: str,
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: _Opener | None = None,
) -> AsyncIOWrapper[IO[Any]]: ...


async def open_file(
    file: StrOrBytesPath | int,
    mode: str = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: _Opener | None = None,
) -> AsyncIOWrapper[Any]:
    """``trio.open_file``, with the file's I/O on io_uring.

    Same signature, same object API (``read``, ``write``, ``seek``,
    ``async for``, ``aclose``, ``wrapped`` ...), same results and errors: the
    buffering and text layers are CPython's own ``io`` classes.  OPENAT,
    STATX, READ, WRITE, FTRUNCATE and CLOSE do the work, at explicit
    offsets; see the module documentation for cancellation and for what
    falls back to trio's worker threads (non-regular files, ``opener``,
    runs not on io_uring).
    """
    m = current_manager("OPENAT", "STATX", "READ", "WRITE", "CLOSE")
    if m is None:
        return await trio.open_file(file, mode, buffering, encoding, errors, newline, closefd, opener)
    args = (file, mode, buffering, encoding, errors, newline, closefd, opener)
    try:
        name, flags = _validate(file, mode, buffering, encoding, errors, newline, closefd)
    except Exception as exc:
        await _raise_at_checkpoint(exc)
    owned = not isinstance(name, int)
    if not isinstance(name, int):
        mem, _ = fo.cpath(name)
        if flags & os.O_ACCMODE == os.O_RDONLY:
            # Only a read-only open differs through io_uring: OPENAT first
            # tries O_NONBLOCK and keeps what it gets (io_uring/openclose.c),
            # so a FIFO would open without waiting for a writer.  So look
            # first.  Opened for writing, everything behaves as open(2)
            # (a FIFO with no reader: ENXIO, handled below).
            try:
                before = await fo.statx_at(m, k.AT_FDCWD, mem, 0)
            except OSError:
                pass  # let the open say what is wrong
            else:
                if not stat.S_ISREG(before.st_mode):
                    return await _thread_open(*args)
        if opener is not None:
            call: Callable[..., Any] = opener
            fd = await trio.to_thread.run_sync(call, name, flags)
            if not isinstance(fd, int):
                raise TypeError("expected integer from opener")  # FileIO's words
            if fd < 0:
                raise ValueError(f"opener returned {fd}")
        else:
            try:
                fd = await fo.open_at(m, k.AT_FDCWD, mem, flags, 0o666)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    return await _thread_open(*args)  # a FIFO with no reader: open(2) waits for one
                raise fo.oserror(exc.errno, name) from None
    else:
        fd = int(name)
    # The file is open (and maybe created or truncated): that happened, so
    # no checkpoint from here on, the file is returned.  Like FileIO, fstat
    # the new fd: synchronously, as it reads the in-memory inode (no I/O on
    # a local file system), where a STATX would cost a trip through the
    # scheduler and a shielded cancel scope.
    try:
        st = os.fstat(fd)
    except BaseException:
        if owned:
            os.close(fd)
        raise
    if stat.S_ISREG(st.st_mode):
        return _wrap(fd, name, st, mode, buffering, encoding, errors, newline, closefd)  # (closes it on error)
    try:
        if stat.S_ISDIR(st.st_mode) and owned:
            raise fo.oserror(errno.EISDIR, name)
        # A character device, a socket ...: trio's thread path, on this fd.
        return trio.wrap_file(_io_open_fd(fd, name, owned, mode, buffering, encoding, errors, newline, closefd))
    except BaseException:
        if owned:
            os.close(fd)
        raise


def _io_open_fd(
    fd: int,
    name: str | bytes | int,
    owned: bool,
    mode: str,
    buffering: int,
    encoding: str | None,
    errors: str | None,
    newline: str | None,
    closefd: bool,
) -> Any:
    """``io.open`` on an fd we have (no I/O: an fstat, maybe an lseek)."""
    obj = open(fd, mode, buffering, encoding, errors, newline, True if owned else closefd)  # noqa: SIM115
    if owned:
        raw = obj.buffer.raw if isinstance(obj, io.TextIOWrapper) else getattr(obj, "raw", obj)
        setattr(raw, "name", name)  # noqa: B010  -- as FileIO names a file it opened itself
    return obj


def _wrap(
    fd: int,
    name: str | bytes | int,
    st: os.stat_result,
    mode: str,
    buffering: int,
    encoding: str | None,
    errors: str | None,
    newline: str | None,
    closefd: bool,
) -> UringFile[Any]:
    rawmode, readable, writable, appending = _fileio_mode(mode)
    if appending:
        pos = os.lseek(fd, 0, os.SEEK_END)  # as FileIO: starts at the end
    elif isinstance(name, int):
        pos = os.lseek(fd, 0, os.SEEK_CUR)  # an fd we were given: where it is
    else:
        pos = 0
    raw = _Raw(
        fd,
        name,
        rawmode,
        readable=readable,
        writable=writable,
        appending=appending,
        closefd=closefd,
        blksize=st.st_blksize if st.st_blksize > 1 else io.DEFAULT_BUFFER_SIZE,
        size=st.st_size,
        pos=pos,
    )
    try:
        obj, buffer_size = _build(raw, mode, buffering, encoding, errors, newline)
    except BaseException:
        raw.close()  # as io.open does when the TextIOWrapper cannot be made
        raise
    f = UringFile(obj, raw, buffer_size)
    f._newline = newline
    return f
