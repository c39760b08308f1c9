"""What this kernel's io_uring can do: one immutable record per ring.

Every layer above the ring asks this record which path to take ("is there a
provided-buffer ring?", "multishot ACCEPT?", "FTRUNCATE?"); nothing compares
version strings, and no other layer probes the kernel.  The record is built
once, in :class:`._ring.Ring`'s constructor, from the kernel's own answers:

* the setup flags ``io_uring_setup`` accepted (it answers a flag it does not
  know with ``EINVAL``, and the ring retries without it);
* ``io_uring_params.features``;
* the opcodes ``IORING_REGISTER_PROBE`` reports.

Three capabilities trio_uring uses have no feature bit and no opcode of their
own: provided-buffer rings (``IORING_REGISTER_PBUF_RING``), multishot ACCEPT
and ASYNC_CANCEL's ``ANY``/``ALL`` flags.  All three were merged in Linux 5.19
together with the opcode ``SOCKET`` (45), so PROBE's answer for ``SOCKET`` is
taken as their witness (5.15 answers a PBUF_RING registration, an ACCEPT with
``ioprio`` set and an ASYNC_CANCEL with ``cancel_flags`` all with EINVAL).

Kernel profiles
---------------

``TRIO_URING_KERNEL=5.15`` (or 5.19, 6.1, 6.8; ``native`` is the default)
narrows the record to what that kernel has: setup flags it would refuse are
not tried (as if it had answered EINVAL), feature bits it lacks are cleared,
and the probe reports only opcodes it knows.  Everything above then runs as
it would on that kernel.  A profile can only take away: on a kernel older
than the profile, the record is what the kernel has.
"""

from __future__ import annotations

import os
import platform
from typing import Final

import attrs

from . import _kernel as k

__all__ = [
    "FLOOR",
    "PROFILES",
    "KernelFeatures",
    "Profile",
    "current_profile",
]

#: The oldest kernel trio_uring supports (and tests, with the 5.15 profile).
FLOOR: Final = "5.15"
#: The environment variable that picks a profile.
ENV: Final = "TRIO_URING_KERNEL"

#: The Linux release that introduced each opcode trio_uring submits or reports
#: (uring-notes §2).
#: The Linux release that introduced each opcode (uring-notes §2; the xattr
#: opcodes 41-44 are 5.19 too).
OPCODE_SINCE: Final = {
    "NOP": "5.1",
    "READV": "5.1",
    "WRITEV": "5.1",
    "FSYNC": "5.1",
    "READ_FIXED": "5.1",
    "WRITE_FIXED": "5.1",
    "POLL_ADD": "5.1",
    "POLL_REMOVE": "5.1",
    "SYNC_FILE_RANGE": "5.2",
    "SENDMSG": "5.3",
    "RECVMSG": "5.3",
    "TIMEOUT": "5.4",
    "TIMEOUT_REMOVE": "5.5",
    "ACCEPT": "5.5",
    "ASYNC_CANCEL": "5.5",
    "LINK_TIMEOUT": "5.5",
    "CONNECT": "5.5",
    "FALLOCATE": "5.6",
    "OPENAT": "5.6",
    "CLOSE": "5.6",
    "FILES_UPDATE": "5.6",
    "STATX": "5.6",
    "READ": "5.6",
    "WRITE": "5.6",
    "FADVISE": "5.6",
    "MADVISE": "5.6",
    "SEND": "5.6",
    "RECV": "5.6",
    "OPENAT2": "5.6",
    "EPOLL_CTL": "5.6",
    "SPLICE": "5.7",
    "PROVIDE_BUFFERS": "5.7",
    "REMOVE_BUFFERS": "5.7",
    "TEE": "5.8",
    "SHUTDOWN": "5.11",
    "RENAMEAT": "5.11",
    "UNLINKAT": "5.11",
    "MKDIRAT": "5.15",
    "SYMLINKAT": "5.15",
    "LINKAT": "5.15",
    "MSG_RING": "5.18",
    "SOCKET": "5.19",
    "URING_CMD": "5.19",
    "SEND_ZC": "6.0",
    "SENDMSG_ZC": "6.1",
    "READ_MULTISHOT": "6.7",
    "WAITID": "6.5",
    "FUTEX_WAIT": "6.7",
    "FUTEX_WAKE": "6.7",
    "FUTEX_WAITV": "6.7",
    "FIXED_FD_INSTALL": "6.8",
    "FTRUNCATE": "6.9",
    "BIND": "6.11",
    "LISTEN": "6.11",
    "RECV_ZC": "6.15",
    "EPOLL_WAIT": "6.15",
    "READV_FIXED": "6.15",
    "WRITEV_FIXED": "6.15",
    "PIPE": "6.16",
    "NOP128": "6.19",
    "URING_CMD128": "6.19",
    "FSETXATTR": "5.19",
    "SETXATTR": "5.19",
    "FGETXATTR": "5.19",
    "GETXATTR": "5.19",
}

