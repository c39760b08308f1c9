"""``trio-uring run``: real programs, real processes, the installed start-up hook.

Every program here reports from inside which IO backend its trio runs used
(``trio.lowlevel.current_statistics().io_statistics.backend``) and its pid.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

import pytest

import trio_uring

from .test_support import SECCOMP_HELPER

TRIO_URING = str(Path(sys.executable).parent / "trio-uring")
TIMEOUT = 120

#: a trio program: prints one JSON line about itself
TRIO_PROGRAM = """
import json, os, sys, trio

async def main():
    await trio.sleep(0)
    return trio.lowlevel.current_statistics().io_statistics.backend

print(json.dumps({"backend": trio.run(main), "pid": os.getpid(), "env": os.environ.get("TRIO_URING_RUN")}), flush=True)
"""

#: a program that starts Python processes every way there is and collects
#: the backend each one's trio run used
SPREADING_PROGRAM = """
import json, multiprocessing, os, subprocess, sys

import trio


async def current_backend():
    await trio.sleep(0)
    return trio.lowlevel.current_statistics().io_statistics.backend


def report(_=None):
    return trio.run(current_backend), os.getpid()


def by(method):
    with multiprocessing.get_context(method).Pool(2) as pool:
        return pool.map(report, range(2))


if __name__ == "__main__":
    child = subprocess.run(
        [sys.executable, "-c", "import trio, os\\n" + "async def m():\\n    await trio.sleep(0)\\n"
         "    return trio.lowlevel.current_statistics().io_statistics.backend\\nprint(trio.run(m), os.getpid())"],
        capture_output=True, text=True, check=True,
    )
    backend, pid = child.stdout.split()
    print(json.dumps({
        "parent": report(),
        "subprocess": [backend, int(pid)],
        "spawn": by("spawn"),
        "forkserver": by("forkserver"),
        "fork": by("fork"),
    }), flush=True)
"""


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False, **kwargs)


def last_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "prog.py"
    path.write_text(TRIO_PROGRAM)
    return path


# ---- the hook is installed ----------------------------------------------------------


def test_the_pth_file_is_installed() -> None:
    site_packages = Path(sysconfig.get_paths()["purelib"])
    pth = site_packages / "trio_uring-startup.pth"
    assert pth.read_text().strip() == (
        "import os; 'TRIO_URING_RUN' in os.environ and __import__('_trio_uring_startup').activate()"
    )
    # the module it imports is trio_uring/_startup.py
    source = Path(trio_uring.__file__).parent / "_startup.py"
    assert (site_packages / "_trio_uring_startup.py").read_text() == source.read_text(), (
        "the installed copy of trio_uring/_startup.py is stale: reinstall (pip install -e . / make venv)"
    )


def test_hook_is_inert_without_trio() -> None:
    """A process that never imports trio imports neither trio nor trio_uring."""
    code = "import sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('trio', 'trio_uring')))"
    proc = run([TRIO_URING, "run", sys.executable, "-c", code])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_hook_only_with_the_variable(program: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRIO_URING_RUN"}
    assert last_json(run([sys.executable, str(program)], env=env))["backend"] == "epoll"
    for value in ("0", ""):
        assert last_json(run([sys.executable, str(program)], env={**env, "TRIO_URING_RUN": value}))["backend"] == (
            "epoll"
        )
    assert last_json(run([sys.executable, str(program)], env={**env, "TRIO_URING_RUN": "1"}))["backend"] == "io_uring"


# ---- running programs ---------------------------------------------------------------


def test_plain_trio_script(program: Path) -> None:
    """``trio-uring run script.py``: the script's trio run is on io_uring."""
    info = last_json(run([TRIO_URING, "run", str(program)]))
    assert info["backend"] == "io_uring"
    assert info["env"] == "1"


def test_python_dash_m_trio_uring_run(program: Path) -> None:
    info = last_json(run([sys.executable, "-m", "trio_uring", "run", str(program)]))
    assert info["backend"] == "io_uring"


