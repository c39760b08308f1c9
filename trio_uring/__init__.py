"""trio_uring: a trio IO manager on Linux io_uring.

``trio_uring.run(main)`` is ``trio.run(main)`` on io_uring;
``trio_uring.install()`` makes every later ``trio.run`` use it.
"""

from __future__ import annotations

from . import lowlevel, testing
from ._anyio import anyio_run
from ._file import open_file
from ._install import install, installed, is_installed, run, uninstall
from ._manager import UringIOManager, UringStatistics
from ._path import Path
from ._sendfile import sendfile
from ._support import UnsupportedError, check_support, is_supported
from ._trio_compat import UntestedTrioWarning

__version__ = "0.1.0"

__all__ = [
    "Path",
    "UnsupportedError",
    "UntestedTrioWarning",
    "UringIOManager",
    "UringStatistics",
    "anyio_run",
    "check_support",
    "install",
    "installed",
    "is_installed",
    "is_supported",
    "lowlevel",
    "open_file",
    "run",
    "sendfile",
    "testing",
    "uninstall",
]
