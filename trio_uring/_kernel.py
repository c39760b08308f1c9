"""The io_uring kernel ABI: syscalls, constants, struct layouts and memory.

This is the only module in trio_uring that imports :mod:`ctypes`.  Everything
above it sees plain integers (addresses, fds, flags) and Python buffers.

Numbers come from the kernel's UAPI header ``include/uapi/linux/io_uring.h``
(liburing keeps a copy).  Opcodes and flags are never renumbered by the
kernel; whether an opcode *works* is asked of the kernel with
``IORING_REGISTER_PROBE``, never inferred from the version.

The rings are mapped with libc's ``mmap`` rather than Python's :mod:`mmap`
module: the latter ``dup()``\\ s the ring fd for every mapping and refuses to
close while a buffer export is alive (see uring-notes §6).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import struct
from collections.abc import Callable
from typing import Final

__all__ = [
    "IORING_OP",
    "OPCODE_NAMES",
    "Buffer",
    "Memory",
    "PageMemory",
    "Params",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "mmap_shared",
    "munmap",
]

# --- memory ordering (docs/how-it-works.md, "Memory ordering") -----------------
# Where the kernel writes a ring on another CPU while we read it, the CQ tail
# must be loaded with acquire and the CQ head (and a provided-buffer ring's
# tail) stored with release ordering (the comment opening io_uring/io_uring.c).
# x86_64 is TSO: its plain loads are acquires and its plain stores releases,
# so nothing is needed.  aarch64 is weakly ordered: there :data:`fence` is
# C11's atomic_thread_fence(memory_order_seq_cst), exported by libatomic (GCC's
# runtime library), which is ``dmb ish``: the kernel's smp_mb(), and how
# liburing's barrier.h built smp_load_acquire/smp_store_release on aarch64.

#: Machines whose plain aligned loads and stores already are acquire/release.
TSO_MACHINES: Final = ("x86_64", "amd64")
#: Weakly ordered machines trio_uring supports, by calling :data:`fence`.
FENCED_MACHINES: Final = ("aarch64", "arm64")
#: C11's memory_order_seq_cst, the argument of atomic_thread_fence.
MEMORY_ORDER_SEQ_CST: Final = 5


def find_fence(machine: str) -> tuple[Callable[[int], object] | None, str | None]:
    """``(atomic_thread_fence, None)`` on a weakly ordered machine we support,
    ``(None, None)`` where no fence is needed, ``(None, why)`` where none was
    found."""
    if machine in TSO_MACHINES or machine not in FENCED_MACHINES:
        return None, None
    name = ctypes.util.find_library("atomic") or "libatomic.so.1"
    try:
        lib = ctypes.CDLL(name)
        fn = lib.atomic_thread_fence
    except (OSError, AttributeError) as exc:
        return None, f"libatomic's atomic_thread_fence cannot be loaded ({exc})"
    # No argtypes: an int argument is passed as a C int, which is what the
    # function takes, and the call stays as cheap as ctypes calls get.
    fn.restype = None
    return fn, None


MACHINE: Final = platform.machine().lower()
#: ``fence(MEMORY_ORDER_SEQ_CST)`` where the machine needs one, else None.
fence, FENCE_PROBLEM = find_fence(MACHINE)


def memory_ordering() -> str:
    """How this machine gets the ring protocol's ordering, for the report."""
    if MACHINE in TSO_MACHINES:
        return "TSO: plain loads and stores, no fences"
    if fence is not None:
        return "atomic_thread_fence (libatomic) around the CQ tail/head and buffer-ring tail accesses"
    return f"unavailable: {FENCE_PROBLEM or 'no fence is known for ' + MACHINE}"


# --- syscalls (generic table: the same numbers on x86_64 and aarch64) -------

SYS_io_uring_setup: Final = 425
SYS_io_uring_enter: Final = 426
SYS_io_uring_register: Final = 427

_libc = ctypes.CDLL(None, use_errno=True)

