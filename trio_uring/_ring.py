"""One io_uring instance: SQ/CQ rings, SQE preparation, submit-and-wait, reaping.

Nothing here knows about trio; the ring can be driven (and is unit-tested)
with plain pipes and sockets.

How the rings are used
----------------------

*Submission.*  ``prep_*`` writes one 64-byte SQE at our private tail with a
single precompiled ``struct.pack_into`` and bumps the tail.  Nothing is
submitted yet: :meth:`Ring.submit_and_wait` (once per scheduler tick) publishes
the tail and calls ``io_uring_enter`` once for the whole batch.  When the SQ is
full, the next ``prep_*`` flushes it with a plain submit first, so an SQE is
never dropped and the SQ size only limits the batch (uring-notes §8).

*SQ array.*  Unless the kernel accepted ``IORING_SETUP_NO_SQARRAY``, the SQ
has an indirection array; we fill it once with the identity, so the SQE at
``tail & mask`` is always the one submitted (liburing does the same).

*Completion.*  :meth:`Ring.reap` reads the CQ tail, unpacks every CQE between
head and tail and stores the new head.  On x86_64 aligned loads and stores are
already acquire/release, and every access here goes through an opaque C call
(memoryview / struct), which the compiler cannot reorder (uring-notes §6).

*Overflow.*  We require ``IORING_FEAT_NODROP``: when the CQ is full the kernel
keeps further CQEs on an overflow list and sets ``IORING_SQ_CQ_OVERFLOW``.
After reaping we re-enter with ``GETEVENTS`` while that flag is set, which
flushes the backlog into the CQ we just emptied (io_uring_enter(2), "NODROP").

*Modes.*  ``defer`` (SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG) is the fastest,
but completions are only posted when the creating thread calls
``io_uring_enter(GETEVENTS)``, and only that thread may submit.  ``coop``
(COOP_TASKRUN|TASKRUN_FLAG) relaxes that.  ``plain`` uses no task-run flags:
the submitter is interrupted to post completions, so another thread can wait
for them, which guest mode needs (uring-notes §3).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from typing import Final, Literal

from . import _features
from . import _kernel as k
from ._features import KernelFeatures, Profile

__all__ = ["Cqe", "Ring", "RingMode"]

RingMode = Literal["defer", "coop", "plain"]
Cqe = tuple[int, int, int]  # (user_data, res, flags)

_MODE_FLAGS: Final[dict[str, int]] = {
    "defer": k.IORING_SETUP_SINGLE_ISSUER | k.IORING_SETUP_DEFER_TASKRUN | k.IORING_SETUP_TASKRUN_FLAG,
    "coop": k.IORING_SETUP_COOP_TASKRUN | k.IORING_SETUP_TASKRUN_FLAG,
    "plain": 0,
}
# Tried in this order when the caller asks for "auto" (uring-notes §7, policy).
_AUTO_MODES: Final = ("defer", "coop", "plain")
# Nice to have; dropped (in this order) when the kernel answers EINVAL.
_OPTIONAL_FLAGS: Final = (k.IORING_SETUP_NO_SQARRAY, k.IORING_SETUP_SUBMIT_ALL)

#: Features trio_uring cannot work without (the floor: _features.REQUIRED_FEATURES).
REQUIRED_FEATURES: Final = (
    k.IORING_FEAT_NODROP | k.IORING_FEAT_SUBMIT_STABLE | k.IORING_FEAT_FAST_POLL | k.IORING_FEAT_EXT_ARG
)
#: Opcodes the IO manager itself needs.
REQUIRED_OPCODES: Final = _features.MANAGER_OPCODES

_GETEVENTS_EXT: Final = k.IORING_ENTER_GETEVENTS | k.IORING_ENTER_EXT_ARG
_TASKRUN_OR_OVERFLOW: Final = k.IORING_SQ_TASKRUN | k.IORING_SQ_CQ_OVERFLOW
_AGAIN: Final = (errno.EAGAIN, errno.EBUSY)


class Ring:
    """An io_uring instance with its rings mapped.

    ``mode`` is ``"auto"`` (the fastest the kernel accepts), or one of
    ``"defer"``, ``"coop"``, ``"plain"``.
    """

    def __init__(
        self,
        sq_entries: int = 256,
        cq_entries: int = 4096,
        *,
        mode: RingMode | Literal["auto"] = "auto",
        required_features: int = REQUIRED_FEATURES,
        profile: Profile | Literal["env"] | None = "env",
    ) -> None:
        if sq_entries < 1 or cq_entries < sq_entries:
            raise ValueError("need 1 <= sq_entries <= cq_entries")
        self.fd = -1
        self._maps: list[tuple[int, int]] = []
        self.closed = False
        if profile == "env":
            profile = _features.current_profile()
        modes = _AUTO_MODES if mode == "auto" else (mode,)
        self._setup(sq_entries, cq_entries, modes, profile)
        try:
            #: what this kernel can do, decided once (see _features.py)
            self.kernel: KernelFeatures = KernelFeatures.build(
                self.setup_flags, self._refused, self.params.features, self._probe_kernel(), profile
            )
            self.features: int = self.kernel.features
            pieces = self.kernel.missing() or [
                f"the feature {name}"
                for bit, name in enumerate(k.FEATURE_NAMES)
                if required_features & ~self.features & (1 << bit)
            ]
            if pieces:
                raise OSError(
                    errno.EOPNOTSUPP,
                    f"kernel {self.kernel.release} lacks what trio_uring needs (Linux {_features.FLOOR} or newer): "
                    + ", ".join(pieces),
                )
            self._map_rings()
        except BaseException:
            self.close()
            raise
        #: submissions per opcode number, for statistics
        self.op_counts = [0] * 256
        self._backlog: list[Cqe] = []
        self._submit_all = self.kernel.submit_all

    # ---- setup ------------------------------------------------------------

    def _setup(self, sq_entries: int, cq_entries: int, modes: Iterable[str], profile: Profile | None) -> None:
        last: OSError | None = None
        # Flags the profile's kernel does not know are refused without asking,
        # as that kernel would refuse them (EINVAL).
        unknown = 0 if profile is None else ~profile.setup_flags
        self._refused = 0
        for mode in modes:
            if _MODE_FLAGS[mode] & unknown:
                self._refused |= _MODE_FLAGS[mode] & unknown
                last = OSError(errno.EINVAL, f"the {mode} ring mode needs setup flags the kernel profile lacks")
                continue
            optional = [f for f in _OPTIONAL_FLAGS if not f & unknown]
            self._refused |= sum(f for f in _OPTIONAL_FLAGS if f & unknown)
            while True:
                flags = k.IORING_SETUP_CQSIZE | _MODE_FLAGS[mode]
                for f in optional:
                    flags |= f
                params = k.Params()
                params.flags = flags
                params.cq_entries = cq_entries
                try:
                    self.fd = k.io_uring_setup(sq_entries, params)
                except OSError as exc:
                    # EINVAL: this kernel does not know one of the flags.
                    if exc.errno != errno.EINVAL:
                        raise
                    last = exc
                    self._refused |= flags & ~k.IORING_SETUP_CQSIZE
                    if optional:
                        optional.pop(0)
                        continue
                    break
                self.mode: RingMode = mode  # type: ignore[assignment]
                self.setup_flags: int = flags
                self._refused &= ~flags
                self.params = params
                return
        assert last is not None
        raise last

    def _map_rings(self) -> None:
        p = self.params
        sq_off, cq_off = p.sq_off, p.cq_off
        self.sq_entries: int = p.sq_entries
        self.cq_entries: int = p.cq_entries
        sq_size = sq_off.array + p.sq_entries * 4
        if self.setup_flags & k.IORING_SETUP_NO_SQARRAY:
            sq_size = sq_off.flags + 4 if sq_off.array == 0 else sq_size
        cq_size = cq_off.cqes + p.cq_entries * k.CQE_SIZE
        if self.features & k.IORING_FEAT_SINGLE_MMAP:
            size = max(sq_size, cq_size, sq_off.flags + 4, cq_off.flags + 4)
            sq_addr = k.mmap_shared(size, self.fd, k.IORING_OFF_SQ_RING)
            self._maps.append((sq_addr, size))
            cq_addr = sq_addr
        else:  # pragma: no cover - kernels before 5.4
            sq_addr = k.mmap_shared(sq_size, self.fd, k.IORING_OFF_SQ_RING)
            self._maps.append((sq_addr, sq_size))
            cq_addr = k.mmap_shared(cq_size, self.fd, k.IORING_OFF_CQ_RING)
            self._maps.append((cq_addr, cq_size))
        sqes_size = p.sq_entries * k.SQE_SIZE
        sqes_addr = k.mmap_shared(sqes_size, self.fd, k.IORING_OFF_SQES)
        self._maps.append((sqes_addr, sqes_size))

        sq_len = max(sq_size, sq_off.flags + 4)
        cq_len = max(cq_size, cq_off.flags + 4)
        self._sq_u32 = k.view(sq_addr, sq_len).cast("I")
        self._cq_u32 = k.view(cq_addr, cq_len).cast("I")
        self._cq_bytes = k.view(cq_addr, cq_len)
        self._sqes = k.view(sqes_addr, sqes_size)

        # indices into the u32 views
        self._sq_khead = sq_off.head // 4
        self._sq_ktail = sq_off.tail // 4
        self._sq_kflags = sq_off.flags // 4
        self._sq_kdropped = sq_off.dropped // 4
        self._cq_khead = cq_off.head // 4
        self._cq_ktail = cq_off.tail // 4
        self._cq_koverflow = cq_off.overflow // 4
        self._cqes_off = cq_off.cqes
        self._sq_mask = self._sq_u32[sq_off.ring_mask // 4]
        self._cq_mask = self._cq_u32[cq_off.ring_mask // 4]
        if not self.setup_flags & k.IORING_SETUP_NO_SQARRAY:
            base = sq_off.array // 4
            for i in range(p.sq_entries):
                self._sq_u32[base + i] = i
        self._sq_tail = self._sq_u32[self._sq_ktail]
        self._cq_head = self._cq_u32[self._cq_khead]

        # The wait argument: a getevents_arg pointing at a timespec, both
        # allocated once; submit_and_wait rewrites only the timespec.
        # Three io_uring_getevents_args, built once: wait with the timespec
        # in _ts, do not wait (a zero timespec), wait without a timeout.
        self._ts = k.Memory(k.TIMESPEC.size)
        self._arg = k.Memory(k.GETEVENTS_ARG.size)
        k.GETEVENTS_ARG.pack_into(self._arg.view, 0, 0, 0, 0, self._ts.address)
        self._zero_ts = k.Memory(k.TIMESPEC.size)
        self._arg_zero = k.Memory(k.GETEVENTS_ARG.size)
        k.GETEVENTS_ARG.pack_into(self._arg_zero.view, 0, 0, 0, 0, self._zero_ts.address)
        self._arg_forever = k.Memory(k.GETEVENTS_ARG.size)
        self._p_arg = k.pointer(self._arg.address)
        self._p_arg_zero = k.pointer(self._arg_zero.address)
        self._p_arg_forever = k.pointer(self._arg_forever.address)

    # ---- submission ---------------------------------------------------------

    @property
    def pending(self) -> int:
        """SQEs written but not yet consumed by the kernel."""
        if self.closed:
            return 0
        return int(self._sq_tail - self._sq_u32[self._sq_khead]) & 0xFFFFFFFF

    def prep(
        self,
        opcode: int,
        user_data: int,
        fd: int = -1,
        addr: int = 0,
        length: int = 0,
        off: int = 0,
        op_flags: int = 0,
        *,
        sqe_flags: int = 0,
        ioprio: int = 0,
        buf_index: int = 0,
        file_index: int = 0,
        addr3: int = 0,
    ) -> None:
        """Write one SQE.  Flushes the SQ first when it is full."""
        tail = self._sq_tail
        if ((tail - self._sq_u32[self._sq_khead]) & 0xFFFFFFFF) >= self.sq_entries:
            self._flush_full_sq()
        k.SQE.pack_into(
            self._sqes,
            (tail & self._sq_mask) * 64,
            opcode,
            sqe_flags,
            ioprio,
            fd,
            off,
            addr,
            length,
            op_flags,
            user_data,
            buf_index,
            0,
            file_index,
            addr3,
            0,
        )
        self._sq_tail = (tail + 1) & 0xFFFFFFFF
        self.op_counts[opcode] += 1

    def _flush_full_sq(self) -> None:
        while True:
            try:
                self.submit()
            except OSError as exc:
                if exc.errno not in _AGAIN:
                    raise
                # The kernel wants us to make room in the CQ first.
                self._backlog.extend(self._reap_cq())
                self._enter(0, 0, k.IORING_ENTER_GETEVENTS)
            if ((self._sq_tail - self._sq_u32[self._sq_khead]) & 0xFFFFFFFF) < self.sq_entries:
                return

    def _publish(self) -> int:
        self._sq_u32[self._sq_ktail] = self._sq_tail
        return int(self._sq_tail - self._sq_u32[self._sq_khead]) & 0xFFFFFFFF

    def _enter(self, to_submit: int, min_complete: int, flags: int, arg: int = 0, argsz: int = 0) -> int:
        return k.io_uring_enter(self.fd, to_submit, min_complete, flags, arg, argsz)

    def submit(self) -> int:
        """Hand every queued SQE to the kernel without waiting."""
        to_submit = self._publish()
        if not to_submit:
            return 0
        n = self._enter(to_submit, 0, 0)
        if n < to_submit and not self._submit_all:
            self._submit_rest()
        return n

    def _submit_rest(self) -> None:
        """Without ``IORING_SETUP_SUBMIT_ALL`` (before 5.18) the kernel stops a
        batch at an SQE that fails to submit (posting its CQE) and returns
        without waiting; the SQEs after it stay queued.  Submit them too, so
        that everything queued is in the kernel when we return (a
        cancellation queued before a close(), above all)."""
        while True:
            left = self.pending
            if not left:
                return
            try:
                if not self._enter(left, 0, 0):
                    return
            except OSError as exc:
                if exc.errno in _AGAIN or exc.errno == errno.EINTR:
                    return
                raise

    def submit_and_wait(self, timeout: float | None, wait_nr: int = 1, *, submit: bool = True) -> int:
        """Submit what is queued and wait for ``wait_nr`` CQEs or ``timeout``.

        One ``io_uring_enter`` call; the timeout rides on
        ``IORING_ENTER_EXT_ARG``.  ``timeout=None`` waits without limit.
        Returns the number of SQEs submitted.  A timeout, a signal (EINTR) or
        back-pressure (EBUSY) just return: the caller reaps whatever arrived.
        With ``submit=False`` nothing is submitted (a waiter on another
        thread, guest mode).
        """
        to_submit = self._publish() if submit else 0
        if timeout is None:
            arg = self._p_arg_forever
        elif timeout <= 0:
            arg = self._p_arg_zero
        else:
            sec = int(timeout)
            k.TIMESPEC.pack_into(self._ts.view, 0, sec, int((timeout - sec) * 1e9))
            arg = self._p_arg
        try:
            n = k.enter(self.fd, to_submit, wait_nr, _GETEVENTS_EXT, arg)
        except OSError as exc:
            # ETIME: timed out with nothing submitted.  EINTR: a signal; the
            # handler runs as soon as we return.  EBUSY/EAGAIN: the CQ needs
            # reaping before the kernel takes more.
            if exc.errno in (errno.ETIME, errno.EINTR, errno.EAGAIN, errno.EBUSY):
                return 0
            raise
        if n < to_submit and not self._submit_all:
            self._submit_rest()
        return n

    def get_events_now(self) -> None:
        """Run pending completion work (DEFER/COOP task-run) without waiting."""
        try:
            self._enter(0, 0, k.IORING_ENTER_GETEVENTS)
        except OSError as exc:
            if exc.errno not in (errno.EINTR, errno.EAGAIN, errno.EBUSY):
                raise

    @property
    def has_backlog(self) -> bool:
        """CQEs already taken off the CQ (while flushing a full SQ) and not yet
        returned by :meth:`reap`."""
        return bool(self._backlog)

    def reap_now(self) -> list[Cqe]:
        """What a zero-timeout wait returns: enter the kernel only if it has
        something to do (queued SQEs, deferred task work, an overflowed CQ),
        then take the CQEs.  The run loop calls this between every batch of
        tasks, so it is written for speed."""
        u32 = self._sq_u32
        if self._sq_tail != u32[self._sq_khead] or u32[self._sq_kflags] & _TASKRUN_OR_OVERFLOW:
            self.submit_and_wait(0, 0)
        elif self._cq_head == self._cq_u32[self._cq_ktail] and not self._backlog:
            return []
        return self.reap()

    # ---- completion -----------------------------------------------------------

    def _reap_cq(self) -> list[Cqe]:
        head = self._cq_head
        tail = self._cq_u32[self._cq_ktail]
        if head == tail:
            return []
        mask = self._cq_mask
        base = self._cqes_off
        unpack = k.CQE.unpack_from
        buf = self._cq_bytes
        out = [unpack(buf, base + ((i & mask) << 4)) for i in range(head, head + ((tail - head) & 0xFFFFFFFF))]
        self._cq_head = tail
        self._cq_u32[self._cq_khead] = tail
        return out

    def reap(self) -> list[Cqe]:
        """Every CQE available now, including any the kernel had to keep on its
        overflow list."""
        out = self._reap_cq()
        if self._backlog:
            out = self._backlog + out
            self._backlog = []
        while self._sq_u32[self._sq_kflags] & k.IORING_SQ_CQ_OVERFLOW:
            # NODROP kept CQEs back; entering with GETEVENTS flushes them into
            # the space we just freed.
            self.get_events_now()
            more = self._reap_cq()
            if not more:
                break
            out.extend(more)
        return out

    # ---- probing ------------------------------------------------------------------

    def _probe_kernel(self) -> frozenset[int]:
        """The opcodes this kernel supports (IORING_REGISTER_PROBE), asked once."""
        nops = 256
        mem = k.Memory(16 + nops * 8)
        k.io_uring_register(self.fd, k.IORING_REGISTER_PROBE, mem.address, nops)
        ops_len = mem.view[1]
        supported = set()
        for i in range(ops_len):
            off = 16 + i * 8
            if mem.view[off + 2] & k.IO_URING_OP_SUPPORTED:
                supported.add(mem.view[off])
        return frozenset(supported)

    def probe(self) -> frozenset[int]:
        """The opcodes this ring may use (the probe, narrowed by the profile)."""
        return self.kernel.opcodes

    def supports(self, opcode_name: str) -> bool:
        return self.kernel.has_op(opcode_name)

    # ---- SQE preparation, named after the kernel's operations -------------------

    def prep_nop(self, user_data: int, *, sqe_flags: int = 0) -> None:
        self.prep(k.IORING_OP.NOP, user_data, sqe_flags=sqe_flags)

    def prep_read(self, user_data: int, fd: int, addr: int, nbytes: int, offset: int) -> None:
        """READ at ``offset`` (-1: the file's current position)."""
        self.prep(k.IORING_OP.READ, user_data, fd, addr, nbytes, offset & 0xFFFFFFFFFFFFFFFF)

    def prep_write(self, user_data: int, fd: int, addr: int, nbytes: int, offset: int) -> None:
        self.prep(k.IORING_OP.WRITE, user_data, fd, addr, nbytes, offset & 0xFFFFFFFFFFFFFFFF)

    def prep_recv(self, user_data: int, fd: int, addr: int, nbytes: int, flags: int = 0) -> None:
        self.prep(k.IORING_OP.RECV, user_data, fd, addr, nbytes, 0, flags)

    def prep_recv_select(self, user_data: int, fd: int, nbytes: int, flags: int, buf_group: int) -> None:
        """RECV of at most ``nbytes`` into a buffer the kernel picks from the
        provided-buffer group ``buf_group`` when data arrives
        (``IOSQE_BUFFER_SELECT``; the CQE names it, see :mod:`._bufring`)."""
        self.prep(
            k.IORING_OP.RECV, user_data, fd, 0, nbytes, 0, flags, sqe_flags=k.IOSQE_BUFFER_SELECT, buf_index=buf_group
        )

    def prep_accept_multishot(self, user_data: int, fd: int, flags: int = 0) -> None:
        """ACCEPT with ``IORING_ACCEPT_MULTISHOT`` (5.19): one CQE per accepted
        connection (``res`` = the new fd) while ``IORING_CQE_F_MORE`` is set;
        no peer address is reported, so addr/addrlen stay 0."""
        self.prep(k.IORING_OP.ACCEPT, user_data, fd, 0, 0, 0, flags, ioprio=k.IORING_ACCEPT_MULTISHOT)

    def prep_send(self, user_data: int, fd: int, addr: int, nbytes: int, flags: int = 0) -> None:
        self.prep(k.IORING_OP.SEND, user_data, fd, addr, nbytes, 0, flags)

    def prep_poll_add(self, user_data: int, fd: int, poll_mask: int, *, multishot: bool = False) -> None:
        self.prep(
            k.IORING_OP.POLL_ADD,
            user_data,
            fd,
            0,
            k.IORING_POLL_ADD_MULTI if multishot else 0,
            0,
            poll_mask,
        )

    def prep_cancel(self, user_data: int, target: int, flags: int = 0, *, sqe_flags: int = 0) -> None:
        """ASYNC_CANCEL of the op whose user_data is ``target``."""
        self.prep(k.IORING_OP.ASYNC_CANCEL, user_data, -1, target, 0, 0, flags, sqe_flags=sqe_flags)

    def prep_timeout(self, user_data: int, ts_addr: int, count: int = 0, flags: int = 0) -> None:
        """TIMEOUT: completes with -ETIME after the timespec at ``ts_addr``, or
        with 0 once ``count`` other CQEs were posted."""
        self.prep(k.IORING_OP.TIMEOUT, user_data, -1, ts_addr, 1, count, flags)

    def prep_sendmsg(self, user_data: int, fd: int, msghdr_addr: int, flags: int = 0) -> None:
        """SENDMSG: sendmsg(2) with the ``struct msghdr`` at ``msghdr_addr``."""
        self.prep(k.IORING_OP.SENDMSG, user_data, fd, msghdr_addr, 1, 0, flags)

    def prep_recvmsg(self, user_data: int, fd: int, msghdr_addr: int, flags: int = 0) -> None:
        """RECVMSG: recvmsg(2) into the ``struct msghdr`` at ``msghdr_addr``;
        the kernel writes ``msg_namelen`` and ``msg_flags`` back into it."""
        self.prep(k.IORING_OP.RECVMSG, user_data, fd, msghdr_addr, 1, 0, flags)

    def prep_accept(self, user_data: int, fd: int, addr: int, addrlen_addr: int, flags: int = 0) -> None:
        """ACCEPT: accept4(2).  ``addr`` points at a sockaddr buffer, and
        ``addrlen_addr`` at its ``socklen_t`` length (in ``off``/``addr2``);
        ``flags`` (SOCK_CLOEXEC, SOCK_NONBLOCK) go in ``accept_flags``."""
        self.prep(k.IORING_OP.ACCEPT, user_data, fd, addr, 0, addrlen_addr, flags)

    def prep_connect(self, user_data: int, fd: int, addr: int, addrlen: int) -> None:
        """CONNECT: connect(2) to the sockaddr at ``addr``, ``addrlen`` bytes
        long (the length goes in ``off``)."""
        self.prep(k.IORING_OP.CONNECT, user_data, fd, addr, 0, addrlen)

    def prep_shutdown(self, user_data: int, fd: int, how: int) -> None:
        """SHUTDOWN: shutdown(2); ``how`` goes in ``len``."""
        self.prep(k.IORING_OP.SHUTDOWN, user_data, fd, 0, how)

    def prep_close(self, user_data: int, fd: int) -> None:
        """CLOSE: close(2) of a regular (not fixed) file descriptor."""
        self.prep(k.IORING_OP.CLOSE, user_data, fd)

    # ---- file operations (issue 4) ----
    # Field use follows liburing's io_uring_prep_* (liburing.h).  ``dirfd``
    # may be AT_FDCWD (-100): the SQE's fd is signed.  ``len`` and the op
    # flags are unsigned, so a dirfd stored there is masked to 32 bits; the
    # kernel reads it back as an int.  Offsets of -1 ("no offset") are masked
    # to 64 bits.

    def prep_readv(self, user_data: int, fd: int, iov_addr: int, nr_vecs: int, offset: int, flags: int = 0) -> None:
        """READV: preadv2(2) into ``nr_vecs`` iovecs at ``iov_addr`` (RWF_* in ``flags``)."""
        self.prep(k.IORING_OP.READV, user_data, fd, iov_addr, nr_vecs, offset & 0xFFFFFFFFFFFFFFFF, flags)

    def prep_writev(self, user_data: int, fd: int, iov_addr: int, nr_vecs: int, offset: int, flags: int = 0) -> None:
        """WRITEV: pwritev2(2) of ``nr_vecs`` iovecs at ``iov_addr``."""
        self.prep(k.IORING_OP.WRITEV, user_data, fd, iov_addr, nr_vecs, offset & 0xFFFFFFFFFFFFFFFF, flags)

    def prep_openat(self, user_data: int, dirfd: int, path_addr: int, flags: int, mode: int) -> None:
        """OPENAT: openat(2) of the C string at ``path_addr``; ``mode`` in ``len``.
        The CQE's res is the new fd."""
        self.prep(k.IORING_OP.OPENAT, user_data, dirfd, path_addr, mode, 0, flags)

    def prep_statx(self, user_data: int, dirfd: int, path_addr: int, flags: int, mask: int, statx_addr: int) -> None:
        """STATX: statx(2); ``mask`` in ``len``, the ``struct statx`` buffer in ``off``."""
        self.prep(k.IORING_OP.STATX, user_data, dirfd, path_addr, mask, statx_addr, flags)

    def prep_fsync(self, user_data: int, fd: int, flags: int = 0) -> None:
        """FSYNC: fsync(2), or fdatasync(2) with IORING_FSYNC_DATASYNC."""
        self.prep(k.IORING_OP.FSYNC, user_data, fd, 0, 0, 0, flags)

    def prep_fallocate(self, user_data: int, fd: int, mode: int, offset: int, length: int) -> None:
        """FALLOCATE: fallocate(2).  Note liburing's layout: the length goes
        in ``addr`` and the mode in ``len``."""
        self.prep(k.IORING_OP.FALLOCATE, user_data, fd, length, mode, offset)

    def prep_ftruncate(self, user_data: int, fd: int, length: int) -> None:
        """FTRUNCATE (6.9): ftruncate(2); the length goes in ``off``."""
        self.prep(k.IORING_OP.FTRUNCATE, user_data, fd, 0, 0, length)

    def prep_renameat(
        self, user_data: int, olddirfd: int, oldpath_addr: int, newdirfd: int, newpath_addr: int, flags: int = 0
    ) -> None:
        """RENAMEAT: renameat2(2); the new dirfd in ``len``, the new path in ``off``."""
        self.prep(k.IORING_OP.RENAMEAT, user_data, olddirfd, oldpath_addr, newdirfd & 0xFFFFFFFF, newpath_addr, flags)

    def prep_unlinkat(self, user_data: int, dirfd: int, path_addr: int, flags: int = 0) -> None:
        """UNLINKAT: unlinkat(2); AT_REMOVEDIR in ``flags`` makes it rmdir(2)."""
        self.prep(k.IORING_OP.UNLINKAT, user_data, dirfd, path_addr, 0, 0, flags)

    def prep_mkdirat(self, user_data: int, dirfd: int, path_addr: int, mode: int) -> None:
        """MKDIRAT: mkdirat(2); ``mode`` in ``len``."""
        self.prep(k.IORING_OP.MKDIRAT, user_data, dirfd, path_addr, mode)

    def prep_symlinkat(self, user_data: int, newdirfd: int, target_addr: int, linkpath_addr: int) -> None:
        """SYMLINKAT: symlinkat(2) -- a link at ``linkpath`` (in ``off``) pointing to ``target``."""
        self.prep(k.IORING_OP.SYMLINKAT, user_data, newdirfd, target_addr, 0, linkpath_addr)

    def prep_linkat(
        self, user_data: int, olddirfd: int, oldpath_addr: int, newdirfd: int, newpath_addr: int, flags: int = 0
    ) -> None:
        """LINKAT: linkat(2); the new dirfd in ``len``, the new path in ``off``."""
        self.prep(k.IORING_OP.LINKAT, user_data, olddirfd, oldpath_addr, newdirfd & 0xFFFFFFFF, newpath_addr, flags)

    def prep_splice(
        self, user_data: int, fd_out: int, off_out: int, fd_in: int, off_in: int, nbytes: int, flags: int = 0
    ) -> None:
        """SPLICE: splice(2) of ``nbytes`` from ``fd_in`` to ``fd_out``.  An
        offset of -1 means "none" (required for a pipe end).  ``fd_out`` is the
        SQE's fd; ``fd_in`` goes in ``splice_fd_in`` and its offset in ``addr``.
        io_uring always runs SPLICE in an io-wq worker."""
        self.prep(
            k.IORING_OP.SPLICE,
            user_data,
            fd_out,
            off_in & 0xFFFFFFFFFFFFFFFF,
            nbytes,
            off_out & 0xFFFFFFFFFFFFFFFF,
            flags,
            file_index=fd_in,
        )

    # ---- teardown --------------------------------------------------------------------

    def close(self) -> None:
        """Unmap the rings and close the fd.  The caller must have drained
        every in-flight operation whose memory it is about to free."""
        if self.closed:
            return
        self.closed = True
        for name in ("_sq_u32", "_cq_u32", "_cq_bytes", "_sqes"):
            v = self.__dict__.pop(name, None)
            if v is not None:
                v.release()
        for addr, size in self._maps:
            k.munmap(addr, size)
        self._maps.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "setup_flags": [name for bit, name in k.SETUP_FLAG_NAMES.items() if self.setup_flags & bit],
            "sq_entries": self.sq_entries,
            "cq_entries": self.cq_entries,
            "features": [n for b, n in enumerate(k.FEATURE_NAMES) if self.features & (1 << b)],
            **self.kernel.describe(),
        }
