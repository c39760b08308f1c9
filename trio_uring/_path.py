"""``trio_uring.Path``: ``trio.Path`` whose I/O goes through io_uring where the
kernel has an opcode for it.

It *is* a ``trio.Path`` (a subclass), so everything trio's offers is there.
The methods below are io_uring operations instead of a worker thread each:

==================================  =========================================
``stat``, ``lstat``, ``exists``,    STATX (``is_symlink``: without following)
``is_dir``, ``is_file``, ...,
``samefile``
``open``, ``read_bytes``,           :func:`trio_uring.open_file`: OPENAT,
``read_text``, ``write_bytes``,     STATX, READ / WRITE, CLOSE
``write_text``
``unlink``, ``rmdir``               UNLINKAT
``rename``, ``replace``             RENAMEAT
``mkdir``                           MKDIRAT (``parents=True``: one per level)
``symlink_to``, ``hardlink_to``     SYMLINKAT, LINKAT
``touch``                           OPENAT + CLOSE; but bumping the times of
                                    an existing file is utimensat(2), which
                                    io_uring has no opcode for: a thread
==================================  =========================================

Everything else -- ``iterdir``, ``glob``, ``chmod``, ``readlink``, ``resolve``,
``owner``, ``is_mount`` ... -- has no io_uring opcode and stays on trio's
thread path, as does every method when the current run is not on io_uring.

Results and errors are pathlib's: the same ``OSError`` subclasses with the
same ``errno``, ``strerror`` and file names, the same ``exists()`` /
``is_*()`` rules about which errors mean ``False``.  Each method that is one
io_uring operation follows the cancellation table of ``_manager.py``:
``Cancelled`` means it did not happen; if it completed anyway, it returns.
"""

from __future__ import annotations

import errno
import io
import os
import pathlib
import stat
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, ClassVar, Final

import trio

from . import _fileops as fo
from . import _kernel as k
from ._file import current_manager, open_file

if TYPE_CHECKING:
    from trio._file_io import AsyncIOWrapper  # typing only

__all__ = ["Path"]

# pathlib's _ignore_error(): these errnos make exists() / is_*() answer False.
_IGNORED_ERRNOS: Final = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)