# syscall(2) is variadic; declaring the argument types keeps 64-bit pointers
# intact.  One prototype per syscall so the hot path (enter) converts nothing
# it does not have to.
_setup = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long, ctypes.c_uint, ctypes.c_void_p, use_errno=True)(
    ("syscall", _libc)
)
_enter = ctypes.CFUNCTYPE(
    ctypes.c_long,
    ctypes.c_long,
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_uint,
    ctypes.c_uint,
    ctypes.c_void_p,
    ctypes.c_size_t,
    use_errno=True,
)(("syscall", _libc))
_register = ctypes.CFUNCTYPE(
    ctypes.c_long,
    ctypes.c_long,
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_void_p,
    ctypes.c_uint,
    use_errno=True,
)(("syscall", _libc))

_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_munmap = _libc.munmap
_munmap.restype = ctypes.c_int
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_madvise = _libc.madvise
_madvise.restype = ctypes.c_int
_madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

PROT_READ: Final = 1
PROT_WRITE: Final = 2
MAP_SHARED: Final = 0x01
MAP_PRIVATE: Final = 0x02
MAP_ANONYMOUS: Final = 0x20
MAP_POPULATE: Final = 0x8000
MAP_FAILED: Final = (1 << 64) - 1
MADV_DONTFORK: Final = 10


def _oserror(err: int, what: str) -> OSError:
    return OSError(err, f"{what}: {os.strerror(err)}")


def io_uring_setup(entries: int, params: Params) -> int:
    """Create a ring; return its fd (which the kernel opens O_CLOEXEC)."""
    fd = _setup(SYS_io_uring_setup, entries, ctypes.addressof(params))
    if fd < 0:
        err = ctypes.get_errno()
        raise _oserror(err, "io_uring_setup")
    return int(fd)


def io_uring_enter(fd: int, to_submit: int, min_complete: int, flags: int, arg: int, argsz: int) -> int:
    """io_uring_enter(2).  Returns the number of SQEs consumed; raises OSError."""
    ret = _enter(SYS_io_uring_enter, fd, to_submit, min_complete, flags, arg, argsz)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)


# The hot path: syscall(2) called without declared argument types, which
# halves the cost of a call (about 0.5 us against 1.1 us with argtypes, on
# the development VM).  ctypes then passes each Python int as a C int: in
# the six argument registers libffi sign-extends it to 64 bits, and the
# register arguments of io_uring_enter are small non-negative u32s (the
# syscall number, fd, counts, flags), so that is exact.  The seventh
# argument of syscall(2), ``argsz``, goes on the stack, where a C int
# leaves the upper half of the 8-byte slot undefined (the kernel then
# answered EINVAL): it is a prebuilt size_t, and the pointer a prebuilt
# c_void_p.  On aarch64 (AAPCS64) all seven go in registers x0-x6; the upper
# half of a register holding a C int is not specified there, but the
# kernel's syscall wrappers truncate the u32 arguments themselves, and the
# two 64-bit ones are the prebuilt objects above.
_syscall = ctypes.CDLL(None, use_errno=True).syscall
_syscall.restype = ctypes.c_long
_ARGSZ_GETEVENTS: Final = ctypes.c_size_t(24)


def pointer(address: int) -> object:
    """A prebuilt pointer argument for :func:`enter`."""
    return ctypes.c_void_p(address)


def enter(fd: int, to_submit: int, min_complete: int, flags: int, arg: object) -> int:
    """io_uring_enter(2) with an ``io_uring_getevents_arg`` (``arg`` from
    :func:`pointer`), fast.  Returns the number of SQEs consumed."""
    ret: int = _syscall(SYS_io_uring_enter, fd, to_submit, min_complete, flags, arg, _ARGSZ_GETEVENTS)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def io_uring_register(fd: int, opcode: int, arg: int, nr_args: int) -> int:
    ret = _register(SYS_io_uring_register, fd, opcode, arg, nr_args)
    if ret < 0:
        err = ctypes.get_errno()
        raise _oserror(err, f"io_uring_register({opcode})")
    return int(ret)


