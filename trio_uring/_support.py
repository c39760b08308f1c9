"""Can io_uring be used here?  If not, why not, and what can the user do?

Every way io_uring can be unavailable shows up as an errno from
``io_uring_setup`` (uring-notes §7); the errno alone is ambiguous, so we read
``/proc`` to tell the causes apart:

=========  ==================================================================
ENOSYS     no kernel support (before 5.1, or CONFIG_IO_URING=n), or a seccomp
           policy that answers ENOSYS (podman / CRI-O defaults, gVisor)
EPERM      ``kernel.io_uring_disabled`` (2: for everyone; 1: for users outside
           ``kernel.io_uring_group`` without CAP_SYS_ADMIN), or a seccomp
           policy that answers EPERM (Docker 25+'s default profile)
ENOMEM     RLIMIT_MEMLOCK: the rings are charged to it (5.1-5.11 and 6.14+)
=========  ==================================================================
"""

from __future__ import annotations

import errno
import os
import platform
import resource
from collections.abc import Iterable

from . import _kernel as k

__all__ = ["UnsupportedError", "check_support", "explain_error", "is_supported", "missing_opcodes"]

SUPPORTED_MACHINES = ("x86_64", "amd64")


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


def explain_error(exc: OSError) -> UnsupportedError:
    """Turn an error from io_uring_setup into an UnsupportedError naming the
    cause and the remedy."""
    err = exc.errno
    kernel = platform.release()
    seccomp = _seccomp_mode() == 2
    if err == errno.ENOSYS:
        if seccomp:
            return UnsupportedError(
                "seccomp",
                f"io_uring_setup failed with ENOSYS under a seccomp filter (kernel {kernel}); "
                "podman and CRI-O's default profiles, and gVisor, block io_uring this way",
                "run the container with a seccomp profile that allows io_uring_setup, io_uring_enter "
                "and io_uring_register (podman run --security-opt seccomp=<profile>), "
                "or use trio's own backend (trio_uring.install(fallback=True))",
                err,
            )
        return UnsupportedError(
            "no-kernel-support",
            f"io_uring_setup failed with ENOSYS: kernel {kernel} has no io_uring "
            "(older than 5.1, or built without CONFIG_IO_URING)",
            "use Linux 5.19 or newer built with CONFIG_IO_URING=y, "
            "or use trio's own backend (trio_uring.install(fallback=True))",
            err,
        )
    if err == errno.EPERM:
        disabled = sysctl_disabled()
        if disabled == 2:
            return UnsupportedError(
                "sysctl-disabled",
                "io_uring_setup failed with EPERM: kernel.io_uring_disabled is 2, "
                "so io_uring is disabled for every process",
                "as root, run 'sysctl kernel.io_uring_disabled=0' "
                "(or 1, and add the user to kernel.io_uring_group)",
                err,
            )
        if disabled == 1:
            group = sysctl_group()
            return UnsupportedError(
                "sysctl-disabled",
                "io_uring_setup failed with EPERM: kernel.io_uring_disabled is 1, so only "
                f"processes with CAP_SYS_ADMIN or in group {group} (kernel.io_uring_group) may use it",
                f"add the user to group {group} (or set kernel.io_uring_group to one of theirs), "
                "or as root run 'sysctl kernel.io_uring_disabled=0'",
                err,
            )
        return UnsupportedError(
            "seccomp",
            "io_uring_setup failed with EPERM"
            + (" under a seccomp filter" if seccomp else "")
            + "; Docker 25 and newer block io_uring in their default seccomp profile",
            "run the container with a seccomp profile that allows io_uring_setup, io_uring_enter and "
            "io_uring_register (docker run --security-opt seccomp=<profile>), "
            "or use trio's own backend (trio_uring.install(fallback=True))",
            err,
        )
    if err == errno.ENOMEM:
        return UnsupportedError(
            "memlock",
            f"io_uring_setup failed with ENOMEM: the locked-memory limit (ulimit -l) is {_memlock()}, "
            "too small for the smallest ring (Linux charges the rings to RLIMIT_MEMLOCK "
            "for processes without CAP_IPC_LOCK)",
            "raise the limit ('ulimit -l 8192', LimitMEMLOCK= in a systemd unit, "
            "or --ulimit memlock=8388608 for docker)",
            err,
        )
    if err == errno.EOPNOTSUPP:
        return UnsupportedError(
            "missing-feature",
            exc.strerror or str(exc),
            "use Linux 5.19 or newer",
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


def check_support(required_opcodes: Iterable[str] = ()) -> dict[str, object]:
    """Create (and close) a ring the way a run would; return a description of
    it, or raise :class:`UnsupportedError` naming the cause and the remedy.

    ``required_opcodes`` adds opcode names (``"SEND_ZC"``) the caller needs
    beyond those the IO manager itself needs.
    """
    from ._manager import open_ring

    check_machine()
    with open_ring() as ring:
        missing = missing_opcodes(ring.probe(), required_opcodes)
        if missing:
            raise UnsupportedError(
                "missing-opcode",
                f"this kernel ({platform.release()}) does not support the io_uring opcode(s) {', '.join(missing)}",
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
