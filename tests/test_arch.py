"""What depends on the machine, checked on the machine the suite runs on.

The struct layouts in ``_kernel`` and ``_sockaddr`` are written out as
``struct`` formats; here each is compared field by field with the same C
struct laid out by ctypes, which follows the running platform's C ABI (sizes,
alignment, padding, byte order).  The memory-ordering fence is checked to be
what docs/how-it-works.md ("Memory ordering") says it is on this machine, and
CQEs posted by io-wq workers on other CPUs while we reap are checked whole.
``make test-arm64`` runs this file on an emulated aarch64 machine.
"""

from __future__ import annotations

import ctypes
import os
import platform
import socket
import struct
import sys
import time

import pytest

from trio_uring import UnsupportedError, _sockaddr, _support
from trio_uring import _kernel as k
from trio_uring._bufring import BufRing
from trio_uring._ring import Ring

from .helpers import needs, needs_mode

MODES = ("defer", "coop", "plain")


class _Sqe(ctypes.Structure):
    # include/uapi/linux/io_uring.h, the unions by their first member
    _fields_ = [
        ("opcode", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("ioprio", ctypes.c_uint16),
        ("fd", ctypes.c_int32),
        ("off", ctypes.c_uint64),
        ("addr", ctypes.c_uint64),
        ("len", ctypes.c_uint32),
        ("op_flags", ctypes.c_uint32),
        ("user_data", ctypes.c_uint64),
        ("buf_index", ctypes.c_uint16),
        ("personality", ctypes.c_uint16),
        ("splice_fd_in", ctypes.c_int32),
        ("addr3", ctypes.c_uint64),
        ("pad2", ctypes.c_uint64),
    ]


class _Cqe(ctypes.Structure):
    _fields_ = [("user_data", ctypes.c_uint64), ("res", ctypes.c_int32), ("flags", ctypes.c_uint32)]


class _KernelTimespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_longlong)]


class _GeteventsArg(ctypes.Structure):
    _fields_ = [
        ("sigmask", ctypes.c_uint64),
        ("sigmask_sz", ctypes.c_uint32),
        ("min_wait_usec", ctypes.c_uint32),
        ("ts", ctypes.c_uint64),
    ]


class _Buf(ctypes.Structure):
    _fields_ = [("addr", ctypes.c_uint64), ("len", ctypes.c_uint32), ("bid", ctypes.c_uint16), ("resv", ctypes.c_uint16)]


class _BufReg(ctypes.Structure):
    _fields_ = [
        ("ring_addr", ctypes.c_uint64),
        ("ring_entries", ctypes.c_uint32),
        ("bgid", ctypes.c_uint16),
        ("flags", ctypes.c_uint16),
        ("min_left", ctypes.c_uint32),
        ("resv", ctypes.c_uint32 * 5),
    ]


class _Msghdr(ctypes.Structure):
    # <sys/socket.h>: the C library's struct, with its pointer and size_t
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Cmsghdr(ctypes.Structure):
    _fields_ = [("cmsg_len", ctypes.c_size_t), ("cmsg_level", ctypes.c_int), ("cmsg_type", ctypes.c_int)]


def _distinct_values(fmt: struct.Struct) -> tuple[int, ...]:
    """One value per field that no other field has, small enough for any of them."""
    return tuple(i + 1 for i, _ in enumerate(fmt.unpack(bytes(fmt.size))))


LAYOUTS = [
    pytest.param(k.SQE, _Sqe, id="io_uring_sqe"),
    pytest.param(k.CQE, _Cqe, id="io_uring_cqe"),
    pytest.param(k.TIMESPEC, _KernelTimespec, id="__kernel_timespec"),
    pytest.param(k.GETEVENTS_ARG, _GeteventsArg, id="io_uring_getevents_arg"),
    pytest.param(k.BUF, _Buf, id="io_uring_buf"),
    pytest.param(_sockaddr.IOVEC, _Iovec, id="iovec"),
]


@pytest.mark.parametrize(("fmt", "ctype"), LAYOUTS)
def test_struct_format_is_the_c_layout(fmt: struct.Struct, ctype: type[ctypes.Structure]) -> None:
    """Packed with our format, read back through this platform's C layout:
    every field lands where the C compiler puts it."""
    assert fmt.size == ctypes.sizeof(ctype)
    values = _distinct_values(fmt)
    c = ctype.from_buffer_copy(fmt.pack(*values))
    assert tuple(getattr(c, name) for name, *_ in ctype._fields_) == values