#: What to call where the kernel lacks an opcode that has no fallback here.
OPCODE_INSTEAD: Final = {
    "SEND_ZC": "trio_uring.lowlevel.send (a copying SEND)",
    "SENDMSG_ZC": "trio_uring.lowlevel.sendmsg (a copying SENDMSG)",
    "SOCKET": "socket.socket() (socket(2) does not block)",
}

#: Features the IO manager cannot work without, and their release.
REQUIRED_FEATURES: Final = {
    "NODROP": "5.5",
    "SUBMIT_STABLE": "5.5",
    "FAST_POLL": "5.7",
    "EXT_ARG": "5.11",
}
#: Opcodes required at the floor: the IO manager's own, and every opcode a
#: trio_uring function submits that Linux 5.15 has.  (Newer ones each have
#: a fallback.)  Multishot POLL_ADD (5.13), which the manager's wakeup poll
#: uses, has no bit of its own; requiring 5.15's opcodes implies it.
REQUIRED_OPCODES: Final = (
    "NOP",
    "POLL_ADD",
    "ASYNC_CANCEL",
    "TIMEOUT",
    "READ",
    "WRITE",
    "READV",
    "WRITEV",
    "FSYNC",
    "RECV",
    "SEND",
    "RECVMSG",
    "SENDMSG",
    "ACCEPT",
    "CONNECT",
    "CLOSE",
    "OPENAT",
    "STATX",
    "FALLOCATE",
    "SPLICE",
    "SHUTDOWN",
    "RENAMEAT",
    "UNLINKAT",
    "MKDIRAT",
    "SYMLINKAT",
    "LINKAT",
)
#: The manager's own opcodes (without them there is no run at all).
MANAGER_OPCODES: Final = ("NOP", "POLL_ADD", "ASYNC_CANCEL", "READ", "WRITE", "TIMEOUT")


def _bits(n: int) -> int:
    return (1 << n) - 1


@attrs.frozen
class Profile:
    """What one kernel release has: the setup-flag and feature bits it
    knows, and its last opcode."""

    name: str
    setup_flags: int
    features: int
    last_opcode: int

    def narrow_opcodes(self, opcodes: frozenset[int]) -> frozenset[int]:
        return frozenset(op for op in opcodes if op <= self.last_opcode)


#: Kernel profiles (uring-notes §2, §3): setup flags up to R_DISABLED (bit 6)
#: in 5.15, SQE128/CQE32 (11) in 5.19, DEFER_TASKRUN (13) in 6.1,
#: NO_SQARRAY (16) in 6.6; features up to RSRC_TAGS (bit 10) in 5.15,
#: LINKED_FILE (12) in 5.17, REG_REG_RING (13) in 6.3; opcodes up to LINKAT
#: (39), URING_CMD (46), SENDMSG_ZC (48), FIXED_FD_INSTALL (54).
PROFILES: Final = {
    "5.15": Profile("5.15", _bits(7), _bits(11), 39),
    "5.19": Profile("5.19", _bits(12), _bits(13), 46),
    "6.1": Profile("6.1", _bits(14), _bits(13), 48),
    "6.8": Profile("6.8", _bits(17), _bits(14), 54),
}
PROFILE_NAMES: Final = ("native", *PROFILES)


def current_profile(name: str | None = None) -> Profile | None:
    """The profile named by ``name`` or by ``$TRIO_URING_KERNEL`` (None:
    the running kernel, unnarrowed)."""
    if name is None:
        name = os.environ.get(ENV, "").strip() or "native"
    if name == "native":
        return None
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"{ENV}={name!r} is not a kernel profile; choose one of {', '.join(PROFILE_NAMES)}") from None


def _flag_names(flags: int) -> list[str]:
    return [name for bit, name in k.SETUP_FLAG_NAMES.items() if flags & bit]


#: Setup flags the ring asks for, what each gives, and what replaces it.
SETUP_FALLBACKS: Final = {
    k.IORING_SETUP_SUBMIT_ALL: ("SUBMIT_ALL", "5.18", "the rest of a batch is submitted again after a failed SQE"),
    k.IORING_SETUP_COOP_TASKRUN: ("COOP_TASKRUN", "5.19", "plain mode: the kernel interrupts the run's thread"),
    k.IORING_SETUP_SINGLE_ISSUER: ("SINGLE_ISSUER", "6.0", "coop or plain mode"),
    k.IORING_SETUP_DEFER_TASKRUN: ("DEFER_TASKRUN", "6.1", "coop or plain mode"),
    k.IORING_SETUP_NO_SQARRAY: ("NO_SQARRAY", "6.6", "the SQ index array, filled once"),
}


