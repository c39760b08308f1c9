"""Can io_uring be used here?  If not, why not, and what can the user do?

Every way io_uring can be unavailable shows up as an errno from
``io_uring_setup`` (uring-notes §7); the errno alone is ambiguous, so we read
``/proc`` to tell the causes apart:

=========  ==================================================================
ENOSYS     no kernel support (before 5.1, or CONFIG_IO_URING=n), or a seccomp
           policy that answers ENOSYS (podman / CRI-O defaults, gVisor)
EPERM      ``kernel.io_uring_disabled`` (2: for everyone; 1: for users outside
           ``kernel.io_uring_group`` without CAP_SYS_ADMIN), or a seccomp
           policy that answers EPERM (Docker 25+'s default profile); with
           neither (no seccomp filter, the sysctl letting us through), most
           likely a Linux security module: cause "unknown"
ENOMEM     RLIMIT_MEMLOCK: the rings are charged to it (5.1-5.11 and 6.14+),
           per user, for tasks without CAP_IPC_LOCK (with it: out of memory)
=========  ==================================================================

A closed ring is uncharged asynchronously, a few milliseconds later, so a
ring created right after another was closed can get ENOMEM under a limit it
would fit in; :func:`check_support` retries such failures briefly.
"""

from __future__ import annotations

import errno
import grp
import os
import platform
import resource
import time
from collections.abc import Iterable
from typing import Literal

from . import _kernel as k
from ._features import FLOOR, missing_opcode_message
from ._ring import Ring, RingMode

__all__ = ["UnsupportedError", "check_support", "explain_error", "is_supported", "missing_opcodes", "open_ring"]

SUPPORTED_MACHINES = ("x86_64", "amd64")

CAP_IPC_LOCK = 14
CAP_SYS_ADMIN = 21
# A closed ring's memory is uncharged from RLIMIT_MEMLOCK asynchronously
# (after an RCU grace period and a workqueue item): open_ring retries a
# memlock failure this long before believing it.
MEMLOCK_RETRY_SECONDS = 0.25


class UnsupportedError(OSError):
    """io_uring cannot be used here.  ``cause`` is a short keyword
    (``"no-kernel-support"``, ``"seccomp"``, ``"sysctl-disabled"``,
    ``"memlock"``, ``"missing-opcode"``, ``"missing-feature"``,
    ``"architecture"``, ``"unknown"``); ``remedy`` says what to do."""

    def __init__(self, cause: str, reason: str, remedy: str, errno_: int | None = None) -> None:
        self.cause = cause
        self.reason = reason
        self.remedy = remedy
        message = f"io_uring is unavailable: {reason}. To fix: {remedy}"
        if errno_ is None:
            super().__init__(message)
        else:
            super().__init__(errno_, message)

    def __str__(self) -> str:
        return f"io_uring is unavailable: {self.reason}. To fix: {self.remedy}"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.cause, self.reason, self.remedy, self.errno))


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _seccomp_mode() -> int | None:
    status = _read("/proc/self/status")
    if status is None:
        return None
    for line in status.splitlines():
        if line.startswith("Seccomp:"):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def sysctl_disabled() -> int | None:
    """``kernel.io_uring_disabled`` (Linux 6.6+), or None where it is absent."""
    value = _read("/proc/sys/kernel/io_uring_disabled")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def sysctl_group() -> int | None:
    value = _read("/proc/sys/kernel/io_uring_group")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _memlock() -> str:
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return "unlimited" if soft == resource.RLIM_INFINITY else f"{soft // 1024} KiB"


def _status_field(name: str) -> str | None:
    status = _read("/proc/self/status")
    if status is None:
        return None
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return None


def _in_initial_user_ns() -> bool:
    """True when our uids, gids and capabilities are those the kernel checks
    io_uring against (``capable()`` and kernel.io_uring_group live in the
    initial user namespace)."""
    uid_map = _read("/proc/self/uid_map")
    return uid_map is not None and uid_map.split() == ["0", "0", "4294967295"]


def _has_capability(cap: int) -> bool | None:
    """Whether the effective set holds ``cap`` in the initial user namespace;
    None when that cannot be told (inside a user namespace, no /proc)."""
    if not _in_initial_user_ns():
        return None
    eff = _status_field("CapEff")
    try:
        return eff is not None and bool(int(eff, 16) >> cap & 1)
    except ValueError:
        return None


def _group_name(gid: int) -> str:
    try:
        return f"{grp.getgrgid(gid).gr_name} (gid {gid})"
    except (KeyError, OverflowError):
        return f"gid {gid}"


_DOCKER_REMEDY = (
    "run the container with a seccomp profile that allows io_uring_setup, io_uring_enter and "
    "io_uring_register (docker run --security-opt seccomp=<profile>), "
    "or use trio's own backend (trio_uring.install(fallback=True))"
)
_FALLBACK = "use trio's own backend (trio_uring.install(fallback=True))"


