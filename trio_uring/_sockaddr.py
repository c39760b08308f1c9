"""The C structures of the socket calls, written and read with :mod:`struct`:
``struct sockaddr_*``, ``struct msghdr`` / ``struct iovec`` and ancillary
data (``struct cmsghdr``), in the formats the stdlib's socket methods use.

The kernel reads and writes these through pointers until an operation's
final CQE, so they always live in a :class:`_kernel.Memory` that the
operation keeps (uring-notes §5).  Layouts are LP64 little-endian, x86_64's
and aarch64's alike (``_support.check_machine`` refuses anything else;
tests/test_arch.py compares them with the platform's C layout).
"""

from __future__ import annotations

import errno
import operator
import os
import socket
import struct
from collections.abc import Iterable
from typing import Any, Final

from . import _kernel as k
from ._pyerrors import address_refused, socket_refuses

__all__ = [
    "IOVEC",
    "MSGHDR",
    "SOCKADDR_MAX",
    "MsgMemory",
    "pack_sockaddr",
    "parse_ancillary",
    "parse_sockaddr",
]

# struct msghdr (56 bytes): msg_name, msg_namelen (+pad), msg_iov,
# msg_iovlen, msg_control, msg_controllen, msg_flags (+pad).
MSGHDR: Final = struct.Struct("<QI4xQQQQi4x")
_NAMELEN: Final = struct.Struct("<I")
_NAMELEN_OFFSET: Final = 8
_CONTROLLEN: Final = struct.Struct("<Q")
_CONTROLLEN_OFFSET: Final = 40
_MSG_FLAGS: Final = struct.Struct("<i")
_MSG_FLAGS_OFFSET: Final = 48
# struct iovec: iov_base, iov_len
IOVEC: Final = struct.Struct("<QQ")
# struct cmsghdr: cmsg_len (size_t), cmsg_level, cmsg_type; data at CMSG_LEN(0)
_CMSGHDR: Final = struct.Struct("<Qii")
_CMSG_LEN0: Final = _CMSGHDR.size
assert MSGHDR.size == 56
assert socket.CMSG_LEN(0) == _CMSG_LEN0
# sizeof(struct sockaddr_storage)
SOCKADDR_MAX: Final = 128
# offsetof(struct sockaddr_un, sun_path) and sizeof(sun_path)
_SUN_PATH_OFFSET: Final = 2
_SUN_PATH_MAX: Final = 108
# The kernel transfers at most MAX_RW_COUNT bytes per call; iov_len is fine
# with more, sqe.len (a u32) is not.
MAX_LEN: Final = 0x7FFFF000


def _cmsg_align(n: int) -> int:
    return (n + 7) & ~7


# ---- sockaddrs ------------------------------------------------------------------------


def pack_sockaddr(family: int, address: Any, buf: memoryview, method: str = "connect") -> int:
    """Write a resolved ``address`` as a ``struct sockaddr_*`` into ``buf``;
    return its length.  Raises what the stdlib's ``socket.<method>`` raises
    for a bad address."""
    if family == socket.AF_UNIX:
        path = os.fsencode(address)
        abstract = path[:1] == b"\0"
        if len(path) > _SUN_PATH_MAX or (not abstract and len(path) >= _SUN_PATH_MAX):
            raise OSError("AF_UNIX path too long")  # the stdlib's error: no errno
        struct.pack_into("<H", buf, 0, socket.AF_UNIX)
        buf[_SUN_PATH_OFFSET : _SUN_PATH_OFFSET + len(path)] = path
        return _SUN_PATH_OFFSET + len(path)
    if not isinstance(address, tuple):
        raise address_refused(
            method, family, address, TypeError(f"address must be a tuple, not {type(address).__name__!r}")
        )
    host, port, *rest = address
    if not isinstance(port, int):
        raise address_refused(method, family, address, TypeError(f"port must be an int, not {type(port).__name__!r}"))
    if not 0 <= port <= 0xFFFF:
        raise address_refused(method, family, address, OverflowError("port must be 0-65535."))
    if family == socket.AF_INET:
        struct.pack_into("<H", buf, 0, socket.AF_INET)
        struct.pack_into(">H4s8x", buf, 2, port, socket.inet_pton(socket.AF_INET, host))
        return 16
    if family != socket.AF_INET6:
        raise OSError(errno.EAFNOSUPPORT, f"address family {family!r} is not supported")
    flowinfo = int(rest[0]) if rest else 0
    scope_id = int(rest[1]) if len(rest) > 1 else 0
    if not 0 <= flowinfo <= 0xFFFFF:
        raise address_refused(method, family, address, OverflowError("flowinfo must be 0-1048575."))
    struct.pack_into("<H", buf, 0, socket.AF_INET6)
    struct.pack_into(">HI16s", buf, 2, port, flowinfo, socket.inet_pton(socket.AF_INET6, host))
    struct.pack_into("<I", buf, 24, scope_id)
    return 28


def parse_sockaddr(buf: memoryview, length: int) -> Any:
    """A ``struct sockaddr`` as the stdlib returns it (``None`` when empty)."""
    if length <= 0:
        return None
    length = min(length, len(buf))
    (family,) = struct.unpack_from("<H", buf, 0)
    if family == socket.AF_INET and length >= 16:
        (port,) = struct.unpack_from(">H", buf, 2)
        return (socket.inet_ntop(socket.AF_INET, bytes(buf[4:8])), port)
    if family == socket.AF_INET6 and length >= 24:
        port, flowinfo = struct.unpack_from(">HI", buf, 2)
        scope_id = struct.unpack_from("<I", buf, 24)[0] if length >= 28 else 0
        return (socket.inet_ntop(socket.AF_INET6, bytes(buf[8:24])), port, flowinfo, scope_id)
    if family == socket.AF_UNIX:
        path = bytes(buf[_SUN_PATH_OFFSET:length])
        if path[:1] == b"\0":
            return path  # Linux abstract namespace
        return os.fsdecode(path.split(b"\0", 1)[0])
    return bytes(buf[:length])