def test_run_module(tmp_path: Path) -> None:
    (tmp_path / "trio_prog_mod.py").write_text(TRIO_PROGRAM)
    info = last_json(run([TRIO_URING, "run", "-m", "trio_prog_mod"], cwd=tmp_path))
    assert info["backend"] == "io_uring"
    info = last_json(run([TRIO_URING, "run", "--fallback", "-mtrio_prog_mod"], cwd=tmp_path))
    assert info["backend"] == "io_uring"
    assert info["env"] == "fallback"


def test_program_on_path_keeps_the_pid(program: Path) -> None:
    """The launcher executes the program in its own process: same pid."""
    proc = subprocess.Popen([TRIO_URING, "run", "--", sys.executable, str(program)], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=TIMEOUT)
    info = json.loads(out)
    assert info["backend"] == "io_uring"
    assert info["pid"] == proc.pid


def test_anyio_program(tmp_path: Path) -> None:
    script = tmp_path / "anyio_prog.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, anyio, trio

            async def main():
                async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                    await stream.send(b"ping")
                    reply = await stream.receive()
                return reply.decode(), trio.lowlevel.current_statistics().io_statistics.backend

            async def serve(stream):
                async with stream:
                    await stream.send(await stream.receive())

            async def both():
                global port
                listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
                port = listener.extra(anyio.abc.SocketAttribute.local_port)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(listener.serve, serve)
                    result = await main()
                    tg.cancel_scope.cancel()
                return result

            reply, backend = anyio.run(both, backend="trio")
            print(json.dumps({"reply": reply, "backend": backend}))
            """
        )
    )
    info = last_json(run([TRIO_URING, "run", str(script)]))
    assert info == {"reply": "ping", "backend": "io_uring"}


def test_reaches_subprocesses_and_multiprocessing_workers(tmp_path: Path) -> None:
    script = tmp_path / "spreading.py"
    script.write_text(SPREADING_PROGRAM)
    info = last_json(run([TRIO_URING, "run", str(script)]))
    pids = {info["parent"][1]}
    for how in ("subprocess",):
        assert info[how][0] == "io_uring", info
        pids.add(info[how][1])
    for how in ("spawn", "forkserver", "fork"):
        assert [backend for backend, _ in info[how]] == ["io_uring", "io_uring"], (how, info)
        pids.update(pid for _, pid in info[how])
    assert info["parent"][0] == "io_uring"
    assert len(pids) > 3  # really other processes
    # and without the launcher, none of them is
    plain = last_json(
        run([sys.executable, str(script)], env={k: v for k, v in os.environ.items() if k != "TRIO_URING_RUN"})
    )
    assert {plain["parent"][0], plain["subprocess"][0]} | {
        b for how in ("spawn", "forkserver", "fork") for b, _ in plain[how]
    } == {"epoll"}


# ---- exit status and signals ----------------------------------------------------------


def test_exit_status_passes_through() -> None:
    assert run([TRIO_URING, "run", "sh", "-c", "exit 7"]).returncode == 7
    assert run([TRIO_URING, "run", sys.executable, "-c", "raise SystemExit(3)"]).returncode == 3


def test_death_by_signal_passes_through() -> None:
    proc = run([TRIO_URING, "run", "sh", "-c", "kill -TERM $$"])
    assert proc.returncode == -signal.SIGTERM
    # as a shell reports it
    shell = run(["sh", "-c", f'"{TRIO_URING}" run sh -c "kill -TERM \\$\\$"; echo "status $?"'])
    assert shell.stdout.strip().splitlines()[-1] == f"status {128 + signal.SIGTERM}"


def test_signal_sent_to_the_launcher_reaches_the_program() -> None:
    code = "import signal, sys; print('ready', flush=True); signal.sigwait({signal.SIGUSR1}); sys.exit(42)"
    code = "import signal; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1}); " + code
    proc = subprocess.Popen([TRIO_URING, "run", sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGUSR1)
        assert proc.wait(timeout=TIMEOUT) == 42
    finally:
        proc.kill()
        proc.wait()


# ---- bad input ------------------------------------------------------------------------


@pytest.fixture
def not_executable(tmp_path: Path) -> Path:
    path = tmp_path / "data.txt"
    path.write_text("not a program\n")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return path


@pytest.fixture
def bad_format(tmp_path: Path) -> Path:
    path = tmp_path / "garbage"
    path.write_bytes(b"\x7fELF but not really")
    path.chmod(0o755)
    return path


def test_bad_input(tmp_path: Path, not_executable: Path, bad_format: Path) -> None:
    cases = [
        ([], 2, "trio-uring run: no program given (see trio-uring run --help)"),
        (["--"], 2, "trio-uring run: no program given (see trio-uring run --help)"),
        (["--fallback"], 2, "trio-uring run: no program given (see trio-uring run --help)"),
        (["--bogus", "prog"], 2, "trio-uring run: unknown option '--bogus' (see trio-uring run --help)"),
        (["-m"], 2, "trio-uring run: -m needs a module name (see trio-uring run --help)"),
        (["no-such-program-xyz"], 127, "trio-uring run: no-such-program-xyz: command not found"),
        ([str(tmp_path / "nope")], 127, f"trio-uring run: {tmp_path / 'nope'}: No such file or directory"),
        ([str(tmp_path / "nope.py")], 127, f"trio-uring run: {tmp_path / 'nope.py'}: No such file or directory"),
        ([str(not_executable)], 126, f"trio-uring run: {not_executable}: {os.strerror(errno.EACCES)}"),
        ([str(tmp_path)], 126, f"trio-uring run: {tmp_path}: Is a directory"),
        ([str(bad_format)], 126, f"trio-uring run: {bad_format}: cannot execute: Exec format error"),
    ]
    for args, status, message in cases:
        proc = run([TRIO_URING, "run", *args])
        assert (proc.returncode, proc.stderr.splitlines()) == (status, [message]), args
        assert proc.stdout == ""
    # not-found and not-executable programs found on PATH, as a shell tells them apart
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tool").write_text("#!/bin/sh\nexit 0\n")
    env = {**os.environ, "PATH": str(tmp_path / "bin")}
    proc = run([TRIO_URING, "run", "tool"], env=env)
    assert (proc.returncode, proc.stderr.strip()) == (126, f"trio-uring run: tool: {os.strerror(errno.EACCES)}")


def test_help() -> None:
    proc = run([TRIO_URING, "run", "--help"])
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: trio-uring run [--fallback]")
    # the report is unchanged
    proc = run([sys.executable, "-m", "trio_uring", "--json"])
    assert json.loads(proc.stdout)["io_uring"] in ("usable", "unavailable")


# ---- where io_uring is unavailable ------------------------------------------------------

#: the launcher in a process whose io_uring syscalls a seccomp filter refuses
#: (as Docker's default profile does); the filter is inherited by the program
WITHOUT_IO_URING = SECCOMP_HELPER + textwrap.dedent(
    """
    import errno, sys
    deny_io_uring(errno.EPERM)
    from trio_uring.__main__ import main
    sys.exit(main(["run", *sys.argv[1:]]))
    """
)


def test_unavailable_fails_with_the_unsupported_message(program: Path) -> None:
    proc = run([sys.executable, "-c", "import os\n" + WITHOUT_IO_URING, str(program)])
    assert proc.returncode == 1
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith("trio-uring run: io_uring is unavailable: ")
    assert "seccomp" in line


def test_unavailable_with_fallback_warns_once(tmp_path: Path) -> None:
    script = tmp_path / "spreading.py"
    script.write_text(SPREADING_PROGRAM)
    proc = run([sys.executable, "-c", "import os\n" + WITHOUT_IO_URING, "--fallback", str(script)])
    info = last_json(proc)
    assert info["parent"][0] == "epoll"
    assert {b for how in ("spawn", "forkserver", "fork") for b, _ in info[how]} == {"epoll"}
    warnings = [line for line in proc.stderr.splitlines() if "io_uring" in line]
    assert len(warnings) == 1, proc.stderr
    assert warnings[0].startswith("trio-uring run: warning: running on trio's own backend: io_uring is unavailable: ")
