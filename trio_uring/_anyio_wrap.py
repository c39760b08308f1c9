"""``anyio.wrap_file`` of a plain ``open()`` binary file, with its I/O in the ring.

The object is CPython's own -- a ``FileIO``, or a ``BufferedReader`` or
``BufferedWriter`` over one, on a regular file -- and its buffers live in C,
out of our reach; its raw reads are read(2) calls.  So its I/O is not done
*by* the object: this module does the same I/O in the ring and then sets the
object to where its own call would have left it.  Results, exceptions,
``tell()`` and the bytes on disk after every call are those of anyio's own
``AsyncFile`` (the object's method in a worker thread): the differential test
in ``tests/test_anyio_files.py`` checks that, call by call, against anyio on
stock trio.

The object's state
------------------

Between two calls the object is in a state we know: no read-ahead, and a
write buffer holding exactly :attr:`PlainFile.pending`, the bytes we gave
it, which go to the file at :attr:`PlainFile.pend_at`, the fd's offset.
Each call checks that first with two ``lseek`` calls: the object's
``tell()``, which is the fd's offset less its read-ahead plus its unflushed
writes, and the fd's offset.  An object that already holds either when it
is wrapped stays anyio's; one that the program used directly between two
calls is handed back to anyio's code from then on.  Its buffer then holds
everything the program wrote, so nothing is lost.

* **FileIO** (``buffering=0``): a read is one READ at the position, as its
  one read(2) (``read()`` reads until a READ returns 0, as ``readall``); a
  write is one WRITE at the position.  For ``O_APPEND`` the WRITE uses
  offset -1: the kernel appends and moves the fd's offset, as write(2)
  does.  An explicit offset would append without moving it (pwrite(2),
  BUGS).  Then the object is ``seek``-ed past the bytes, which is an
  ``lseek``.
* **BufferedReader**: what ``read1`` and ``readinto1`` return depends on
  the object's read-ahead ("only buffered bytes if there are any").  So the
  calls run on a *shadow*: CPython's own ``BufferedReader`` with the same
  buffer size and position, over trio_uring's raw file (``_file._Raw``),
  driven by :class:`trio_uring._file.UringFile`.  It reads at explicit
  offsets through the ring, or with ``preadv2(RWF_NOWAIT)`` for cached
  pages, and its read-ahead is CPython's.  Afterwards the program's object
  is ``seek``-ed to the shadow's position.  It keeps no read-ahead of its
  own; a program that reads from it directly gets the file's bytes from
  there.
* **BufferedWriter**: a write that fits what is left of the buffer (the
  buffer size is ``__sizeof__`` less the object's struct) goes into the
  object's own buffer with its own ``write()``: a memcpy, no I/O, as in
  CPython (bufferedio.c, ``_io__Buffered_write_impl``).  A write that does
  not fit makes the flush CPython would make, as WRITEs: first the pending
  bytes, then the data itself while more than a buffer of it is left.
  (Python 3.13 writes a write of exactly the buffer size straight through
  where 3.11 and 3.12 buffer it: :func:`largest_buffered_write` asks the
  running CPython.)  Then
  the object is re-initialised (``__init__`` again, which CPython allows:
  an empty buffer, the fd's offset re-read) so that it does not write those
  bytes a second time.  Since the object's buffer holds the pending bytes,
  closing it synchronously (``with open(...)``) still writes them.
  ``seek``, ``truncate``, ``flush`` and ``aclose`` write the pending bytes
  first, as CPython's do.  ``seek`` and ``tell`` are then the object's own
  (an ``lseek``).  ``truncate`` is an FTRUNCATE, or the object's own on a
  kernel without that opcode (a metadata update).  ``aclose`` closes the
  object: one ``close(2)``, since the object owns the fd.

A **BufferedRandom** (``r+b``, ``w+b``, ``a+b`` buffered) stays anyio's:
when its writes are flushed depends on where its read-ahead window lies
(CPython writes into the read buffer). Reproducing that means owning the
whole object, as the shadow does for a reader. But then the unflushed
bytes would sit in the shadow, and a synchronous ``close()`` of the
program's object would lose them.  Text files (``TextIOWrapper``:
decoder state, opaque ``tell()`` cookies) and everything else also stay
anyio's.

Arguments that the object refuses before doing any I/O (a closed file, a
method the mode lacks, an argument of the wrong type) are passed to its
method, which raises its own error.  Anything more unusual goes to anyio's
code.

Cancellation
------------

This follows ``trio_uring.open_file``.  A read raises ``Cancelled`` with the
position unchanged or returns its data: the READs fill a private buffer,
and the object moves only after they are done.  A write raises
``Cancelled`` having written none of its data, or returns the count
written.  Pending bytes that a flush wrote stay written.  ``writelines`` and
``aclose`` run to the end once they start, as anyio's thread does, and
``Cancelled`` then comes at the next checkpoint.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import stat
import weakref
from collections.abc import Callable
from typing import Any, Final, Literal

import sniffio
import trio
from trio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled

from . import _fileops as fo
from . import _kernel as k
from ._file import UringFile, _Raw, current_manager
from ._manager import UringIOManager

__all__ = ["PlainFile", "plain_file"]

#: BufferedRandom is not here: see the module documentation
_BUFFERED: Final = (io.BufferedReader, io.BufferedWriter)
#: first READ of a readline scan
_SCAN: Final = 8192


def _bufsize(f: Any) -> int:
    """A buffered object's buffer size: CPython's ``__sizeof__`` of a
    buffered object is its struct plus its buffer (bufferedio.c,
    ``_io__Buffered___sizeof___impl``); the size is not exposed otherwise."""
    return int(f.__sizeof__()) - type(f).__basicsize__


#: one state per object, shared by every anyio file wrapping it
_STATES: weakref.WeakKeyDictionary[Any, PlainFile] = weakref.WeakKeyDictionary()


class _Recorder(io.RawIOBase):
    """A raw file that only counts the writes it is given (no I/O)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self.writes += 1
        return memoryview(b).nbytes


