"""``trio-uring run``: run an unmodified program with every trio run on io_uring.

::

    trio-uring run [--fallback] [--] PROGRAM [ARGS...]
    trio-uring run [--fallback] -m MODULE [ARGS...]
    trio-uring run [--fallback] script.py [ARGS...]

The launcher checks that io_uring can be used here, sets ``TRIO_URING_RUN``
in the environment and then *replaces itself* with the program (``execve``,
as ``ddtrace-run`` and ``opentelemetry-instrument`` do).  The program keeps
the launcher's pid, its signals and its exit status reach whoever started it
unchanged (a program killed by SIGTERM is reported by the shell as 143), and
there is no process in between to forward signals.  The start-up hook
(:mod:`trio_uring._startup`, from the ``.pth`` file the package installs)
then installs trio_uring in every Python process that inherits the
variable and imports trio.

``PROGRAM`` is looked up on ``PATH`` as a shell would; ``script.py`` (a name
ending in ``.py``) and ``-m MODULE`` run with this interpreter.  Errors get
one line on standard error and the status a shell gives: 127 for a program
that does not exist, 126 for one that cannot be executed, 2 for bad usage,
and 1 when io_uring is unavailable (the :class:`UnsupportedError` message;
``--fallback`` instead warns once and runs the program on trio's own backend,
without setting the variable).
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from ._startup import ENV_VAR, FALLBACK
from ._support import UnsupportedError, check_support

__all__ = ["main"]

PROG = "trio-uring run"
USAGE = f"usage: {PROG} [--fallback] [--] PROGRAM [ARGS...] | -m MODULE [ARGS...] | script.py [ARGS...]"
#: what a usage error ends with: errors are one line
SEE_HELP = f"(see {PROG} --help)"
HELP = f"""{USAGE}

Run PROGRAM so that every trio run in it, and in every Python process it
starts (multiprocessing workers, subprocesses), uses io_uring.

options:
  --fallback   where io_uring is unavailable, warn once and run the program
               on trio's own backend instead of failing
  -m MODULE    run a Python module with this interpreter (like python -m)
  --           end of options: what follows is the program and its arguments
  -h, --help   show this help and exit

Exit status: the program's own; 1 when io_uring is unavailable (without
--fallback), 2 for bad usage, 126 when PROGRAM cannot be executed, 127 when it
does not exist.
"""

EXIT_UNSUPPORTED = 1
EXIT_USAGE = 2
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127


class _Exit(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse(args: Sequence[str]) -> tuple[bool, list[str]]:
    """(fallback, the argv to execute) from the words after ``run``."""
    fallback = False
    words = list(args)
    while words:
        word = words[0]
        if word == "--":
            words.pop(0)
            break
        if word in ("-h", "--help"):
            raise _Exit(0, HELP)
        if word == "--fallback":
            fallback = True
            words.pop(0)
        elif word == "-m" or (word.startswith("-m") and not word.startswith("--")):
            module = word[2:] or (words[1] if len(words) > 1 else "")
            if not module:
                raise _Exit(EXIT_USAGE, f"{PROG}: -m needs a module name {SEE_HELP}")
            rest = words[1:] if word[2:] else words[2:]
            return fallback, [sys.executable, "-m", module, *rest]
        elif word.startswith("-"):
            raise _Exit(EXIT_USAGE, f"{PROG}: unknown option {word!r} {SEE_HELP}")
        else:
            break
    if not words:
        raise _Exit(EXIT_USAGE, f"{PROG}: no program given {SEE_HELP}")
    program = words[0]
    if program.endswith(".py"):
        if not os.path.exists(program):
            raise _Exit(EXIT_NOT_FOUND, f"{PROG}: {program}: No such file or directory")
        return fallback, [sys.executable, *words]
    return fallback, words


def environment(fallback: bool) -> dict[str, str]:
    """The program's environment: ours plus the variable, or, where
    io_uring is unavailable and ``fallback``, without it (after one warning)."""
    env = dict(os.environ)
    try:
        check_support()
    except UnsupportedError as exc:
        if not fallback:
            raise _Exit(EXIT_UNSUPPORTED, f"{PROG}: {exc}") from None
        print(f"{PROG}: warning: running on trio's own backend: {exc}", file=sys.stderr, flush=True)
        env.pop(ENV_VAR, None)
        return env
    env[ENV_VAR] = FALLBACK if fallback else "1"
    return env


def execute(argv: list[str], env: dict[str, str]) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        # execvp's answers, as the shell reports them (bash: 127 for "command
        # not found", 126 for everything that was found but cannot run)
        if exc.errno == errno.ENOENT:
            what = "command not found" if os.sep not in argv[0] else "No such file or directory"
            raise _Exit(EXIT_NOT_FOUND, f"{PROG}: {argv[0]}: {what}") from None
        if exc.errno == errno.ENOEXEC:
            raise _Exit(EXIT_CANNOT_EXECUTE, f"{PROG}: {argv[0]}: cannot execute: Exec format error") from None
        if os.path.isdir(argv[0]):
            raise _Exit(EXIT_CANNOT_EXECUTE, f"{PROG}: {argv[0]}: Is a directory") from None
        raise _Exit(EXIT_CANNOT_EXECUTE, f"{PROG}: {argv[0]}: {exc.strerror}") from None


def main(args: Sequence[str]) -> int:
    """``trio-uring run ARGS``; returns only on error (else the program replaces us)."""
    try:
        fallback, argv = parse(args)
        execute(argv, environment(fallback))
    except _Exit as exc:
        print(str(exc), file=sys.stderr if exc.status else sys.stdout)
        return exc.status
