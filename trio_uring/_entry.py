"""What every :mod:`trio_uring.lowlevel` function does first: find the
current run's io_uring manager and ask its kernel record for the opcode,
convert the file descriptor, and fail on a bad argument at a checkpoint.

Shared by :mod:`.lowlevel` (sockets, time) and :mod:`._fileops` (files and
paths), which both import it (and nothing of each other's).
"""

from __future__ import annotations

from typing import Final, NoReturn, Protocol

import trio
import trio.lowlevel

from ._features import missing_opcode_message
from ._manager import UringIOManager
from ._sockaddr import c_int
from ._support import UnsupportedError

__all__ = ["BAD_INPUT", "FileDescriptorLike", "fileno", "manager", "raise_at_checkpoint", "run_manager"]


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


FileDescriptorLike = int | _HasFileno
NOT_IN_URING_RUN: Final = "must be called from inside trio_uring.run / an installed trio run"

# Errors from argument checking, raised after a checkpoint (as trio does).
BAD_INPUT: Final = (TypeError, ValueError, OverflowError, OSError)


def run_manager() -> UringIOManager:
    """The current run's io_uring manager (RuntimeError outside one)."""
    try:
        io: object = trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager
    except AttributeError:
        io = None
    if not isinstance(io, UringIOManager):
        raise RuntimeError(NOT_IN_URING_RUN)
    return io


def manager(opcode_name: str) -> UringIOManager:
    """The current run's io_uring manager, after asking its kernel record
    for the opcode: UnsupportedError naming the opcode, the release that
    has it and what to call instead if the kernel lacks it."""
    io = run_manager()
    if not io.kernel.has_op(opcode_name):
        reason, remedy = missing_opcode_message(io.kernel.release, opcode_name)
        raise UnsupportedError("missing-opcode", reason, remedy)
    return io


async def raise_at_checkpoint(exc: BaseException) -> NoReturn:
    """Fail like trio's socket methods do on a bad argument: a checkpoint
    first (so a cancelled task gets Cancelled), then the error."""
    await trio.lowlevel.checkpoint()
    raise exc


def fileno(sock: FileDescriptorLike) -> int:
    if isinstance(sock, int):
        return c_int(sock)
    method = getattr(sock, "fileno", None)
    if method is None:
        raise TypeError(f"expected an int file descriptor or an object with fileno(), not {type(sock).__name__!r}")
    fd = method()
    if not isinstance(fd, int):
        raise TypeError(f"fileno() returned {type(fd).__name__!r}, not int")
    return c_int(fd)
