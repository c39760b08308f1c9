"""A fault plan written as one line of text, for ``pytest --trio-uring-faults``
and the ``trio_uring_faults`` ini option::

    short_io=1
    errno=RECV:ECONNRESET:0.01,seed=42
    short_io=3, errno=SEND:EPIPE:0.05, errno_at=7:ECONNRESET

Items, separated by commas (spaces around them are ignored):

``short_io=N``
    every receive / read returns at most N bytes, every send / write accepts
    at most N bytes (N >= 1);
``errno=OPCODE:ERRNO[:P]``
    each operation of that io_uring opcode fails with that errno with
    probability P in [0, 1] (default 1); one item per opcode;
``errno_at=K:ERRNO``
    operation K (numbered from 0 in each test) fails with that errno;
``seed=S``
    the seed the probabilities are drawn from (an integer, default 0).

``none`` (or an empty line) is no faults at all.  A spec that does not parse
raises :class:`FaultSpecError` naming the item that is wrong.
"""

from __future__ import annotations

import contextlib
import errno as errno_module
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from ._kernel import INTERRUPTED

#: the io_uring opcodes trio_uring submits through ``perform``: the ones a
#: fault plan sees, and so the ones an ``errno=`` item may name
OPCODES: Final = frozenset(
    {
        "ACCEPT",
        "CLOSE",
        "CONNECT",
        "FALLOCATE",
        "FSYNC",
        "FTRUNCATE",
        "LINKAT",
        "MKDIRAT",
        "OPENAT",
        "READ",
        "READV",
        "RECV",
        "RECVMSG",
        "RENAMEAT",
        "SEND",
        "SENDMSG",
        "SHUTDOWN",
        "SPLICE",
        "STATX",
        "SYMLINKAT",
        "TIMEOUT",
        "UNLINKAT",
        "WRITE",
        "WRITEV",
    }
)


class FaultSpecError(ValueError):
    """A fault spec that does not parse; the message names the bad item."""


@dataclass(frozen=True)
class FaultSpec:
    """A parsed fault spec: the keyword arguments of
    :func:`trio_uring.testing.faults`, and the text they came from."""

    short_io: int | None = None
    errno_for: dict[str, tuple[int, float]] = field(default_factory=dict)
    errno_at: dict[int, int] = field(default_factory=dict)
    seed: int = 0

    @property
    def empty(self) -> bool:
        return self.short_io is None and not self.errno_for and not self.errno_at

    def items(self) -> list[str]:
        """Each fault of the spec, written as it is parsed (``seed`` apart)."""
        out = [] if self.short_io is None else [f"short_io={self.short_io}"]
        out += [f"errno={op}:{errno_module.errorcode[e]}:{p:g}" for op, (e, p) in self.errno_for.items()]
        out += [f"errno_at={i}:{errno_module.errorcode[e]}" for i, e in self.errno_at.items()]
        return out

    def __str__(self) -> str:
        return ",".join([*self.items(), f"seed={self.seed}"]) if not self.empty else "none"

    def seed_for(self, name: str) -> int:
        """The seed of one test's own random stream: the spec's seed and the
        test's name, so a test draws the same faults when run alone."""
        digest = hashlib.sha256(f"{self.seed}/{name}".encode()).digest()
        return int.from_bytes(digest[:8], "little")

    @contextlib.contextmanager
    def faults(self, name: str = "") -> Iterator[object]:
        """:func:`trio_uring.testing.faults` with this spec (seeded for ``name``)."""
        from .testing import faults

        seed = self.seed_for(name) if name else self.seed
        with faults(short_io=self.short_io, errno_for=self.errno_for, errno_at=self.errno_at, seed=seed) as log:
            yield log


def _errno(text: str, item: str) -> int:
    name = text.strip().upper()
    value = getattr(errno_module, name, None) if name.startswith("E") else None
    if not isinstance(value, int) or value not in errno_module.errorcode:
        raise FaultSpecError(f"{item!r}: unknown errno {text!r} (a name from the errno module, like ECONNRESET)")
    if value in INTERRUPTED:
        # what the kernel answers for a cancelled request: trio_uring makes it
        # Cancelled, and Python retries an interrupted call (PEP 475), so no
        # caller ever sees it as an error
        raise FaultSpecError(f"{item!r}: {name} is how a cancelled request ends, never an error a caller sees")
    return value


def _probability(text: str, item: str) -> float:
    try:
        p = float(text)
    except ValueError:
        raise FaultSpecError(f"{item!r}: probability {text!r} is not a number") from None
    if not 0.0 <= p <= 1.0:  # also refuses nan
        raise FaultSpecError(f"{item!r}: probability {text!r} is outside [0, 1]")
    return p


def _integer(text: str, item: str, what: str, minimum: int | None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise FaultSpecError(f"{item!r}: {what} {text!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise FaultSpecError(f"{item!r}: {what} must be at least {minimum}")
    return value


def parse(text: str) -> FaultSpec:
    """Parse a fault spec (see the module docstring).

    :raises FaultSpecError: naming the item that does not parse, the unknown
        opcode or errno, or the probability outside [0, 1].
    """
    if text.strip().lower() in ("", "none"):
        return FaultSpec()
    short_io: int | None = None
    seed = 0
    errno_for: dict[str, tuple[int, float]] = {}
    errno_at: dict[int, int] = {}
    seen: set[str] = set()
    for raw in text.split(","):
        item = raw.strip()
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        value = value.strip()
        if not sep or not value:
            raise FaultSpecError(f"{item!r}: expected short_io=N, errno=OPCODE:ERRNO[:P], errno_at=K:ERRNO or seed=S")
        if key in ("short_io", "seed") and key in seen:
            raise FaultSpecError(f"{item!r}: {key} is given twice")
        seen.add(key)
        if key == "short_io":
            short_io = _integer(value, item, "short_io", 1)
        elif key == "seed":
            seed = _integer(value, item, "seed", None)
        elif key == "errno":
            parts = value.split(":")
            if len(parts) not in (2, 3):
                raise FaultSpecError(f"{item!r}: expected errno=OPCODE:ERRNO or errno=OPCODE:ERRNO:P")
            opcode = parts[0].strip().upper()
            if opcode not in OPCODES:
                raise FaultSpecError(f"{item!r}: unknown opcode {parts[0]!r} (one of {', '.join(sorted(OPCODES))})")
            if opcode in errno_for:
                raise FaultSpecError(f"{item!r}: opcode {opcode} is given twice")
            p = _probability(parts[2], item) if len(parts) == 3 else 1.0
            errno_for[opcode] = (_errno(parts[1], item), p)
        elif key == "errno_at":
            parts = value.split(":")
            if len(parts) != 2:
                raise FaultSpecError(f"{item!r}: expected errno_at=K:ERRNO")
            index = _integer(parts[0], item, "operation index", 0)
            if index in errno_at:
                raise FaultSpecError(f"{item!r}: operation {index} is given twice")
            errno_at[index] = _errno(parts[1], item)
        else:
            raise FaultSpecError(
                f"{item!r}: unknown fault {key!r} (expected short_io=N, errno=OPCODE:ERRNO[:P], errno_at=K:ERRNO "
                "or seed=S)"
            )
    return FaultSpec(short_io=short_io, errno_for=errno_for, errno_at=errno_at, seed=seed)