def mmap_shared(length: int, fd: int, offset: int) -> int:
    """Map ``length`` bytes of a ring fd at ``offset``; return the address."""
    addr = _mmap(None, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, offset)
    if addr is None or addr == MAP_FAILED:
        err = ctypes.get_errno()
        raise _oserror(err, "mmap of io_uring ring")
    # A forked child must never touch our rings (liburing does the same).
    _madvise(addr, length, MADV_DONTFORK)
    return int(addr)


def munmap(addr: int, length: int) -> None:
    if _munmap(addr, length) != 0:  # pragma: no cover - only on a bad address
        err = ctypes.get_errno()
        raise _oserror(err, "munmap")


def view(addr: int, length: int) -> memoryview:
    """A writable byte view of raw memory we own (a mapping or a Memory)."""
    return memoryview((ctypes.c_char * length).from_address(addr)).cast("B")


class Memory:
    """A zeroed block of C memory whose address never moves.

    Used for everything the kernel reads or writes through a pointer that we
    own: timespecs, sockaddrs, msghdrs, iovecs, the probe and getevents args.
    """

    __slots__ = ("_buf", "address", "size", "view")

    def __init__(self, size: int) -> None:
        self._buf = ctypes.create_string_buffer(size)
        self.size = size
        self.address: int = ctypes.addressof(self._buf)
        self.view: memoryview = memoryview(self._buf).cast("B")


class Buffer:
    """Pins a caller's buffer for the kernel and exposes its address.

    A writable buffer (bytearray, writable memoryview, array, mmap) is exported
    with ``from_buffer``: while this object lives, the exporter cannot be
    resized, so the kernel never writes into freed memory.  A read-only one
    (bytes, a read-only memoryview) is used in place when it is ``bytes`` and
    copied otherwise; a copy is what trio's own send paths make for such
    objects too.
    """

    __slots__ = ("_pin", "address", "length")

    def __init__(self, obj: object, *, writable: bool) -> None:
        if isinstance(obj, bytes):
            if writable:
                raise TypeError("a writable bytes-like object is required, not 'bytes'")
            self._pin: object = obj
            self.length = len(obj)
            self.address = ctypes.cast(ctypes.c_char_p(obj), ctypes.c_void_p).value or 0
            return
        mv = memoryview(obj)  # type: ignore[arg-type]  # raises TypeError for non-buffers
        if not mv.c_contiguous:
            raise BufferError("buffer must be C-contiguous")
        if mv.readonly:
            if writable:
                raise TypeError(f"a writable bytes-like object is required, not {type(obj).__name__!r}")
            # A read-only export (e.g. the memoryview slices SocketStream.send_all
            # passes): pinned through the buffer protocol, not copied.
            ro = _ReadOnlyPin(mv)
            self._pin = ro
            self.length = ro.length
            self.address = ro.address
            return
        nbytes = mv.nbytes
        if nbytes == 0:
            self._pin = None
            self.length = 0
            self.address = 0
            return
        flat = mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv
        pin = (ctypes.c_char * nbytes).from_buffer(flat)
        self._pin = pin
        self.length = nbytes
        self.address = ctypes.addressof(pin)


class _PyBuffer(ctypes.Structure):
    """CPython's ``Py_buffer`` (Include/pybuffer.h), 80 bytes on 64-bit."""

    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


_PyObject_GetBuffer = ctypes.pythonapi.PyObject_GetBuffer
_PyObject_GetBuffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_PyObject_GetBuffer.restype = ctypes.c_int
_PyBuffer_Release = ctypes.pythonapi.PyBuffer_Release
_PyBuffer_Release.argtypes = [ctypes.POINTER(_PyBuffer)]
_PyBuffer_Release.restype = None
_PyBUF_SIMPLE: Final = 0


