"""``python -m trio_uring``: can io_uring be used here, and if not, why not?

Prints the environment that decides it (versions, kernel, the io_uring
sysctls, RLIMIT_MEMLOCK, seccomp), then creates a ring the way a run would
(:func:`trio_uring.check_support`) and prints what it got, or the cause and
the remedy.  Exits 0 if io_uring is usable, 1 if not.  ``--json`` prints the
same report, with the same keys, as one JSON object.
"""

from __future__ import annotations

import argparse
import errno
import json
import platform
import resource
import sys
import textwrap
from collections.abc import Sequence
from typing import Final, TypeAlias

import trio

import trio_uring

from ._support import UnsupportedError, check_support, sysctl_disabled, sysctl_group

__all__ = ["main", "report"]

WIDTH: Final = 88
LABEL_WIDTH: Final = 26

Value: TypeAlias = str | int | bool | list[str] | dict[str, str | int] | None

_SECCOMP_MODES: Final = {0: "disabled", 1: "strict", 2: "filter"}


def _status_fields() -> dict[str, str]:
    try:
        with open("/proc/self/status") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    fields = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value.strip()
    return fields


def _limit(value: int) -> str | int:
    return "unlimited" if value == resource.RLIM_INFINITY else value


def _environment() -> dict[str, Value]:
    disabled = sysctl_disabled()
    group = sysctl_group()
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    status = _status_fields()
    seccomp: str | int
    try:
        seccomp = int(status["Seccomp"])
    except (KeyError, ValueError):
        seccomp = "unknown"
    return {
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "trio": trio.__version__,
        "trio_uring": trio_uring.__version__,
        "kernel": platform.release(),
        "machine": platform.machine(),
        "kernel.io_uring_disabled": "absent" if disabled is None else disabled,
        "kernel.io_uring_group": "absent" if group is None else group,
        "RLIMIT_MEMLOCK": {"soft": _limit(soft), "hard": _limit(hard)},
        "seccomp": seccomp,
    }


def report(required_opcodes: Sequence[str] = ()) -> dict[str, Value]:
    """The report as a flat dict: what ``--json`` prints."""
    data = _environment()
    try:
        info = check_support(required_opcodes)
    except UnsupportedError as exc:
        data["io_uring"] = "unavailable"
        data["cause"] = exc.cause
        data["errno"] = None if exc.errno is None else errno.errorcode.get(exc.errno, str(exc.errno))
        data["reason"] = exc.reason
        data["remedy"] = exc.remedy
        return data
    data["io_uring"] = "usable"
    data["ring_mode"] = str(info["mode"])
    data["setup_flags"] = [str(x) for x in _as_list(info["setup_flags"])]
    data["sq_entries"] = _as_int(info["sq_entries"])
    data["cq_entries"] = _as_int(info["cq_entries"])
    data["features"] = [str(x) for x in _as_list(info["features"])]
    data["opcodes"] = [str(x) for x in _as_list(info["opcodes"])]
    data["kernel_profile"] = str(info["kernel_profile"])
    data["fallbacks"] = [str(x) for x in _as_list(info["fallbacks"])]
    return data


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _as_int(value: object) -> int:
    return value if isinstance(value, int) else int(str(value))


def _format_value(key: str, value: Value) -> str:
    if value is None:
        return "-"
    if key == "fallbacks" and isinstance(value, list):
        return "; ".join(value) if value else "none (every feature trio_uring uses is there)"
    if isinstance(value, list):
        return f"({len(value)}) " + " ".join(value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_format_limit(v)}" for k, v in value.items())
    if key == "seccomp" and isinstance(value, int):
        return f"{value} ({_SECCOMP_MODES.get(value, 'unknown mode')})"
    return str(value)


def _format_limit(value: str | int) -> str:
    if isinstance(value, int):
        return f"{value // 1024} KiB" if value % 1024 == 0 else f"{value} bytes"
    return value


def format_text(data: dict[str, Value]) -> str:
    """The report as ``key: value`` lines, wrapped to about 88 columns; the
    keys are those of :func:`report`, and the verdict comes last."""
    lines = []
    for key, value in data.items():
        if key == "io_uring":
            continue
        label = f"{key}:".ljust(LABEL_WIDTH)
        lines.append(
            textwrap.fill(
                _format_value(key, value),
                width=WIDTH,
                initial_indent=label,
                subsequent_indent=" " * LABEL_WIDTH,
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    lines.append(f"io_uring: {data['io_uring']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trio_uring",
        description="Report whether trio_uring can use io_uring here, and if not, why not and what to do.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument(
        "--require",
        metavar="OPCODE",
        action="append",
        default=[],
        help="also require this io_uring opcode (e.g. SEND_ZC); may be repeated",
    )
    args = parser.parse_args(argv)
    try:
        data = report(args.require)
    except ValueError as exc:  # an unknown opcode name in --require
        parser.error(str(exc))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(format_text(data))
    return 0 if data["io_uring"] == "usable" else 1


if __name__ == "__main__":
    sys.exit(main())