def test_buf_reg_layout() -> None:
    assert k.BUF_REG.size == ctypes.sizeof(_BufReg) == 40
    c = _BufReg.from_buffer_copy(k.BUF_REG.pack(1, 2, 3, 4, 5))
    assert (c.ring_addr, c.ring_entries, c.bgid, c.flags, c.min_left) == (1, 2, 3, 4, 5)
    # the provided-buffer ring's u16 tail overlays bufs[0].resv
    assert _Buf.resv.offset == k.BUF_RING_TAIL_OFFSET


def test_msghdr_and_cmsghdr_layouts() -> None:
    assert _sockaddr.MSGHDR.size == ctypes.sizeof(_Msghdr)
    assert _Msghdr.msg_controllen.offset == _sockaddr._CONTROLLEN_OFFSET
    assert _Msghdr.msg_flags.offset == _sockaddr._MSG_FLAGS_OFFSET
    values = _distinct_values(_sockaddr.MSGHDR)
    c = _Msghdr.from_buffer_copy(_sockaddr.MSGHDR.pack(*values))
    assert tuple(getattr(c, name) for name, _ in _Msghdr._fields_) == values
    assert _sockaddr._CMSGHDR.size == ctypes.sizeof(_Cmsghdr)
    c2 = _Cmsghdr.from_buffer_copy(_sockaddr._CMSGHDR.pack(1, 2, 3))
    assert (c2.cmsg_len, c2.cmsg_level, c2.cmsg_type) == (1, 2, 3)


def test_params_layout() -> None:
    assert ctypes.sizeof(k.Params) == 120
    assert k.Params.sq_off.offset == 40
    assert k.Params.cq_off.offset == 80


def test_this_python_is_what_the_layouts_assume() -> None:
    """check_machine refuses anything else; the run got here, so it must be
    LP64 little-endian."""
    _support.check_machine()
    assert struct.calcsize("P") == 8
    assert sys.byteorder == "little"
    assert ctypes.sizeof(ctypes.c_long) == 8


# ---- the memory-ordering fence ---------------------------------------------------


def test_fence_is_what_this_machine_needs() -> None:
    machine = platform.machine().lower()
    if machine in k.TSO_MACHINES:
        assert k.fence is None
    else:
        assert machine in k.FENCED_MACHINES
        assert k.fence is not None
        assert k.fence(k.MEMORY_ORDER_SEQ_CST) is None


_HINT_MASK, _HINT = 0xFFFFF01F, 0xD503201F  # HINT #n (NOP, BTI, PACIASP, ...)
_RET = 0xD65F03C0
#: DMB ISH / DSB ISH / DSB SY: the full barriers (smp_mb() is DMB ISH)
_FULL_BARRIERS = {0xD5033BBF, 0xD5033B9F, 0xD5033F9F}


@pytest.mark.skipif(platform.machine().lower() not in ("aarch64", "arm64"), reason="aarch64 machine code")
def test_aarch64_fence_is_a_full_barrier() -> None:
    """libatomic's atomic_thread_fence, read as machine code: a full DMB/DSB
    before its return (only hint instructions such as BTI may precede it)."""
    assert k.fence is not None
    address = ctypes.cast(k.fence, ctypes.c_void_p).value
    assert address
    words = struct.unpack("<8I", ctypes.string_at(address, 32))
    for word in words:
        if word & _HINT_MASK == _HINT:
            continue
        assert word in _FULL_BARRIERS, f"first instruction {word:#010x} is not a full barrier: {words}"
        break
    assert _RET in words


@pytest.mark.parametrize(
    ("machine", "byteorder", "fence", "refused"),
    [
        ("x86_64", "little", None, None),
        ("aarch64", "little", lambda order: None, None),
        ("aarch64", "little", None, "libatomic"),
        ("ppc64le", "little", None, "only shown correct on x86_64 and aarch64"),
        ("riscv64", "little", None, "only shown correct on x86_64 and aarch64"),
        ("s390x", "big", None, "64-bit little-endian"),
    ],
)
def test_check_machine(
    monkeypatch: pytest.MonkeyPatch, machine: str, byteorder: str, fence: object, refused: str | None
) -> None:
    monkeypatch.setattr(platform, "machine", lambda: machine)
    monkeypatch.setattr(sys, "byteorder", byteorder)
    monkeypatch.setattr(k, "fence", fence)
    monkeypatch.setattr(k, "FENCE_PROBLEM", None if fence else "libatomic.so.1: cannot open shared object file")
    if refused is None:
        _support.check_machine()
        return
    with pytest.raises(UnsupportedError) as info:
        _support.check_machine()
    assert info.value.cause == "architecture"
    assert refused in str(info.value)
    assert "fallback=True" in info.value.remedy
    if refused == "libatomic":
        assert "apt install libatomic1" in info.value.remedy