class _ReadOnlyPin:
    """A buffer export held open: the exporter cannot release or resize the
    memory until this object is gone.  ctypes' ``from_buffer`` refuses
    read-only buffers, so this goes through ``PyObject_GetBuffer``."""

    __slots__ = ("_view", "address", "length")

    def __init__(self, obj: object) -> None:
        view = _PyBuffer()
        if _PyObject_GetBuffer(obj, ctypes.byref(view), _PyBUF_SIMPLE) != 0:  # pragma: no cover
            raise BufferError("cannot export the buffer")
        self._view: _PyBuffer | None = view
        self.address = int(view.buf or 0)
        self.length = int(view.len)

    def __del__(self) -> None:
        view, self._view = self._view, None
        if view is not None:
            _PyBuffer_Release(ctypes.byref(view))


class PageMemory:
    """Zeroed, page-aligned anonymous memory (``mmap(MAP_ANONYMOUS)``), as a
    provided-buffer ring requires.  Pages count towards RSS only once
    touched.  Freed by :meth:`close` (or when collected)."""

    __slots__ = ("address", "size", "view")

    def __init__(self, size: int) -> None:
        addr = _mmap(None, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if addr is None or addr == MAP_FAILED:
            err = ctypes.get_errno()
            raise _oserror(err, "mmap of buffer memory")
        _madvise(addr, size, MADV_DONTFORK)
        self.address: int = int(addr)
        self.size = size
        self.view: memoryview = view(self.address, size)

    def close(self) -> None:
        if self.address:
            self.view.release()
            munmap(self.address, self.size)
            self.address = 0

    def __del__(self) -> None:
        self.close()


# --- io_uring_params and the ring offsets ------------------------------------


class _SqringOffsets(ctypes.Structure):
    _fields_ = [
        ("head", ctypes.c_uint32),
        ("tail", ctypes.c_uint32),
        ("ring_mask", ctypes.c_uint32),
        ("ring_entries", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("dropped", ctypes.c_uint32),
        ("array", ctypes.c_uint32),
        ("resv1", ctypes.c_uint32),
        ("user_addr", ctypes.c_uint64),
    ]


class _CqringOffsets(ctypes.Structure):
    _fields_ = [
        ("head", ctypes.c_uint32),
        ("tail", ctypes.c_uint32),
        ("ring_mask", ctypes.c_uint32),
        ("ring_entries", ctypes.c_uint32),
        ("overflow", ctypes.c_uint32),
        ("cqes", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("resv1", ctypes.c_uint32),
        ("user_addr", ctypes.c_uint64),
    ]


class Params(ctypes.Structure):
    """struct io_uring_params (120 bytes)."""

    _fields_ = [
        ("sq_entries", ctypes.c_uint32),
        ("cq_entries", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("sq_thread_cpu", ctypes.c_uint32),
        ("sq_thread_idle", ctypes.c_uint32),
        ("features", ctypes.c_uint32),
        ("wq_fd", ctypes.c_uint32),
        ("resv", ctypes.c_uint32 * 3),
        ("sq_off", _SqringOffsets),
        ("cq_off", _CqringOffsets),
    ]


assert ctypes.sizeof(Params) == 120

# --- layouts packed with struct ----------------------------------------------

#: struct io_uring_sqe, 64 bytes: opcode, flags, ioprio, fd, off/addr2,
#: addr, len, op_flags, user_data, buf_index/buf_group, personality,
#: splice_fd_in/file_index, addr3, pad2.
SQE: Final = struct.Struct("<BBHiQQIIQHHiQQ")
SQE_SIZE: Final = 64
#: struct io_uring_cqe, 16 bytes: user_data, res, flags.
CQE: Final = struct.Struct("<QiI")
CQE_SIZE: Final = 16
#: struct __kernel_timespec
TIMESPEC: Final = struct.Struct("<qq")
#: struct io_uring_getevents_arg: sigmask, sigmask_sz, min_wait_usec, ts
GETEVENTS_ARG: Final = struct.Struct("<QIIQ")

assert SQE.size == SQE_SIZE
assert CQE.size == CQE_SIZE
assert GETEVENTS_ARG.size == 24

# mmap offsets
IORING_OFF_SQ_RING: Final = 0
IORING_OFF_CQ_RING: Final = 0x8000000
IORING_OFF_SQES: Final = 0x10000000

# --- setup flags ---------------------------------------------------------------
IORING_SETUP_IOPOLL: Final = 1 << 0
IORING_SETUP_SQPOLL: Final = 1 << 1
IORING_SETUP_CQSIZE: Final = 1 << 3
IORING_SETUP_CLAMP: Final = 1 << 4
IORING_SETUP_SUBMIT_ALL: Final = 1 << 7
IORING_SETUP_COOP_TASKRUN: Final = 1 << 8
IORING_SETUP_TASKRUN_FLAG: Final = 1 << 9
IORING_SETUP_SINGLE_ISSUER: Final = 1 << 12
IORING_SETUP_DEFER_TASKRUN: Final = 1 << 13
IORING_SETUP_NO_SQARRAY: Final = 1 << 16

SETUP_FLAG_NAMES: Final = {
    IORING_SETUP_CQSIZE: "CQSIZE",
    IORING_SETUP_CLAMP: "CLAMP",
    IORING_SETUP_SUBMIT_ALL: "SUBMIT_ALL",
    IORING_SETUP_COOP_TASKRUN: "COOP_TASKRUN",
    IORING_SETUP_TASKRUN_FLAG: "TASKRUN_FLAG",
    IORING_SETUP_SINGLE_ISSUER: "SINGLE_ISSUER",
    IORING_SETUP_DEFER_TASKRUN: "DEFER_TASKRUN",
    IORING_SETUP_NO_SQARRAY: "NO_SQARRAY",
}

# --- features ------------------------------------------------------------------
FEATURE_NAMES: Final = (
    "SINGLE_MMAP",
    "NODROP",
    "SUBMIT_STABLE",
    "RW_CUR_POS",
    "CUR_PERSONALITY",
    "FAST_POLL",
    "POLL_32BITS",
    "SQPOLL_NONFIXED",
    "EXT_ARG",
    "NATIVE_WORKERS",
    "RSRC_TAGS",
    "CQE_SKIP",
    "LINKED_FILE",
    "REG_REG_RING",
    "RECVSEND_BUNDLE",
    "MIN_TIMEOUT",
    "RW_ATTR",
    "NO_IOWAIT",
)
IORING_FEAT_SINGLE_MMAP: Final = 1 << 0
IORING_FEAT_NODROP: Final = 1 << 1
IORING_FEAT_SUBMIT_STABLE: Final = 1 << 2
IORING_FEAT_FAST_POLL: Final = 1 << 5
IORING_FEAT_EXT_ARG: Final = 1 << 8
IORING_FEAT_CQE_SKIP: Final = 1 << 11

# --- enter flags -------------------------------------------------------------------
IORING_ENTER_GETEVENTS: Final = 1
IORING_ENTER_EXT_ARG: Final = 8

# --- register opcodes ------------------------------------------------------------
IORING_REGISTER_PROBE: Final = 8
IORING_REGISTER_PBUF_RING: Final = 22
IORING_UNREGISTER_PBUF_RING: Final = 23
#: struct io_uring_buf_reg: ring_addr, ring_entries, bgid, flags, min_left, resv[5]
BUF_REG: Final = struct.Struct("<QIHHI20x")
#: struct io_uring_buf: addr, len, bid, resv (the ring's u16 tail overlays
#: bufs[0].resv, at byte 14)
BUF: Final = struct.Struct("<QIHH")
BUF_RING_TAIL: Final = struct.Struct("<H")
BUF_RING_TAIL_OFFSET: Final = 14
IO_URING_OP_SUPPORTED: Final = 1

# --- SQE flags -----------------------------------------------------------------------
IOSQE_FIXED_FILE: Final = 1 << 0
IOSQE_IO_DRAIN: Final = 1 << 1
IOSQE_IO_LINK: Final = 1 << 2
IOSQE_ASYNC: Final = 1 << 4
IOSQE_BUFFER_SELECT: Final = 1 << 5
IOSQE_CQE_SKIP_SUCCESS: Final = 1 << 6

# --- CQE flags -------------------------------------------------------------------------
IORING_CQE_F_BUFFER: Final = 1 << 0
IORING_CQE_F_MORE: Final = 1 << 1
IORING_CQE_F_SOCK_NONEMPTY: Final = 1 << 2
IORING_CQE_F_NOTIF: Final = 1 << 3
IORING_CQE_BUFFER_SHIFT: Final = 16

# --- SQ ring flags ---------------------------------------------------------------------
IORING_SQ_NEED_WAKEUP: Final = 1 << 0
IORING_SQ_CQ_OVERFLOW: Final = 1 << 1
IORING_SQ_TASKRUN: Final = 1 << 2

# --- per-op flags --------------------------------------------------------------------------
IORING_POLL_ADD_MULTI: Final = 1 << 0  # in sqe.len
IORING_ASYNC_CANCEL_ALL: Final = 1 << 0
IORING_ASYNC_CANCEL_FD: Final = 1 << 1
IORING_ASYNC_CANCEL_ANY: Final = 1 << 2
IORING_TIMEOUT_ABS: Final = 1 << 0
IORING_ACCEPT_MULTISHOT: Final = 1 << 0  # in sqe.ioprio
IORING_RECV_MULTISHOT: Final = 1 << 1  # in sqe.ioprio

# poll(2) event bits
POLLIN: Final = 0x001
POLLPRI: Final = 0x002
POLLOUT: Final = 0x004
POLLERR: Final = 0x008
POLLHUP: Final = 0x010
POLLRDHUP: Final = 0x2000

# --- opcodes ---------------------------------------------------------------------------
OPCODE_NAMES: Final = (
    "NOP",
    "READV",
    "WRITEV",
    "FSYNC",
    "READ_FIXED",
    "WRITE_FIXED",
    "POLL_ADD",
    "POLL_REMOVE",
    "SYNC_FILE_RANGE",
    "SENDMSG",
    "RECVMSG",
    "TIMEOUT",
    "TIMEOUT_REMOVE",
    "ACCEPT",
    "ASYNC_CANCEL",
    "LINK_TIMEOUT",
    "CONNECT",
    "FALLOCATE",
    "OPENAT",
    "CLOSE",
    "FILES_UPDATE",
    "STATX",
    "READ",
    "WRITE",
    "FADVISE",
    "MADVISE",
    "SEND",
    "RECV",
    "OPENAT2",
    "EPOLL_CTL",
    "SPLICE",
    "PROVIDE_BUFFERS",
    "REMOVE_BUFFERS",
    "TEE",
    "SHUTDOWN",
    "RENAMEAT",
    "UNLINKAT",
    "MKDIRAT",
    "SYMLINKAT",
    "LINKAT",
    "MSG_RING",
    "FSETXATTR",
    "SETXATTR",
    "FGETXATTR",
    "GETXATTR",
    "SOCKET",
    "URING_CMD",
    "SEND_ZC",
    "SENDMSG_ZC",
    "READ_MULTISHOT",
    "WAITID",
    "FUTEX_WAIT",
    "FUTEX_WAKE",
    "FUTEX_WAITV",
    "FIXED_FD_INSTALL",
    "FTRUNCATE",
    "BIND",
    "LISTEN",
    "RECV_ZC",
    "EPOLL_WAIT",
    "READV_FIXED",
    "WRITEV_FIXED",
    "PIPE",
    "NOP128",
    "URING_CMD128",
)


class _Opcodes:
    """``IORING_OP.RECV == 27`` and so on, generated from :data:`OPCODE_NAMES`."""

    def __init__(self) -> None:
        for number, name in enumerate(OPCODE_NAMES):
            setattr(self, name, number)

    def __getattr__(self, name: str) -> int:  # pragma: no cover - typo guard
        raise AttributeError(f"no io_uring opcode named {name!r}")


IORING_OP: Final = _Opcodes()


def opcode_number(name: str) -> int:
    try:
        return OPCODE_NAMES.index(name.upper())
    except ValueError:
        raise ValueError(f"unknown io_uring opcode {name!r}") from None


# Results that mean "the operation was interrupted before it did anything":
# -ECANCELED after ASYNC_CANCEL, -EINTR, and the -ERESTART* family, which the
# kernel can leak out of an io-wq worker that was cancelled mid-wait
# (uring-notes §4: a cancelled SPLICE completed with res = -512).
ERESTARTSYS: Final = 512
ERESTARTNOINTR: Final = 513
ERESTARTNOHAND: Final = 514
INTERRUPTED: Final = frozenset({errno.ECANCELED, errno.EINTR, ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND})


# ---- file operations (issue 4) ------------------------------------------------
# <fcntl.h>, <linux/stat.h>, <linux/fs.h>, <linux/falloc.h> and io_uring.h.

#: ``dirfd`` meaning "relative to the current directory" (openat(2)).
AT_FDCWD: Final = -100
AT_SYMLINK_NOFOLLOW: Final = 0x100
#: unlinkat(2): remove a directory, as rmdir(2).
AT_REMOVEDIR: Final = 0x200
#: linkat(2): follow a symlink given as the source.
AT_SYMLINK_FOLLOW: Final = 0x400
#: statx(2) on ``dirfd`` itself when the path is "".
AT_EMPTY_PATH: Final = 0x1000
#: statx(2): do what stat(2) does about synchronising with a remote server.
AT_STATX_SYNC_AS_STAT: Final = 0
#: statx(2) mask: everything stat(2) returns.
STATX_BASIC_STATS: Final = 0x7FF
#: sizeof(struct statx): the kernel writes up to this much.
STATX_SIZE: Final = 256
#: struct statx, the part os.stat_result needs (x86_64 and aarch64 alike):
#: mask, blksize, attributes, nlink, uid, gid, mode (+pad), ino, size, blocks,
#: attributes_mask, then the atime, btime, ctime and mtime statx_timestamps
#: {s64 sec, u32 nsec, s32 pad}, then rdev_major/minor and dev_major/minor.
STATX: Final = struct.Struct("<IIQIIIH2xQQQQqI4xqI4xqI4xqI4xIIII")
assert STATX.size == 144

#: IORING_OP_FSYNC: sync data only, as fdatasync(2) (in ``fsync_flags``).
IORING_FSYNC_DATASYNC: Final = 1

#: splice(2) flags.
SPLICE_F_MOVE: Final = 1
SPLICE_F_NONBLOCK: Final = 2
SPLICE_F_MORE: Final = 4

#: renameat2(2) flags.
RENAME_NOREPLACE: Final = 1
RENAME_EXCHANGE: Final = 2
RENAME_WHITEOUT: Final = 4

#: fallocate(2) modes.
FALLOC_FL_KEEP_SIZE: Final = 0x01
FALLOC_FL_PUNCH_HOLE: Final = 0x02
FALLOC_FL_COLLAPSE_RANGE: Final = 0x08
FALLOC_FL_ZERO_RANGE: Final = 0x10
FALLOC_FL_INSERT_RANGE: Final = 0x20

#: The kernel moves at most this many bytes per read/write (MAX_RW_COUNT,
#: INT_MAX rounded down to a page); a larger request is a short transfer.
MAX_RW_COUNT: Final = 0x7FFFF000


# --- prctl(2), for trio_uring.workers (not io_uring) ------------------------------

PR_SET_PDEATHSIG: Final = 1

_prctl = _libc.prctl
_prctl.restype = ctypes.c_int
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def set_parent_death_signal(signum: int) -> None:
    """``prctl(PR_SET_PDEATHSIG, signum)``: the kernel sends ``signum`` to this
    process when the *thread* that created it exits (prctl(2)); cleared by a
    fork in the child, kept across execve (unless set-user-ID)."""
    if _prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise _oserror(err, "prctl(PR_SET_PDEATHSIG)")