@functools.cache
def _buffer_takes_a_full_buffer() -> bool:
    """Does this CPython's BufferedWriter keep a write of exactly its buffer
    size in the buffer (3.11, 3.12) or write it straight through (3.13)?
    Asked of it, on a raw file that only counts writes."""
    recorder = _Recorder()
    writer = io.BufferedWriter(recorder, 4)
    writer.write(b"1234")
    taken = recorder.writes == 0
    writer.detach()
    return taken


def largest_buffered_write(bufsize: int) -> int:
    """The largest write a BufferedWriter of ``bufsize`` keeps in its
    buffer (after writing back what it held, if it must); a larger one it
    writes straight through, until what is left is this size or less."""
    return bufsize if _buffer_takes_a_full_buffer() else bufsize - 1


def plain_file(f: object) -> PlainFile | None:
    """The ring-side state for ``f`` if it is a plain binary file on a
    regular file (see the module documentation), else None.  Wrapping the
    same object again shares its state (and its one-call-at-a-time lock)."""
    known = _STATES.get(f) if type(f) is io.FileIO or type(f) in _BUFFERED else None
    if known is not None:
        return known if known.own and not known.f.closed else None
    t = type(f)
    try:
        if t is io.FileIO:
            raw: Any = f
            bufsize = 0
        elif t in _BUFFERED:
            raw = f.raw  # type: ignore[attr-defined]
            if type(raw) is not io.FileIO:
                return None
            bufsize = _bufsize(f)
            if bufsize <= 0:
                return None
        else:
            return None
        if raw.closed or not stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
            return None
        plain = PlainFile(f, raw, bufsize)
        if not plain.start():
            return None
        _STATES[f] = plain
        return plain
    except (OSError, ValueError, AttributeError):  # closed, detached ...
        return None


class _ShadowRaw(_Raw):
    """trio_uring's raw file under the shadow ``BufferedReader``: the
    program's object owns the fd and its offset, so closing (or collecting)
    the shadow touches neither."""

    def close(self) -> None:
        self._fd_open = False
        io.RawIOBase.close(self)