class Path(trio.Path, pathlib.PurePosixPath):
    """An async :class:`pathlib.Path`: ``trio.Path`` with its I/O on io_uring
    where the kernel has an opcode for it (see the module documentation)."""

    __slots__ = ()

    _wrapped_cls: ClassVar[type[pathlib.Path]] = pathlib.PosixPath

    def __repr__(self) -> str:
        return f"trio_uring.Path({str(self)!r})"

    # ---- stat and the questions it answers ----

    async def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        """Like :meth:`pathlib.Path.stat`, as one STATX."""
        if current_manager("STATX") is None:
            return await super().stat(follow_symlinks=follow_symlinks)
        return await fo.statx(self, follow_symlinks=follow_symlinks)

    async def lstat(self) -> os.stat_result:
        """Like :meth:`pathlib.Path.lstat`, as one STATX."""
        return await self.stat(follow_symlinks=False)

    async def _mode_is(self, test: Callable[[int], bool], follow_symlinks: bool = True) -> bool:
        try:
            st = await self.stat(follow_symlinks=follow_symlinks)
        except OSError as exc:
            if exc.errno not in _IGNORED_ERRNOS:
                raise
            return False  # it does not exist, or is a broken symlink
        except ValueError:
            return False  # a path the OS cannot take (a NUL in it)
        return test(st.st_mode)

    async def exists(self, *, follow_symlinks: bool = True) -> bool:
        """Like :meth:`pathlib.Path.exists`."""
        return await self._mode_is(lambda mode: True, follow_symlinks)

    async def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return await self._mode_is(stat.S_ISDIR, follow_symlinks)

    async def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return await self._mode_is(stat.S_ISREG, follow_symlinks)

    async def is_symlink(self) -> bool:
        return await self._mode_is(stat.S_ISLNK, False)

    async def is_fifo(self) -> bool:
        return await self._mode_is(stat.S_ISFIFO)

    async def is_socket(self) -> bool:
        return await self._mode_is(stat.S_ISSOCK)

    async def is_block_device(self) -> bool:
        return await self._mode_is(stat.S_ISBLK)

    async def is_char_device(self) -> bool:
        return await self._mode_is(stat.S_ISCHR)

    async def samefile(self, other_path: str | os.PathLike[str]) -> bool:
        """Like :meth:`pathlib.Path.samefile`: two STATX."""
        mine = await self.stat()
        other = other_path if isinstance(other_path, Path) else type(self)(other_path)
        return os.path.samestat(mine, await other.stat())

    # ---- contents ----

    async def open(  # type: ignore[override]
        self,
        mode: str = "r",
        buffering: int = -1,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> AsyncIOWrapper[IO[Any]]:
        """Like :meth:`pathlib.Path.open`: :func:`trio_uring.open_file`."""
        if "b" not in mode:
            encoding = io.text_encoding(encoding)
        return await open_file(self, mode, buffering, encoding, errors, newline)

    async def read_bytes(self) -> bytes:
        """Like :meth:`pathlib.Path.read_bytes`."""
        f: Any = await self.open(mode="rb")
        async with f:
            data: bytes = await f.read()
        return data

    async def read_text(
        self, encoding: str | None = None, errors: str | None = None, newline: str | None = None
    ) -> str:
        """Like :meth:`pathlib.Path.read_text` (``newline`` as in 3.13)."""
        encoding = io.text_encoding(encoding)
        f: Any = await self.open(mode="r", encoding=encoding, errors=errors, newline=newline)
        async with f:
            text: str = await f.read()
        return text

    async def write_bytes(self, data: Any) -> int:
        """Like :meth:`pathlib.Path.write_bytes`."""
        view = memoryview(data)
        f = await self.open(mode="wb")
        async with f:
            n: int = await f.write(view)
        return n

    async def write_text(
        self, data: str, encoding: str | None = None, errors: str | None = None, newline: str | None = None
    ) -> int:
        """Like :meth:`pathlib.Path.write_text`."""
        if not isinstance(data, str):
            raise TypeError(f"data must be str, not {data.__class__.__name__}")
        encoding = io.text_encoding(encoding)
        f = await self.open(mode="w", encoding=encoding, errors=errors, newline=newline)
        async with f:
            n: int = await f.write(data)
        return n

    # ---- the namespace ----

    async def unlink(self, missing_ok: bool = False) -> None:
        """Like :meth:`pathlib.Path.unlink`, as one UNLINKAT."""
        if current_manager("UNLINKAT") is None:
            return await super().unlink(missing_ok)
        try:
            await fo.unlinkat(self)
        except FileNotFoundError:
            if not missing_ok:
                raise

    async def rmdir(self) -> None:
        """Like :meth:`pathlib.Path.rmdir`, as one UNLINKAT (AT_REMOVEDIR)."""
        if current_manager("UNLINKAT") is None:
            return await super().rmdir()
        await fo.unlinkat(self, k.AT_REMOVEDIR)

    async def rename(self, target: str | os.PathLike[str]) -> Path:
        """Like :meth:`pathlib.Path.rename`, as one RENAMEAT; returns the new path."""
        if current_manager("RENAMEAT") is None:
            await trio.to_thread.run_sync(os.rename, self, target)
        else:
            await fo.renameat(self, target)
        return type(self)(target)

    async def replace(self, target: str | os.PathLike[str]) -> Path:
        """Like :meth:`pathlib.Path.replace` (on Linux the same rename(2))."""
        return await self.rename(target)

    async def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        """Like :meth:`pathlib.Path.mkdir`: one MKDIRAT per directory made."""
        if current_manager("MKDIRAT", "STATX") is None:
            return await super().mkdir(mode, parents, exist_ok)
        try:
            await fo.mkdirat(self, mode)
        except FileNotFoundError:
            if not parents or self.parent == self:
                raise
            await self.parent.mkdir(parents=True, exist_ok=True)
            await self.mkdir(mode, parents=False, exist_ok=exist_ok)
        except OSError:
            # As pathlib: EEXIST is not the only error an existing directory
            # can give (EACCES, EROFS ...), so look.
            if not exist_ok or not await self.is_dir():
                raise

    async def symlink_to(self, target: fo.StrOrBytesPath, target_is_directory: bool = False) -> None:
        """Like :meth:`pathlib.Path.symlink_to`, as one SYMLINKAT."""
        if current_manager("SYMLINKAT") is None:
            return await super().symlink_to(target, target_is_directory)
        await fo.symlinkat(target, self)

    async def hardlink_to(self, target: fo.StrOrBytesPath) -> None:
        """Like :meth:`pathlib.Path.hardlink_to`, as one LINKAT."""
        if current_manager("LINKAT") is None:
            return await super().hardlink_to(target)
        await fo.linkat(target, self)

    async def touch(self, mode: int = 0o666, exist_ok: bool = True) -> None:
        """Like :meth:`pathlib.Path.touch`.  Creating is OPENAT + CLOSE;
        updating the times of an existing file is utimensat(2), which has no
        io_uring opcode, so that part runs in a thread."""
        m = current_manager("OPENAT", "CLOSE")
        if m is None:
            return await super().touch(mode, exist_ok)
        if exist_ok:
            try:
                await trio.to_thread.run_sync(os.utime, self, None)
            except OSError:
                pass
            else:
                return
        flags = os.O_CREAT | os.O_WRONLY | (0 if exist_ok else os.O_EXCL)
        fd = await fo.openat(self, flags, mode)
        with trio.CancelScope(shield=True):  # the file exists now: finish
            await fo.close_fd(m, fd)