def test_find_fence() -> None:
    assert k.find_fence("x86_64") == (None, None)
    assert k.find_fence("ppc64le") == (None, None)  # refused by check_machine instead


# ---- CQEs and buffers shared with io-wq workers on other CPUs --------------------

#: A hang guard only: the loops below finish in well under a second natively.
_GUARD_SECONDS = 600


@pytest.mark.parametrize("mode", MODES)
def test_cqes_posted_by_io_wq_workers_are_read_whole(mode: str) -> None:
    """NOPs forced to io-wq (IOSQE_ASYNC) complete on worker threads; in coop
    and plain mode the worker posts the CQE itself, from its CPU, while we
    reap.  With a 16-entry CQ every slot is reused hundreds of times, so a CQE
    read before the kernel's write reached this CPU would show an earlier
    lap's user_data (a duplicate).  On x86_64 this passes by TSO; on a weakly
    ordered CPU it is what the fences in Ring._reap_cq are for."""
    needs_mode(mode)
    total, window = 4000, 8
    seen: set[int] = set()
    deadline = time.monotonic() + _GUARD_SECONDS
    with Ring(8, 16, mode=mode) as r:  # type: ignore[arg-type]
        sent = 0
        while len(seen) < total and time.monotonic() < deadline:
            while sent - len(seen) < window and sent < total:
                sent += 1
                r.prep_nop(sent, sqe_flags=k.IOSQE_ASYNC)
            r.submit_and_wait(1.0, 1)
            for user_data, res, _flags in r.reap():
                assert res == 0
                assert 1 <= user_data <= sent
                assert user_data not in seen, f"CQE {user_data} read twice (a stale slot)"
                seen.add(user_data)
    assert len(seen) == total


@pytest.mark.parametrize("mode", MODES)
def test_buffer_ring_shared_with_io_wq_workers(mode: str) -> None:
    """RECVs forced to io-wq pick provided buffers on worker threads while we
    recycle buffers into the same 4-slot ring; every datagram must arrive
    whole, in a buffer the ring was offering (the tail store is a release)."""
    needs_mode(mode)
    needs("buf_ring", "provided-buffer rings (5.19)")
    total, window = 600, 2
    page = os.sysconf("SC_PAGE_SIZE")
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    got: list[bytes] = []
    deadline = time.monotonic() + _GUARD_SECONDS
    with a, b, Ring(8, 16, mode=mode) as r:  # type: ignore[arg-type]
        br = BufRing(r.fd, bgid=7, entries=4, buf_size=64)
        try:
            # the kernel wants the ring page-aligned, at this machine's page size
            assert br._slots.address % page == 0
            sent = 0
            while len(got) < total and time.monotonic() < deadline:
                while sent - len(got) < window and sent < total:
                    a.send(b"%08d" % sent * 4)
                    r.prep(
                        k.IORING_OP.RECV,
                        sent,
                        b.fileno(),
                        0,
                        64,
                        sqe_flags=k.IOSQE_BUFFER_SELECT | k.IOSQE_ASYNC,
                        buf_index=7,
                    )
                    sent += 1
                r.submit_and_wait(1.0, 1)
                for _user_data, res, flags in r.reap():
                    assert res == 32, res
                    assert flags & k.IORING_CQE_F_BUFFER
                    bid = flags >> k.IORING_CQE_BUFFER_SHIFT
                    assert 0 <= bid < 4
                    got.append(br.take(bid, res))
        finally:
            br.close()
    assert sorted(got) == [b"%08d" % i * 4 for i in range(total)]


def test_report_names_the_memory_ordering() -> None:
    from trio_uring.__main__ import format_text, report

    data = report()
    assert data["machine"] == platform.machine()
    ordering = str(data["memory_ordering"])
    if platform.machine().lower() in k.TSO_MACHINES:
        assert ordering.startswith("TSO")
    else:
        assert ordering.startswith("atomic_thread_fence")
    assert data["io_uring"] == "usable"
    assert all(len(line) <= 88 for line in format_text(data).splitlines())