@attrs.frozen
class KernelFeatures:
    """The kernel's answers at ring setup (narrowed by a profile), and what
    trio_uring can do with them."""

    #: ``uname -r``: for messages only, never compared
    release: str
    #: the profile in force ("native": none)
    profile: str
    #: setup flags io_uring_setup accepted
    setup_flags: int
    #: setup flags asked for and refused (EINVAL), or left out by the profile
    refused_flags: int
    #: ``io_uring_params.features``
    features: int
    #: opcode numbers IORING_REGISTER_PROBE reports
    opcodes: frozenset[int]

    @classmethod
    def build(
        cls, setup_flags: int, refused_flags: int, features: int, opcodes: frozenset[int], profile: Profile | None
    ) -> KernelFeatures:
        if profile is not None:
            features &= profile.features
            opcodes = profile.narrow_opcodes(opcodes)
        return cls(
            release=platform.release(),
            profile="native" if profile is None else profile.name,
            setup_flags=setup_flags,
            refused_flags=refused_flags,
            features=features,
            opcodes=opcodes,
        )

    # ---- what the layers above ask ----

    def has_op(self, name: str) -> bool:
        return k.opcode_number(name) in self.opcodes

    @property
    def cqe_skip(self) -> bool:
        """IOSQE_CQE_SKIP_SUCCESS (5.17): fire-and-forget cancels post no CQE."""
        return bool(self.features & k.IORING_FEAT_CQE_SKIP)

    @property
    def submit_all(self) -> bool:
        """IORING_SETUP_SUBMIT_ALL (5.18): a failed SQE does not stop the batch."""
        return bool(self.setup_flags & k.IORING_SETUP_SUBMIT_ALL)

    @property
    def _since_5_19(self) -> bool:
        # the witness for the capabilities without a bit (module docstring)
        return self.has_op("SOCKET")

    @property
    def buf_ring(self) -> bool:
        """Provided-buffer rings (IORING_REGISTER_PBUF_RING, 5.19)."""
        return self._since_5_19

    @property
    def multishot_accept(self) -> bool:
        """ACCEPT with IORING_ACCEPT_MULTISHOT (5.19)."""
        return self._since_5_19

    @property
    def cancel_any(self) -> bool:
        """ASYNC_CANCEL with IORING_ASYNC_CANCEL_ANY / ALL (5.19)."""
        return self._since_5_19

    # ---- the floor ----

    def missing(self) -> list[str]:
        """What trio_uring needs and this kernel lacks, with the release that
        brought each piece ([] at or above the floor)."""
        out = [
            f"the feature {name} ({since})"
            for name, since in REQUIRED_FEATURES.items()
            if not self.features & (1 << k.FEATURE_NAMES.index(name))
        ]
        out += [f"the opcode {name} ({OPCODE_SINCE[name]})" for name in REQUIRED_OPCODES if not self.has_op(name)]
        return out

    def fallbacks(self) -> list[str]:
        """The fallbacks in use on this ring, one line each: what is
        missing, the release that has it, and what replaces it."""
        out = [
            f"{name} ({since}): {instead}"
            for bit, (name, since, instead) in SETUP_FALLBACKS.items()
            if self.refused_flags & bit
        ]
        if not self.cqe_skip:
            out.append("CQE_SKIP_SUCCESS (5.17): cancellations post a CQE, which is dropped")
        if not self.buf_ring:
            out.append("provided-buffer rings (5.19): a receive waits for readiness (POLL_ADD), then recv(2)")
        if not self.multishot_accept:
            out.append(
                "multishot ACCEPT (5.19): TRIO_URING_ACCEPT=multishot is ignored (one ACCEPT per accept() call, the default)"
            )
        if not self.cancel_any:
            out.append("ASYNC_CANCEL_ANY (5.19): at close, one ASYNC_CANCEL per request")
        if not self.has_op("FTRUNCATE"):
            out.append("FTRUNCATE (6.9): ftruncate(2) (in a worker thread for lowlevel.ftruncate)")
        return out

    def describe(self) -> dict[str, object]:
        return {
            "kernel_profile": self.profile,
            "fallbacks": self.fallbacks(),
        }


def missing_opcode_message(release: str, name: str) -> tuple[str, str]:
    """(reason, remedy) for an opcode the kernel lacks and that has no fallback."""
    since = OPCODE_SINCE.get(name)
    has = f"Linux {since} and newer have it" if since else "newer kernels may have it"
    instead = OPCODE_INSTEAD.get(
        name, "the os / socket module's function (trio.to_thread.run_sync for one that blocks)"
    )
    return (
        f"this kernel's io_uring ({release}) lacks the opcode {name}; {has}",
        f"use {instead}, or a kernel with the opcode",
    )
