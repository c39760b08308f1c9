"""A provided-buffer ring (``IORING_REGISTER_PBUF_RING``, Linux 5.19).

Why
---

A RECV needs a buffer.  If the task that calls ``recv(65536)`` supplies it,
the buffer is pinned for as long as the task waits, and 5,000 idle
connections parked in ``receive_some`` pin 5,000 x 64 KiB.  With
``IOSQE_BUFFER_SELECT`` the kernel instead picks a buffer from a ring we
share with it *when data arrives*; a parked RECV owns no memory at all
(io_uring_register_buf_ring(3)).

How the ring works
------------------

``entries`` (a power of two) 16-byte ``struct io_uring_buf`` slots live in
page-aligned memory; the kernel consumes them from its head, we append at
our tail and publish the tail (a ``u16`` overlaying ``bufs[0].resv``).  A
completion that used a buffer carries ``IORING_CQE_F_BUFFER`` and the buffer
id in the upper 16 bits of its flags; from that CQE until we append the id
again, the buffer is ours (uring-notes §5): copy the data out, then
:meth:`recycle`.  When the ring runs dry the RECV fails with ``-ENOBUFS``
and the data stays in the socket; callers retry with a buffer of their own.

This module knows nothing of trio, like :mod:`._ring`.
"""

from __future__ import annotations

from typing import Final

from . import _kernel as k

__all__ = ["BufRing"]

_BUF: Final = k.BUF
_TAIL: Final = k.BUF_RING_TAIL
_TAIL_OFFSET: Final = k.BUF_RING_TAIL_OFFSET


class BufRing:
    """``entries`` buffers of ``buf_size`` bytes, registered as group ``bgid``
    of the io_uring instance ``ring_fd``."""

    def __init__(self, ring_fd: int, bgid: int, entries: int = 128, buf_size: int = 65536) -> None:
        if entries <= 0 or entries & (entries - 1) or entries > 32768:
            raise ValueError("entries must be a power of two, at most 32768")
        self.ring_fd = ring_fd
        self.bgid = bgid
        self.entries = entries
        self.buf_size = buf_size
        self._mask = entries - 1
        self._slots = k.PageMemory(entries * _BUF.size)
        self._data = k.PageMemory(entries * buf_size)
        self._tail = 0
        reg = k.Memory(k.BUF_REG.size)
        k.BUF_REG.pack_into(reg.view, 0, self._slots.address, entries, bgid, 0, 0)
        try:
            k.io_uring_register(ring_fd, k.IORING_REGISTER_PBUF_RING, reg.address, 1)
        except BaseException:
            self._free()
            raise
        self.registered = True
        for bid in range(entries):
            self._append(bid)
        self._publish()
        #: the data area, for copying out (``view[bid * buf_size:][:n]``)
        self.view = self._data.view

    def _append(self, bid: int) -> None:
        _BUF.pack_into(
            self._slots.view,
            (self._tail & self._mask) * 16,
            self._data.address + bid * self.buf_size,
            self.buf_size,
            bid,
            0,
        )
        self._tail = (self._tail + 1) & 0xFFFF

    def _publish(self) -> None:
        # A release store: an io-wq worker on another CPU may pick a buffer
        # (smp_load_acquire of the tail, then the slot) while we append, in
        # any ring mode.  x86_64's TSO orders the slot stores first; aarch64
        # needs the fence (docs/how-it-works.md, "Memory ordering").
        fence = k.fence
        if fence is not None:
            fence(k.MEMORY_ORDER_SEQ_CST)
        _TAIL.pack_into(self._slots.view, _TAIL_OFFSET, self._tail)

    def take(self, bid: int, nbytes: int) -> bytes:
        """Copy ``nbytes`` out of buffer ``bid`` and give the buffer back."""
        start = bid * self.buf_size
        data = bytes(self._data.view[start : start + min(nbytes, self.buf_size)])
        self.recycle(bid)
        return data

    def recycle(self, bid: int) -> None:
        """Hand buffer ``bid`` back to the kernel."""
        self._append(bid)
        self._publish()

    def close(self) -> None:
        """Unregister and free.  No request that may select from this group
        may still be in flight (the IO manager drains first)."""
        if self.registered:
            self.registered = False
            reg = k.Memory(k.BUF_REG.size)
            k.BUF_REG.pack_into(reg.view, 0, 0, 0, self.bgid, 0, 0)
            try:
                k.io_uring_register(self.ring_fd, k.IORING_UNREGISTER_PBUF_RING, reg.address, 1)
            except OSError:
                pass  # the ring itself is going away; its close frees the group
        self._free()

    def _free(self) -> None:
        self.view = memoryview(b"")
        self._slots.close()
        self._data.close()
