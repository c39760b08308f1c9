"""The policy for trio releases outside the tested range (docs/quickstart.md,
"Supported versions"): a trio whose private hooks are not the shape trio_uring
needs is refused before anything runs, with UnsupportedError naming the trio
version and the missing hook (or, with ``install(fallback=True)``, left on its
own backend with a warning); a newer trio with the right shape runs, with one
warning.  Each case runs in a fresh interpreter, since it changes trio (fakes
its version, or removes a hook) before trio_uring is imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import trio

import trio_uring
from trio_uring import _trio_compat

from .helpers import slowness

PRELUDE = """
import json, sys, warnings
import trio, trio.lowlevel


async def backend():
    await trio.sleep(0)
    return trio.lowlevel.current_statistics().io_statistics.backend

def run_child(change):
    change()
    import trio_uring
    result = {"version": trio.__version__}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result["runs"] = [trio_uring.run(backend), trio_uring.run(backend)]
        except trio_uring.UnsupportedError as exc:
            result["refused"] = [exc.cause, str(exc)]
        result["installed"] = trio_uring.install(fallback=True)
        try:
            result["after_install"] = trio.run(backend)
        except Exception as exc:  # trio itself broken by the change (no TheIOManager)
            result["after_install"] = repr(exc)
        trio_uring.uninstall()
    result["warnings"] = [[w.category.__name__, str(w.message)] for w in caught]
    print(json.dumps(result))
"""


def child(change: str) -> dict[str, object]:
    """Run PRELUDE's run_child with ``change`` (a function body) in a fresh interpreter."""
    code = (
        PRELUDE
        + "\ndef change():\n    global trio\n"
        + textwrap.indent(textwrap.dedent(change), "    ")
        + "\nrun_child(change)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120 * slowness())
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_the_installed_trio_has_every_hook() -> None:
    assert _trio_compat.missing_hooks() == ()
    assert trio.__version__ == _trio_compat.TRIO_VERSION


def test_a_newer_trio_with_the_same_hooks_runs_with_one_warning() -> None:
    result = child("trio.__version__ = '99.1.0'")
    assert result["runs"] == ["io_uring", "io_uring"]
    assert result["installed"] is True
    assert result["after_install"] == "io_uring"
    untested = [msg for cat, msg in result["warnings"] if cat == "UntestedTrioWarning"]  # type: ignore[attr-defined]
    assert len(untested) == 1, result["warnings"]
    assert "trio 99.1.0 is newer" in untested[0]
    assert _trio_compat.TESTED[1] in untested[0]


def test_a_trio_in_the_tested_range_runs_without_a_warning() -> None:
    result = child(f"trio.__version__ = {_trio_compat.TESTED[0]!r}")
    assert result["runs"] == ["io_uring", "io_uring"]
    assert result["warnings"] == []


HOOKS = [
    ("import trio._socket\ndel trio._socket._SocketType", "trio._socket._SocketType"),
    ("import trio._core._run\ndel trio._core._run.TheIOManager", "trio._core._run.TheIOManager"),
    ("import trio._highlevel_socket\ndel trio._highlevel_socket._closed_stream_errnos", "_closed_stream_errnos"),
    ("import trio._file_io\ndel trio._file_io._FILE_SYNC_ATTRS", "trio._file_io._FILE_SYNC_ATTRS"),
    # a trio whose runner calls an IO-manager method trio_uring does not have
    (
        "import trio._core._io_epoll as e\ne.EpollIOManager.wait_ready = lambda self, fd: None",
        "IO manager method wait_ready",
    ),
    # a trio whose setup_runner no longer constructs TheIOManager by name
    (
        "import trio._core._run as r\norig = r.setup_runner\nr.setup_runner = lambda *a, **k: orig(*a, **k)",
        "setup_runner looking up TheIOManager",
    ),
]


@pytest.mark.parametrize(("change", "named"), HOOKS, ids=[named for _, named in HOOKS])
def test_a_trio_without_a_hook_is_refused_before_running(change: str, named: str) -> None:
    result = child("trio.__version__ = '99.2.0'\n" + change)
    cause, message = result["refused"]  # type: ignore[misc]
    assert cause == "trio-version"
    assert "trio 99.2.0" in message
    assert named in message
    # fallback=True: trio's own backend, and a warning naming the trio version
    assert result["installed"] is False
    assert result["after_install"] != "io_uring"
    fallback = [msg for cat, msg in result["warnings"] if cat == "RuntimeWarning"]  # type: ignore[attr-defined]
    assert len(fallback) == 1, result["warnings"]
    assert "trio 99.2.0" in fallback[0]
    assert named in fallback[0]
    # never the untested-version warning for a trio that was refused
    assert not [w for w in result["warnings"] if w[0] == "UntestedTrioWarning"]  # type: ignore[index]


def test_untested_warning_is_public() -> None:
    assert issubclass(trio_uring.UntestedTrioWarning, RuntimeWarning)
