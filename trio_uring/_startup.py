"""The start-up hook behind ``trio-uring run``: every trio in this process on io_uring.

Python's ``site`` module executes the ``import`` lines of every ``.pth`` file
in site-packages while the interpreter starts (``python -m site`` docs,
"site-specific configuration hook").  trio_uring's wheel installs
``trio_uring-startup.pth``, one line that costs a dictionary lookup::

    import os; 'TRIO_URING_RUN' in os.environ and __import__('_trio_uring_startup').activate()

The launcher sets ``TRIO_URING_RUN`` and then executes the program, so the
variable is inherited by every process the program starts: multiprocessing's
spawn and forkserver workers, ``subprocess`` children running Python.

This file is installed as the top-level module ``_trio_uring_startup`` (the
build copies it there; ``setup.py``), because importing anything under
``trio_uring`` would run ``trio_uring/__init__.py`` and so import trio: a
process that never imports trio must not pay for it.  So this module uses the
standard library only, and :func:`activate` only puts a finder on
``sys.meta_path``.  The first ``import trio`` (or of any ``trio.*`` module)
goes through the finder, which lets the normal machinery find and execute
trio, then calls ``trio_uring.install()``, and removes itself.

``TRIO_URING_RUN`` values: ``1`` (install; where io_uring is unavailable the
``import trio`` fails with :class:`trio_uring.UnsupportedError`),
``fallback`` (``install(fallback=True)``: warn and keep trio's own backend),
``0`` or empty (do nothing).
"""

# No "from __future__ import annotations": importing __future__ costs as much
# as the rest of this module; the annotations that name typing-only types are
# strings instead.
import os
import sys

# typing costs milliseconds to import, and this runs in every process that
# has the variable set: mypy knows this spelling.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType
    from typing import Any

ENV_VAR = "TRIO_URING_RUN"
#: values of ENV_VAR that leave everything as it is
OFF_VALUES = ("", "0")
FALLBACK = "fallback"


def wanted() -> "str | None":
    """``"strict"``, ``"fallback"``, or None when this process is not to be touched."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in OFF_VALUES:
        return None
    return "fallback" if value == FALLBACK else "strict"


def install_now(mode: str) -> None:
    import trio_uring

    if not trio_uring.is_installed():
        trio_uring.install(fallback=mode == "fallback")


class _InstallAfterExec:
    """Executes trio with its own loader, then installs trio_uring."""

    def __init__(self, loader: "Any", mode: str) -> None:
        self.loader = loader
        self.mode = mode

    def create_module(self, spec: "Any") -> "ModuleType | None":
        create = getattr(self.loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module: "ModuleType") -> None:
        # The module and its spec name trio's real loader, as without us.
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        install_now(self.mode)


class TrioImportFinder:
    """A ``sys.meta_path`` finder that only ever answers for ``trio``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def find_spec(self, fullname: str, path: "Sequence[str] | None", target: "ModuleType | None" = None) -> "Any":
        if fullname != "trio":
            return None
        remove()
        # The spec the rest of sys.meta_path gives (the path finder, an
        # editable install's finder), with its loader wrapped.
        from importlib.util import find_spec

        spec = find_spec("trio")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _InstallAfterExec(spec.loader, self.mode)  # type: ignore[assignment] # a Loader by duck typing
        return spec


def remove() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, TrioImportFinder)]


def activate() -> None:
    """Called from the ``.pth`` line when ``TRIO_URING_RUN`` is set."""
    mode = wanted()
    if mode is None:
        return
    if "trio" in sys.modules:  # imported by something that ran before us
        install_now(mode)
        return
    remove()
    sys.meta_path.insert(0, TrioImportFinder(mode))