def _explain_sysctl_1(err: int) -> UnsupportedError | None:
    """EPERM with kernel.io_uring_disabled = 1: blame the sysctl unless this
    process is one it lets through (then the EPERM came from elsewhere)."""
    group = sysctl_group()
    has_group = group is not None and group >= 0
    if _in_initial_user_ns():
        in_group = has_group and (group == os.getegid() or group in os.getgroups())
        if in_group or _has_capability(CAP_SYS_ADMIN):
            return None
    who = f"uid {os.geteuid()}, gid {os.getegid()}"
    if not has_group:
        return UnsupportedError(
            "sysctl-disabled",
            "io_uring_setup failed with EPERM: kernel.io_uring_disabled is 1 and kernel.io_uring_group "
            f"is {group} (no group), so only processes with CAP_SYS_ADMIN may use io_uring, "
            f"and this one ({who}) lacks it",
            "as root, set kernel.io_uring_group to a group of this user ('sysctl kernel.io_uring_group=<gid>') "
            f"or run 'sysctl kernel.io_uring_disabled=0'; or {_FALLBACK}",
            err,
        )
    assert group is not None
    return UnsupportedError(
        "sysctl-disabled",
        "io_uring_setup failed with EPERM: kernel.io_uring_disabled is 1, so only processes with "
        f"CAP_SYS_ADMIN or in the group kernel.io_uring_group = {_group_name(group)} may use io_uring, "
        f"and this one ({who}) is neither",
        f"add the user to {_group_name(group)} (and log in again), or as root set kernel.io_uring_group "
        f"to one of the user's groups or run 'sysctl kernel.io_uring_disabled=0'; or {_FALLBACK}",
        err,
    )


def explain_error(exc: OSError) -> UnsupportedError:
    """Turn an error from io_uring_setup into an UnsupportedError naming the
    cause and the remedy."""
    err = exc.errno
    kernel = platform.release()
    seccomp_mode = _seccomp_mode()
    seccomp = seccomp_mode == 2
    if err == errno.ENOSYS:
        if seccomp:
            return UnsupportedError(
                "seccomp",
                f"io_uring_setup failed with ENOSYS under a seccomp filter (kernel {kernel}); "
                "podman and CRI-O's default seccomp profiles, and gVisor, block io_uring this way",
                "run the container with a seccomp profile that allows io_uring_setup, io_uring_enter "
                "and io_uring_register (podman run --security-opt seccomp=<profile>), "
                f"or {_FALLBACK}",
                err,
            )
        return UnsupportedError(
            "no-kernel-support",
            f"io_uring_setup failed with ENOSYS: kernel {kernel} has no io_uring "
            "(older than 5.1, or built without CONFIG_IO_URING)",
            f"use Linux {FLOOR} or newer built with CONFIG_IO_URING=y, or {_FALLBACK}",
            err,
        )
    if err == errno.EPERM:
        # The kernel checks kernel.io_uring_disabled in io_uring_setup itself;
        # a seccomp filter answers before the syscall runs.
        disabled = sysctl_disabled()
        if disabled == 2:
            return UnsupportedError(
                "sysctl-disabled",
                "io_uring_setup failed with EPERM: kernel.io_uring_disabled is 2, "
                "so io_uring is disabled for every process"
                + (" (a seccomp filter is active too, and may also block io_uring)" if seccomp else ""),
                "as root, run 'sysctl kernel.io_uring_disabled=0' (or 1, and add the user to "
                f"kernel.io_uring_group); or {_FALLBACK}",
                err,
            )
        if disabled == 1:
            explained = _explain_sysctl_1(err)
            if explained is not None:
                return explained
        if seccomp:
            return UnsupportedError(
                "seccomp",
                "io_uring_setup failed with EPERM under a seccomp filter; Docker 25 and newer "
                "block io_uring this way in their default seccomp profile",
                _DOCKER_REMEDY,
                err,
            )
        if seccomp_mode is None:
            return UnsupportedError(
                "seccomp",
                "io_uring_setup failed with EPERM, most likely from a seccomp filter (Docker 25 and newer "
                "block io_uring in their default seccomp profile); /proc/self/status could not be read "
                "to confirm it",
                _DOCKER_REMEDY,
                err,
            )
        return UnsupportedError(
            "unknown",
            "io_uring_setup failed with EPERM although no seccomp filter is active and "
            f"kernel.io_uring_disabled is {disabled if disabled is not None else 'absent'}: most likely a "
            "Linux security module (SELinux, AppArmor or a BPF LSM policy) denies io_uring",
            f"look for an io_uring denial in the audit log (ausearch -m avc, dmesg) and allow it; or {_FALLBACK}",
            err,
        )
    if err == errno.ENOMEM:
        if _has_capability(CAP_IPC_LOCK):
            return UnsupportedError(
                "unknown",
                "io_uring_setup failed with ENOMEM although this process has CAP_IPC_LOCK (so the rings "
                "are not charged to RLIMIT_MEMLOCK): the system or this cgroup is out of memory",
                f"free memory or raise the cgroup's memory limit; or {_FALLBACK}",
                err,
            )
        return UnsupportedError(
            "memlock",
            f"io_uring_setup failed with ENOMEM: the locked-memory limit (ulimit -l) is {_memlock()}, "
            "too small for even the smallest ring. Linux charges the rings to RLIMIT_MEMLOCK "
            "for processes without CAP_IPC_LOCK (5.1-5.11 and 6.14+), per user: rings of other "
            "processes of the same user, and rings closed in the last few milliseconds, count too",
            "raise the limit ('ulimit -l 8192', LimitMEMLOCK= in a systemd unit, "
            f"or --ulimit memlock=8388608 for docker); or {_FALLBACK}",
            err,
        )
    if err == errno.EOPNOTSUPP:
        return UnsupportedError(
            "missing-feature",
            exc.strerror or str(exc),
            f"use Linux {FLOOR} or newer, or {_FALLBACK}",
            err,
        )
    return UnsupportedError(
        "unknown",
        f"io_uring_setup failed: {exc}",
        "run 'python -m trio_uring' for a report, and use trio's own backend meanwhile",
        err,
    )


