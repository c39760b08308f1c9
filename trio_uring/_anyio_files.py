"""anyio's file API on io_uring: ``anyio.open_file``, ``anyio.Path``, ``anyio.wrap_file``.

anyio runs every file operation with ``anyio.to_thread.run_sync``: a worker
thread per call, on every backend.  While trio_uring is in effect (``install()``,
``installed()``, ``trio_uring.run``, ``anyio_run``), this module puts
trio_uring's public file API (:func:`trio_uring.open_file`,
:class:`trio_uring.Path`) under anyio's, so an anyio program on the trio
backend does its file I/O in the ring, with no worker thread.

How it hooks
------------

anyio has no extension point for files, so the hook changes anyio's own
objects, in place, and undoes that when trio_uring is no longer in effect:

* ``anyio.open_file`` and ``anyio.wrap_file`` are *the same function
  objects*, with their ``__code__`` replaced by a two-line trampoline into
  this module (and ``__signature__`` set to anyio's).  Replacing the function
  object in ``anyio``'s namespace would miss every ``from anyio import
  open_file`` made before installing; changing the object reaches them all.
  Patching ``to_thread.run_sync`` inside ``_fileio`` instead would have to
  recognise the callables anyio passes it, which change between releases.
* ``anyio.Path``'s I/O methods are replaced on the class (so subclasses and
  instances made before installing follow).
* Files are returned as :class:`UringAsyncFile`, a subclass of
  ``anyio.AsyncFile`` (``isinstance`` and type hints hold) whose ``wrapped``
  is the real ``io`` object of :func:`trio_uring.open_file`.

Every replacement first asks whether the current task is a trio task on
io_uring with the file opcodes (the same test :func:`trio_uring.open_file`
makes); if not -- asyncio, a stock trio run, no run at all -- anyio's own
code runs, unchanged.  So does anything trio_uring does not do as anyio
would: a ``limiter`` that is not a ``CapacityLimiter`` (anyio's error), and
``wrap_file`` of a file object that is neither one trio_uring opened nor a
plain ``open()`` binary ``FileIO`` / ``BufferedReader`` / ``BufferedWriter``
on a regular file.  Those plain objects are served by
:mod:`trio_uring._anyio_wrap`, which does their I/O in the ring and sets
the object to where its own call would have left it.  Text files and
``BufferedRandom`` keep anyio's threads; that module says why.  What
:func:`trio_uring.open_file` itself hands to threads (a FIFO, an
``opener``) is documented there.

anyio's methods that have no io_uring opcode under them (``iterdir``,
``glob``, ``walk``, ``chmod``, ``readlink``, ``resolve``, ``owner`` ...) are
left alone: they stay in anyio's worker threads.

The hook is set up when trio_uring becomes active.  If anyio is not imported
yet, a finder on ``sys.meta_path`` waits for ``anyio._core._fileio`` to be
imported and hooks it then; it is removed when trio_uring is deactivated.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import inspect
import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Final

import sniffio

from ._anyio_wrap import make_plain_class, plain_file
from ._file import UringFile, current_manager
from ._file import open_file as uring_open_file
from ._path import Path as UringPath

__all__ = ["hook_anyio", "unhook_anyio"]

_FILEIO: Final = "anyio._core._fileio"
#: the name under which the trampolines find this module's functions in
#: anyio's ``_fileio`` globals
_GLOBAL: Final = "__trio_uring_hooks__"
#: opcodes without which trio_uring.open_file uses threads itself
_FILE_OPCODES: Final = ("OPENAT", "STATX", "READ", "WRITE", "CLOSE")

#: anyio.Path methods served by trio_uring.Path (one io_uring operation or
#: trio_uring.open_file each); the rest stay anyio's
PATH_METHODS: Final = (
    "stat",
    "lstat",
    "exists",
    "is_dir",
    "is_file",
    "is_symlink",
    "is_fifo",
    "is_socket",
    "is_block_device",
    "is_char_device",
    "samefile",
    "open",
    "read_bytes",
    "read_text",
    "write_bytes",
    "write_text",
    "unlink",
    "rmdir",
    "rename",
    "replace",
    "mkdir",
    "symlink_to",
    "hardlink_to",
    "touch",
)


def on_io_uring() -> bool:
    """Is the current task a trio task whose run is on io_uring with the
    file opcodes?  (Otherwise anyio's own code runs.)"""
    return sniffio.thread_local.name == "trio" and current_manager(*_FILE_OPCODES) is not None


# ---- the file object ---------------------------------------------------------------------------

# the io objects of files opened through the hook -> their trio_uring file,
# so that anyio.wrap_file(f.wrapped) stays on io_uring
_OWNERS: weakref.WeakKeyDictionary[Any, UringFile[Any]] = weakref.WeakKeyDictionary()
_classes: dict[type, type] = {}


def _async_file_class(base: type) -> type:
    """The ``anyio.AsyncFile`` subclass for this anyio (made once per class
    object, as anyio may be imported after this module)."""
    cls = _classes.get(base)
    if cls is None:
        cls = _classes[base] = _make_async_file_class(base)
    return cls


def _make_async_file_class(base: Any) -> type:
    class UringAsyncFile(base):  # type: ignore[misc]
        """``anyio.AsyncFile`` over a :func:`trio_uring.open_file` file:
        ``wrapped`` is the real ``io`` object, the methods are
        trio_uring's (io_uring, no thread) in a trio task, anyio's own
        elsewhere (their ``io`` object then does blocking I/O in a thread,
        as with anyio)."""

        _uring: UringFile[Any]

        def __init__(self, uring_file: UringFile[Any], *, limiter: Any = None) -> None:
            super().__init__(uring_file.wrapped, limiter=limiter)
            self._uring = uring_file

        async def aclose(self) -> None:
            if sniffio.thread_local.name == "trio":
                return await self._uring.aclose()
            return await super().aclose()  # type: ignore[no-any-return]

        async def read(self, size: int = -1) -> Any:
            if sniffio.thread_local.name == "trio":
                return await self._uring.read(size)
            return await super().read(size)

        async def read1(self, size: int = -1) -> bytes:
            if sniffio.thread_local.name == "trio":
                return await self._uring.read1(size)
            return await super().read1(size)  # type: ignore[no-any-return]

        async def readline(self) -> Any:
            if sniffio.thread_local.name == "trio":
                return await self._uring.readline()
            return await super().readline()

        async def readlines(self) -> list[Any]:
            if sniffio.thread_local.name == "trio":
                return await self._uring.readlines()
            return await super().readlines()  # type: ignore[no-any-return]

        async def readinto(self, b: Any) -> int | None:
            if sniffio.thread_local.name == "trio":
                return await self._uring.readinto(b)
            return await super().readinto(b)  # type: ignore[no-any-return]

        async def readinto1(self, b: Any) -> int:
            if sniffio.thread_local.name == "trio":
                return await self._uring.readinto1(b)
            return await super().readinto1(b)  # type: ignore[no-any-return]

        async def write(self, b: Any) -> int:
            if sniffio.thread_local.name == "trio":
                return await self._uring.write(b)
            return await super().write(b)  # type: ignore[no-any-return]

        async def writelines(self, lines: Iterable[Any]) -> None:
            if sniffio.thread_local.name == "trio":
                return await self._uring.writelines(lines)
            return await super().writelines(lines)  # type: ignore[no-any-return]

        async def truncate(self, size: int | None = None) -> int:
            if sniffio.thread_local.name == "trio":
                return await self._uring.truncate(size)
            return await super().truncate(size)  # type: ignore[no-any-return]

        async def seek(self, offset: int, whence: int | None = 0) -> int:
            if sniffio.thread_local.name == "trio":
                return await self._uring.seek(offset, whence)  # type: ignore[arg-type]  # (io's error for None)
            return await super().seek(offset, whence)  # type: ignore[no-any-return]

        async def tell(self) -> int:
            if sniffio.thread_local.name == "trio":
                return await self._uring.tell()
            return await super().tell()  # type: ignore[no-any-return]

        async def flush(self) -> None:
            if sniffio.thread_local.name == "trio":
                return await self._uring.flush()
            return await super().flush()  # type: ignore[no-any-return]

    UringAsyncFile.__module__ = __name__
    UringAsyncFile.__qualname__ = "UringAsyncFile"
    return UringAsyncFile


_plain_classes: dict[type, type] = {}


def _plain_file_class(base: type) -> type:
    """The ``anyio.AsyncFile`` subclass for ``wrap_file`` of a plain binary
    file (:mod:`trio_uring._anyio_wrap`), made once per class object."""
    cls = _plain_classes.get(base)
    if cls is None:
        cls = _plain_classes[base] = make_plain_class(base)
    return cls


def _as_anyio(fileio: types.ModuleType, f: Any, limiter: Any) -> Any:
    """The anyio file object for what trio_uring.open_file returned."""
    if isinstance(f, UringFile):
        _OWNERS[f.wrapped] = f
        return _async_file_class(fileio.AsyncFile)(f, limiter=limiter)
    # trio's thread-backed wrapper (a FIFO, ...): anyio's own object on its io object
    return fileio.AsyncFile(f.wrapped, limiter=limiter)


# ---- the replacements --------------------------------------------------------------------------


class _Hooks:
    """What the trampolines call; holds anyio's own functions (copies of the
    originals, run when the hook does not apply)."""

    def __init__(self, fileio: types.ModuleType) -> None:
        self.fileio = fileio
        self.open_file = _copy(fileio.open_file)
        self.wrap_file = _copy(fileio.wrap_file)
        self._limiter_cls = fileio.CapacityLimiter

    def limiter_ok(self, limiter: object) -> bool:
        return limiter is None or isinstance(limiter, self._limiter_cls)

    async def open_file_hook(self, *args: Any, **kwargs: Any) -> Any:
        if not on_io_uring():
            return await self.open_file(*args, **kwargs)
        try:
            bound = _signature(self.open_file).bind(*args, **kwargs)
        except TypeError:
            return await self.open_file(*args, **kwargs)  # anyio's own TypeError
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        limiter = arguments.pop("limiter", None)
        if not self.limiter_ok(limiter):
            return await self.open_file(*args, **kwargs)  # anyio's own error
        f = await uring_open_file(**arguments)
        return _as_anyio(self.fileio, f, limiter)

    def wrap_file_hook(self, *args: Any, **kwargs: Any) -> Any:
        try:
            bound = _signature(self.wrap_file).bind(*args, **kwargs)
        except TypeError:
            return self.wrap_file(*args, **kwargs)  # anyio's own TypeError
        file = bound.arguments["file"]
        limiter = bound.arguments.get("limiter")
        if not self.limiter_ok(limiter):
            return self.wrap_file(*args, **kwargs)  # anyio's own error
        owner = _OWNERS.get(file) if _hashable_weakref(file) else None
        if owner is not None and owner.wrapped is file:
            return _async_file_class(self.fileio.AsyncFile)(owner, limiter=limiter)
        if _may_run_on_io_uring():
            plain = plain_file(file)
            if plain is not None:
                return _plain_file_class(self.fileio.AsyncFile)(file, plain, limiter=limiter)
        return self.wrap_file(*args, **kwargs)


def _may_run_on_io_uring() -> bool:
    """May a file wrapped now be used on io_uring: no async library in this
    thread (wrapped before a run), or a trio task on io_uring?"""
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return True
    return library == "trio" and on_io_uring()


def _hashable_weakref(obj: object) -> bool:
    try:
        weakref.ref(obj)
        hash(obj)
    except TypeError:
        return False
    return True


@functools.cache
def _signature(func: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(func)


def _copy(func: types.FunctionType) -> types.FunctionType:
    """A new function object running ``func``'s current code."""
    copy = types.FunctionType(func.__code__, func.__globals__, func.__name__, func.__defaults__, func.__closure__)
    copy.__kwdefaults__ = func.__kwdefaults__
    copy.__qualname__ = func.__qualname__
    copy.__doc__ = func.__doc__
    copy.__annotations__ = func.__annotations__
    return copy


async def _open_file_trampoline(*args: Any, **kwargs: Any) -> Any:
    return await __trio_uring_hooks__.open_file_hook(*args, **kwargs)  # type: ignore[name-defined]  # noqa: F821


def _wrap_file_trampoline(*args: Any, **kwargs: Any) -> Any:
    return __trio_uring_hooks__.wrap_file_hook(*args, **kwargs)  # type: ignore[name-defined]  # noqa: F821


def _path_method(name: str, original: Callable[..., Any], hooks: _Hooks) -> Callable[..., Any]:
    signature = inspect.signature(original)
    returns_path = name in ("rename", "replace")

    @functools.wraps(original)
    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not on_io_uring():
            return await original(self, *args, **kwargs)
        try:
            signature.bind(self, *args, **kwargs)
        except TypeError:
            return await original(self, *args, **kwargs)  # anyio's own TypeError
        args = tuple(a._path if isinstance(a, hooks.fileio.Path) else a for a in args)
        kwargs = {k: v._path if isinstance(v, hooks.fileio.Path) else v for k, v in kwargs.items()}
        result = await getattr(UringPath(self._path), name)(*args, **kwargs)
        if name == "open":
            return _as_anyio(hooks.fileio, result, self._limiter)
        if returns_path:
            target = args[0] if args else kwargs["target"]
            return type(self)(target, limiter=self._limiter)
        return result

    method.__trio_uring_original__ = original  # type: ignore[attr-defined]
    return method


# ---- putting it in and taking it out -----------------------------------------------------------


class _State:
    lock = threading.Lock()
    hooked: types.ModuleType | None = None
    saved: ClassVar[list[tuple[Any, str, Any]]] = []  # (object, attribute, anyio's value)
    finder: _Finder | None = None


def _hook(fileio: types.ModuleType) -> None:
    """Replace anyio's file API in ``fileio`` (anyio._core._fileio)."""
    if _State.hooked is fileio:
        return
    if not all(hasattr(fileio, name) for name in ("open_file", "wrap_file", "Path", "CapacityLimiter")):
        # An anyio whose _fileio lacks what the hook builds on (anyio 4.4's
        # has no CapacityLimiter there): its own file API runs, unchanged.
        return
    hooks = _Hooks(fileio)
    saved = _State.saved
    fileio.__dict__[_GLOBAL] = hooks
    for func, trampoline in ((fileio.open_file, _open_file_trampoline), (fileio.wrap_file, _wrap_file_trampoline)):
        code = trampoline.__code__.replace(co_name=func.__name__, co_qualname=func.__qualname__)
        saved += [
            (func, "__code__", func.__code__),
            (func, "__defaults__", func.__defaults__),
            (func, "__kwdefaults__", func.__kwdefaults__),
        ]
        func.__signature__ = inspect.signature(func)  # anyio's, for introspection
        func.__code__ = code
        func.__defaults__ = None
        func.__kwdefaults__ = None
    for name in PATH_METHODS:
        original = fileio.Path.__dict__.get(name)
        if original is None:
            continue
        saved.append((fileio.Path, name, original))
        setattr(fileio.Path, name, _path_method(name, original, hooks))
    _State.hooked = fileio


def _unhook() -> None:
    fileio = _State.hooked
    if fileio is None:
        return
    for obj, attr, value in reversed(_State.saved):
        setattr(obj, attr, value)
    for func in (fileio.open_file, fileio.wrap_file):
        del func.__signature__
    fileio.__dict__.pop(_GLOBAL, None)
    _State.saved = []
    _State.hooked = None


class _Finder(importlib.abc.MetaPathFinder):
    """Hooks ``anyio._core._fileio`` right after it is imported."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None) -> Any:
        if fullname != _FILEIO:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        loader = spec.loader
        real_exec = loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            real_exec(module)
            with _State.lock:
                if _State.finder is not None:
                    _hook(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def hook_anyio() -> None:
    """Put anyio's file API on trio_uring's (now, or when anyio is imported)."""
    with _State.lock:
        fileio = sys.modules.get(_FILEIO)
        if fileio is not None:
            _hook(fileio)
        elif _State.finder is None:
            _State.finder = _Finder()
            sys.meta_path.insert(0, _State.finder)


def unhook_anyio() -> None:
    """Give anyio its own file API back."""
    with _State.lock:
        if _State.finder is not None:
            sys.meta_path.remove(_State.finder)
            _State.finder = None
        _unhook()