class PlainFile:
    """The I/O of one wrapped object, in the ring (used by the anyio file
    class when the task is on io_uring)."""

    def __init__(self, f: Any, raw: io.FileIO, bufsize: int) -> None:
        self.f = f
        self.raw = raw
        self.fd = raw.fileno()
        self.bufsize = bufsize
        self.buffered = bufsize > 0
        self.readable = raw.readable()
        self.writable = raw.writable()
        self.appending = "a" in raw.mode
        #: a BufferedReader: its calls go to a shadow (see shadowed())
        self.reader = self.buffered and not self.writable
        #: a writable buffered object: the bytes in its write buffer, and
        #: where they go (the fd's offset)
        self.pending = bytearray()
        self.pend_at = 0
        #: False once the object holds state we cannot know: anyio's own code
        self.own = True
        #: a BufferedReader's shadow, and the position it was left at
        self.shadow: UringFile[Any] | None = None
        self.shadow_at = -1
        #: what stopped a run of WRITEs after some bytes were written
        self.error: BaseException | None = None
        self._lock = trio.Lock()

    # ---- keeping the object where we know it ----

    def start(self) -> bool:
        """At wrap time: bring the object to the known state, if that needs
        no I/O; False if it may hold writes we cannot see."""
        f = self.f
        if not self.buffered:
            return True
        logical, at = f.tell(), os.lseek(self.fd, 0, os.SEEK_CUR)
        # tell() is the fd's offset less the read-ahead (a BufferedReader)
        # or plus the unflushed writes (a BufferedWriter): either is state
        # in the object we cannot reproduce.
        if logical != at:
            return False
        self.pend_at = at
        return True

    def check(self) -> int | None:
        """At the start of a call: the logical position, or None if the
        object's state is no longer ours (anyio's own code from now on)."""
        f = self.f
        logical = f.tell()
        if not self.buffered:
            return int(logical)
        at = os.lseek(self.fd, 0, os.SEEK_CUR)
        if at != self.pend_at or logical != self.pend_at + len(self.pending):
            # The program used the object itself: it may hold read-ahead or
            # writes we do not know.
            self.own = False
            return None
        return int(logical)

    def _resync(self, at: int, rest: bytes) -> None:
        """After WRITEs of what the object's buffer held: the object starts
        over at ``at`` (the fd's offset) with ``rest`` in its buffer."""
        if not self.appending:
            os.lseek(self.fd, at, os.SEEK_SET)
        else:
            at = os.lseek(self.fd, 0, os.SEEK_CUR)  # where the appends left it
        type(self.f).__init__(self.f, self.raw, self.bufsize)  # an empty buffer, the offset re-read
        if rest:
            self.f.write(rest)  # fits: no I/O
        self.pend_at = at
        self.pending = bytearray(rest)

    def _moved(self, to: int) -> None:
        """After READs (nothing pending): the object goes to ``to``, an
        ``lseek`` (with no read-ahead, seek takes no shortcut)."""
        self.f.seek(to)
        self.pend_at = to

    # ---- ring operations ----

    async def _write_at(self, m: UringIOManager, data: bytes, at: int, upto: int) -> int:
        """WRITE ``data`` at ``at`` (at the end if appending) until at most
        ``upto`` bytes are left; returns the count written.  Cancelled or an
        error before anything was written is raised; after, the count is
        returned and the error kept in :attr:`error`."""
        pin = k.Buffer(data, writable=False)
        written = 0
        self.error = None
        while len(data) - written > upto:
            offset = -1 if self.appending else at + written
            try:
                n = await fo.write_from(m, self.fd, pin.address + written, len(data) - written, offset, pin)
            except (trio.Cancelled, OSError) as exc:
                if not written:
                    raise
                self.error = exc
                break
            if n == 0:
                if not written:
                    raise fo.oserror(errno.EIO)  # a regular file that takes nothing
                break
            written += n
        return written

    async def flush_pending(self, m: UringIOManager) -> None:
        """Write what the object's buffer holds, as its flush would."""
        if not self.pending:
            return
        data = bytes(self.pending)
        at = self.pend_at
        written = await self._write_at(m, data, at, 0)
        self._resync(at + written, data[written:])
        if self.error is not None:
            raise self.error

    async def _read_at(self, m: UringIOManager, at: int, n: int, *, once: bool) -> bytes:
        """READs at ``at`` into a private buffer: up to ``n`` bytes (one READ
        if ``once``, else until ``n`` or the end of the file)."""
        buf = bytearray(n)
        pin = k.Buffer(buf, writable=True)
        got = 0
        while got < n:
            r = await fo.read_into(m, self.fd, pin.address + got, n - got, at + got, pin)
            got += r
            if once or r == 0:
                break
        del pin
        return bytes(buf) if got == n else bytes(buf[:got])

    async def _read_to_eof(self, m: UringIOManager, at: int) -> bytes:
        """Everything from ``at``: the first READ asks for one byte more
        than fstat says is there (as FileIO.readall), then more until 0."""
        chunks: list[bytes] = []
        want = max(os.fstat(self.fd).st_size - at, 0) + 1
        while True:
            data = await self._read_at(m, at, want, once=True)
            if not data:
                return b"".join(chunks)
            chunks.append(data)
            at += len(data)
            want = max(want, 64 * 1024)

    # ---- a BufferedReader: its shadow ----

    def _shadow_at(self, logical: int) -> UringFile[Any]:
        """The shadow BufferedReader, at ``logical`` (made again if the
        program moved its object)."""
        if self.shadow is None or self.shadow_at != logical:
            if self.shadow is not None:
                self.shadow.wrapped.close()
            st = os.fstat(self.fd)
            raw = _ShadowRaw(
                self.fd,
                self.raw.name,
                "rb",
                readable=True,
                writable=False,
                appending=False,
                closefd=False,
                blksize=st.st_blksize if st.st_blksize > 1 else io.DEFAULT_BUFFER_SIZE,
                size=st.st_size,
                pos=logical,
            )
            self.shadow = UringFile(io.BufferedReader(raw, self.bufsize), raw, self.bufsize)
            self.shadow_at = logical
        return self.shadow

    async def shadowed(self, name: str, *args: Any) -> Any:
        """``name(*args)`` of a BufferedReader, on its shadow: CPython's own
        BufferedReader (same buffer size, same position) over trio_uring's
        raw file, whose reads are READs; then the program's object is moved
        to where the shadow is."""
        async with self._lock:
            logical = self.check()
            if logical is None:
                return None
            shadow = self._shadow_at(logical)
            try:
                return await getattr(shadow, name)(*args)
            finally:
                self.shadow_at = int(shadow.wrapped.tell())
                if self.shadow_at != logical:
                    self.f.seek(self.shadow_at)
                self.pend_at = self.shadow_at

    def close_shadow(self) -> None:
        if self.shadow is not None:
            self.shadow.wrapped.close()
            self.shadow = None

    # ---- the calls ----

    async def _begin(self, m: UringIOManager, *, flush: bool) -> int | None:
        await self._lock.acquire()
        try:
            pos = self.check()
            if pos is not None and flush:
                await self.flush_pending(m)
            return pos
        except BaseException:
            self._lock.release()
            raise

    async def read(self, m: UringIOManager, size: int | None, kind: str) -> Any:
        """``read``, ``read1``: the bytes, or None if anyio's code must run."""
        if self.reader:
            return await self.shadowed(kind, size)
        once = not self.buffered or kind == "read1"
        n = -1 if size is None else size
        if kind == "read1" and n < 0:
            n = self.bufsize
        flush = self.writable and n != 0 and kind != "read1"
        pos = await self._begin(m, flush=flush)
        try:
            if pos is None:
                return None
            if n == 0:
                return b""
            data = await (self._read_to_eof(m, pos) if n < 0 else self._read_at(m, pos, n, once=once))
            self._moved(pos + len(data))
            return data
        finally:
            self._lock.release()

    async def readinto(self, m: UringIOManager, view: memoryview, kind: str) -> int | None:
        if self.reader:
            return await self.shadowed(kind, view)  # type: ignore[no-any-return]
        n = len(view)
        once = not self.buffered or kind == "readinto1"
        pos = await self._begin(m, flush=self.writable)
        try:
            if pos is None:
                return None
            data = await self._read_at(m, pos, n, once=once) if n else b""
            view[: len(data)] = data
            self._moved(pos + len(data))
            return len(data)
        finally:
            self._lock.release()

    async def readline(self, m: UringIOManager) -> bytes | None:
        if self.reader:
            return await self.shadowed("readline")  # type: ignore[no-any-return]
        pos = await self._begin(m, flush=self.writable)
        try:
            if pos is None:
                return None
            chunks: list[bytes] = []
            at, want = pos, _SCAN
            while True:
                data = await self._read_at(m, at, want, once=True)
                i = data.find(b"\n")
                if i >= 0:
                    chunks.append(data[: i + 1])
                    break
                chunks.append(data)
                if not data:
                    break
                at += len(data)
                want = min(2 * want, k.MAX_RW_COUNT)
            line = b"".join(chunks)
            self._moved(pos + len(line))
            return line
        finally:
            self._lock.release()

    async def readlines(self, m: UringIOManager) -> list[bytes] | None:
        if self.reader:
            return await self.shadowed("readlines")  # type: ignore[no-any-return]
        pos = await self._begin(m, flush=self.writable)
        try:
            if pos is None:
                return None
            data = await self._read_to_eof(m, pos)
            self._moved(pos + len(data))
            lines = data.split(b"\n")
            return [line + b"\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
        finally:
            self._lock.release()

    async def write(self, m: UringIOManager, data: memoryview) -> int | None:
        pos = await self._begin(m, flush=False)
        try:
            if pos is None:
                return None
            chunk = data.tobytes()
            if not self.buffered:
                if not chunk:
                    return 0
                n = await self._write_at(m, chunk, pos, len(chunk) - 1)
                if not self.appending:
                    self.f.seek(pos + n)
                return n
            largest = largest_buffered_write(self.bufsize)
            if len(self.pending) + len(chunk) <= self.bufsize and len(chunk) <= largest:
                # CPython buffers it (bufferedio.c, _io__Buffered_write_impl): no I/O
                self.f.write(chunk)
                self.pending += chunk
                return len(chunk)
            await self.flush_pending(m)
            # Too big for the buffer: written straight, until what is left fits.
            n = await self._write_at(m, chunk, self.pend_at, largest)
            error = self.error
            if n:
                self._resync(self.pend_at + n, b"")
            if error is not None:
                if isinstance(error, trio.Cancelled):
                    return n  # (Cancelled comes at the next checkpoint)
                raise error
            self.f.write(chunk[n:])  # the rest fits the empty buffer: no I/O
            self.pending += chunk[n:]
            return len(chunk)
        finally:
            self._lock.release()

    async def seek(self, m: UringIOManager, offset: int, whence: int) -> int | None:
        if self.reader:
            return await self.shadowed("seek", offset, whence)  # type: ignore[no-any-return]
        pos = await self._begin(m, flush=self.writable)
        try:
            if pos is None:
                return None
            at = int(self.f.seek(offset, whence))
            self.pend_at = at
            return at
        finally:
            self._lock.release()

    async def truncate(self, m: UringIOManager, size: int | None) -> int | None:
        pos = await self._begin(m, flush=self.buffered)
        try:
            if pos is None:
                return None
            length = pos if size is None else size
            if length >= 0 and m.kernel.has_op("FTRUNCATE"):
                await fo.truncate_fd(m, self.fd, length)
                return length
            return int(self.f.truncate(size))  # (its own error for a negative size)
        finally:
            self._lock.release()

    async def flush(self, m: UringIOManager) -> bool:
        pos = await self._begin(m, flush=self.writable)
        try:
            if pos is None:
                return False
            self.f.flush()  # (nothing left to write: no I/O)
            return True
        finally:
            self._lock.release()

    async def aclose(self, m: UringIOManager) -> None:
        """Shielded, as anyio's: the pending bytes, then the object's own
        close (close(2); the object owns the fd)."""
        with trio.CancelScope(shield=True):
            await self._lock.acquire()
            try:
                if self.writable and self.buffered and not self.f.closed and self.check() is not None:
                    try:
                        await self.flush_pending(m)
                    except OSError:
                        pass  # the object's close tries again, and raises what it gets
                self.close_shadow()
                self.f.close()
            finally:
                self._lock.release()

    def manager(self) -> UringIOManager | None:
        """The run's io_uring manager if this call is ours: a trio task on
        io_uring with READ and WRITE, and the object still in our hands."""
        if not self.own or sniffio.thread_local.name != "trio":
            return None
        return current_manager("READ", "WRITE")


# ---- the arguments: ours, the object's own error, or anyio's code ----------------------------

#: what to do with a call: "ring" (ours), "refuse" (the object's method
#: raises its own error without doing I/O), "anyio" (anyio's own code)
_Route = Literal["ring", "refuse", "anyio"]


def _int_arg(value: object, *, none: bool) -> _Route:
    if isinstance(value, int) or (none and value is None):
        return "ring"
    # An object with __index__ is taken by io: anyio's own code runs it.
    return "anyio" if hasattr(type(value), "__index__") else "refuse"


def writable_view(b: object) -> memoryview | None:
    """``b`` as a writable, contiguous byte view; None if io refuses it."""
    try:
        view = memoryview(b)  # type: ignore[arg-type]
    except TypeError:
        return None
    if view.readonly or not view.c_contiguous:
        return None
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


async def _sync(fn: Callable[..., Any], *args: Any) -> Any:
    """The object's own method, here, where it does no I/O: it raises its
    own error (a closed file, a mode without the method, an argument of the
    wrong type: io checks those first), or it is ``tell`` (an lseek) or a
    ``flush`` with nothing to write.  A checkpoint, as anyio's call is."""
    await checkpoint_if_cancelled()
    try:
        return fn(*args)
    finally:
        await cancel_shielded_checkpoint()


# ---- the anyio file class ----------------------------------------------------------------------


def make_plain_class(base: Any) -> type:
    """The ``anyio.AsyncFile`` subclass for ``wrap_file`` of a plain file."""

    class UringPlainFile(base):  # type: ignore[misc]
        """``anyio.AsyncFile`` over a plain ``open()`` binary file on a
        regular file: its I/O in the ring in a trio task on io_uring
        (:mod:`trio_uring._anyio_wrap`), anyio's own code elsewhere."""

        _plain: PlainFile

        def __init__(self, fp: Any, plain: PlainFile, *, limiter: Any = None) -> None:
            super().__init__(fp, limiter=limiter)
            self._plain = plain

        def _route(self, method: str, *, reading: bool = False, writing: bool = False) -> _Route:
            p = self._plain
            if p.f.closed or not hasattr(p.f, method):
                return "refuse" if hasattr(p.f, method) else "anyio"
            if (reading and not p.readable) or (writing and not p.writable):
                return "refuse"
            return "ring"

        async def _read(self, kind: str, size: Any) -> Any:
            p = self._plain
            m = p.manager()
            if m is not None:
                route = self._route(kind, reading=True)
                if route == "ring":
                    route = _int_arg(size, none=kind == "read")
                if route == "refuse":
                    return await _sync(getattr(p.f, kind), size)
                if route == "ring":
                    data = await p.read(m, size, kind)
                    if data is not None:
                        return data
            return await getattr(super(), kind)(size)

        async def read(self, size: int = -1) -> Any:
            return await self._read("read", size)

        async def read1(self, size: int = -1) -> bytes:
            return await self._read("read1", size)  # type: ignore[no-any-return]

        async def _readinto(self, kind: str, b: Any) -> Any:
            p = self._plain
            m = p.manager()
            if m is not None:
                route = self._route(kind, reading=True)
                view = writable_view(b) if route == "ring" else None
                if route == "refuse" or (route == "ring" and view is None):
                    return await _sync(getattr(p.f, kind), b)
                if route == "ring" and view is not None:
                    with view:
                        n = await p.readinto(m, view, kind)
                    if n is not None:
                        return n
            return await getattr(super(), kind)(b)

        async def readinto(self, b: Any) -> int:
            return await self._readinto("readinto", b)  # type: ignore[no-any-return]

        async def readinto1(self, b: Any) -> int:
            return await self._readinto("readinto1", b)  # type: ignore[no-any-return]

        async def readline(self) -> Any:
            p = self._plain
            m = p.manager()
            if m is not None:
                route = self._route("readline", reading=True)
                if route == "refuse":
                    return await _sync(p.f.readline)
                line = await p.readline(m) if route == "ring" else None
                if line is not None:
                    return line
            return await super().readline()

        async def readlines(self) -> list[Any]:
            p = self._plain
            m = p.manager()
            if m is not None:
                route = self._route("readlines", reading=True)
                if route == "refuse":
                    return await _sync(p.f.readlines)  # type: ignore[no-any-return]
                lines = await p.readlines(m) if route == "ring" else None
                if lines is not None:
                    return lines
            return await super().readlines()  # type: ignore[no-any-return]

        async def write(self, b: Any) -> int:
            p = self._plain
            m = p.manager()
            if m is not None:
                route = self._route("write", writing=True)
                try:
                    view = memoryview(b) if route == "ring" else None
                except TypeError:
                    view = None
                if view is not None and not view.c_contiguous:
                    view = None  # (io's own BufferError)
                if route == "refuse" or (route == "ring" and view is None):
                    return await _sync(p.f.write, b)  # type: ignore[no-any-return]
                if view is not None:
                    with view:
                        n = await p.write(m, view)
                    if n is not None:
                        return n
            return await super().write(b)  # type: ignore[no-any-return]

        async def writelines(self, lines: Any) -> None:
            p = self._plain
            if p.manager() is not None and self._route("writelines", writing=True) == "ring":
                # io's writelines calls write() for each: so do we, to the
                # end once started, as anyio's thread does.
                try:
                    it = iter(lines)
                except TypeError:
                    return await _sync(p.f.writelines, lines)  # type: ignore[no-any-return]
                await checkpoint_if_cancelled()
                with trio.CancelScope(shield=True):
                    for line in it:
                        await self.write(line)
                return None
            if p.manager() is not None and self._route("writelines", writing=True) == "refuse":
                return await _sync(p.f.writelines, lines)  # type: ignore[no-any-return]
            return await super().writelines(lines)  # type: ignore[no-any-return]

        async def truncate(self, size: int | None = None) -> int:
            p = self._plain
            m = p.manager()
            if m is not None:
                route = self._route("truncate", writing=True)
                if route == "ring":
                    route = _int_arg(size, none=True)
                    if route == "refuse" and p.buffered:
                        route = "anyio"  # (a buffered truncate writes its buffer before it looks at the size)
                if route == "refuse":
                    return await _sync(p.f.truncate, size)  # type: ignore[no-any-return]
                if route == "ring":
                    n = await p.truncate(m, size)
                    if n is not None:
                        return n
            return await super().truncate(size)  # type: ignore[no-any-return]

        async def seek(self, offset: int, whence: int | None = 0) -> int:
            p = self._plain
            m = p.manager()
            if m is not None:
                route = self._route("seek")
                if route == "ring":
                    route = _int_arg(offset, none=False)
                if route == "ring":
                    route = _int_arg(whence, none=False)
                if route == "ring" and whence not in _WHENCE:
                    route = "refuse"  # (its own error, before any write-back)
                if route == "refuse":
                    return await _sync(p.f.seek, offset, whence)  # type: ignore[no-any-return]
                if route == "ring":
                    at = await p.seek(m, offset, whence)  # type: ignore[arg-type]
                    if at is not None:
                        return at
            return await super().seek(offset, whence)  # type: ignore[no-any-return]

        async def tell(self) -> int:
            p = self._plain
            if p.manager() is not None:
                return await _sync(p.f.tell)  # type: ignore[no-any-return]  # (an lseek: no I/O)
            return await super().tell()  # type: ignore[no-any-return]

        async def flush(self) -> None:
            p = self._plain
            m = p.manager()
            if m is not None:
                if self._route("flush") == "refuse" or not (p.writable and p.buffered):
                    return await _sync(p.f.flush)  # type: ignore[no-any-return]  # (no I/O)
                if await p.flush(m):
                    return None
            return await super().flush()  # type: ignore[no-any-return]

        async def aclose(self) -> None:
            p = self._plain
            m = p.manager()
            if m is not None:
                return await p.aclose(m)
            return await super().aclose()  # type: ignore[no-any-return]

    UringPlainFile.__module__ = __name__
    UringPlainFile.__qualname__ = "UringPlainFile"
    return UringPlainFile


_WHENCE: Final = frozenset(
    w for w in (os.SEEK_SET, os.SEEK_CUR, os.SEEK_END, getattr(os, "SEEK_DATA", 0), getattr(os, "SEEK_HOLE", 0))
)