def missing_opcodes(supported: Iterable[int], required: Iterable[str]) -> list[str]:
    have = set(supported)
    return [name for name in required if k.opcode_number(name) not in have]


def check_machine() -> None:
    machine = platform.machine().lower()
    if os.uname().sysname != "Linux":
        raise UnsupportedError("no-kernel-support", f"io_uring is Linux-only, not {os.uname().sysname}", "use Linux")
    if machine not in SUPPORTED_MACHINES:
        # The ring protocol needs acquire/release ordering; pure-Python
        # access is only known correct on x86_64's TSO (uring-notes §6).
        raise UnsupportedError(
            "architecture",
            f"trio_uring drives the rings from pure Python, which is only correct on x86_64 "
            f"(this machine is {machine})",
            "use trio's own backend on this machine (trio_uring.install(fallback=True))",
        )


def open_ring(mode: RingMode | Literal["auto"] = "auto", sq_entries: int = 256, cq_entries: int = 4096) -> Ring:
    """Create a ring, shrinking it if the locked-memory limit is tight, and
    check it can run trio (the ring checks the floor: _features.py); raise
    :class:`UnsupportedError` naming the cause."""
    deadline = time.monotonic() + MEMLOCK_RETRY_SECONDS
    delay = 0.002
    while True:
        try:
            return _open_ring_sized(mode, sq_entries, cq_entries)
        except OSError as exc:
            # RLIMIT_MEMLOCK is charged for the rings (5.1-5.11, 6.14+), and
            # a ring closed just before (check_support's, the previous run's)
            # is uncharged only some milliseconds later.
            soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
            if exc.errno != errno.ENOMEM or soft == 0 or time.monotonic() >= deadline:
                raise explain_error(exc) from exc
            time.sleep(delay)
            delay = min(2 * delay, 0.05)


def _open_ring_sized(mode: RingMode | Literal["auto"], sq_entries: int, cq_entries: int) -> Ring:
    """The largest ring of a few sizes that the locked-memory limit allows."""
    sizes = [(sq_entries, cq_entries), (sq_entries, 2 * sq_entries), (64, 128), (16, 32)]
    for sq, cq in sizes[:-1]:
        if sq > sq_entries:
            continue
        try:
            return Ring(sq, max(cq, sq), mode=mode)
        except OSError as exc:
            if exc.errno != errno.ENOMEM:
                raise
    sq, cq = sizes[-1]
    return Ring(min(sq, sq_entries), max(cq, min(sq, sq_entries)), mode=mode)


def check_support(required_opcodes: Iterable[str] = ()) -> dict[str, object]:
    """Create (and close) a ring the way a run would; return a description of
    it, or raise :class:`UnsupportedError` naming the cause and the remedy.

    ``required_opcodes`` adds opcode names (``"SEND_ZC"``) the caller needs
    beyond those the IO manager itself needs.
    """
    check_machine()
    ring = open_ring()
    with ring:
        missing = missing_opcodes(ring.probe(), required_opcodes)
        if missing:
            reasons = [missing_opcode_message(platform.release(), name)[0] for name in missing]
            raise UnsupportedError(
                "missing-opcode",
                "; ".join(reasons),
                "use a newer kernel, or avoid the features that need them",
            )
        info = ring.describe()
        info["opcodes"] = sorted(k.OPCODE_NAMES[i] for i in ring.probe() if i < len(k.OPCODE_NAMES))
        return info


def is_supported() -> bool:
    """True if :func:`check_support` would succeed."""
    try:
        check_support()
    except UnsupportedError:
        return False
    return True