# ---- msghdr ---------------------------------------------------------------------------


class MsgMemory:
    """One ``struct msghdr`` with its iovecs, sockaddr and control buffer in a
    single block of C memory, plus the pinned data buffers it points at.

    Layout: msghdr | iovec[n] | sockaddr_storage | control.
    """

    __slots__ = ("control_len", "mem", "name_off", "pins")

    def __init__(self, pins: list[k.Buffer], control_len: int = 0) -> None:
        self.pins = pins
        iov_off = MSGHDR.size
        self.name_off = iov_off + IOVEC.size * len(pins)
        control_off = self.name_off + SOCKADDR_MAX
        self.control_len = control_len
        self.mem = mem = k.Memory(control_off + control_len)
        base = mem.address
        for i, pin in enumerate(pins):
            IOVEC.pack_into(mem.view, iov_off + i * IOVEC.size, pin.address, pin.length)
        MSGHDR.pack_into(
            mem.view,
            0,
            base + self.name_off,
            SOCKADDR_MAX,
            base + iov_off,
            len(pins),
            base + control_off if control_len else 0,
            control_len,
            0,
        )

    @property
    def address(self) -> int:
        return self.mem.address

    def set_name(self, family: int, address: Any) -> None:
        """Name the destination (sendmsg/sendto); ``None``: no destination."""
        if address is None:
            namelen = 0
            _NAMELEN.pack_into(self.mem.view, _NAMELEN_OFFSET, 0)
            struct.pack_into("<Q", self.mem.view, 0, 0)
            return
        namelen = pack_sockaddr(family, address, self.mem.view[self.name_off : self.name_off + SOCKADDR_MAX])
        _NAMELEN.pack_into(self.mem.view, _NAMELEN_OFFSET, namelen)

    def set_control(self, ancdata: Iterable[tuple[int, int, Any]]) -> None:
        """Write ancillary data as cmsghdrs into the control buffer (sized by
        :func:`control_space`)."""
        view = self.mem.view
        off = self.name_off + SOCKADDR_MAX
        for level, type_, data in ancdata:
            payload = bytes(memoryview(data))
            _CMSGHDR.pack_into(view, off, _CMSG_LEN0 + len(payload), level, type_)
            view[off + _CMSG_LEN0 : off + _CMSG_LEN0 + len(payload)] = payload
            off += _cmsg_align(_CMSG_LEN0 + len(payload))

    def result_address(self) -> Any:
        (namelen,) = _NAMELEN.unpack_from(self.mem.view, _NAMELEN_OFFSET)
        return parse_sockaddr(self.mem.view[self.name_off : self.name_off + SOCKADDR_MAX], namelen)

    def result_flags(self) -> int:
        return int(_MSG_FLAGS.unpack_from(self.mem.view, _MSG_FLAGS_OFFSET)[0])

    def result_ancillary(self) -> list[tuple[int, int, bytes]]:
        (controllen,) = _CONTROLLEN.unpack_from(self.mem.view, _CONTROLLEN_OFFSET)
        start = self.name_off + SOCKADDR_MAX
        return parse_ancillary(self.mem.view[start : start + min(controllen, self.control_len)])


_C_INT_MAX: Final = (1 << 31) - 1


def c_int(value: object) -> int:
    """``value`` as a C int, with the stdlib's errors (TypeError,
    OverflowError); a value that does not fit would otherwise fail inside
    ``struct.pack_into``, after a request was registered."""
    n = operator.index(value)  # type: ignore[arg-type]
    if n > _C_INT_MAX:
        raise OverflowError("signed integer is greater than maximum")
    if n < -_C_INT_MAX - 1:
        raise OverflowError("signed integer is less than minimum")
    return n


def control_space(ancdata: Iterable[tuple[int, int, Any]]) -> tuple[list[tuple[int, int, Any]], int]:
    """Check ancillary data as ``socket.sendmsg`` does; return it as a list
    with the control-buffer size it needs."""
    items = []
    space = 0
    for item in ancdata:
        try:
            level, type_, data = item
            level = c_int(level)
            type_ = c_int(type_)
        except (TypeError, ValueError, OverflowError):
            raise socket_refuses("sendmsg", [b""], [item]) from None  # the stdlib's words for this item
        n = memoryview(data).nbytes
        items.append((level, type_, data))
        space += socket.CMSG_SPACE(n)
    return items, space


def parse_ancillary(control: memoryview) -> list[tuple[int, int, bytes]]:
    """cmsghdrs as ``socket.recvmsg`` returns them: ``(level, type, data)``,
    data cut at the end of the buffer if the kernel truncated it."""
    items = []
    off = 0
    end = len(control)
    while off + _CMSG_LEN0 <= end:
        cmsg_len, level, type_ = _CMSGHDR.unpack_from(control, off)
        if cmsg_len < _CMSG_LEN0:
            break
        data_end = min(off + cmsg_len, end)
        items.append((level, type_, bytes(control[off + _CMSG_LEN0 : data_end])))
        off += _cmsg_align(cmsg_len)
    return items
