"""Every way io_uring can be unavailable, reproduced for real in a child process.

Nothing here mocks io_uring: each test starts ``sys.executable -c <code>``,
makes io_uring unavailable in that child the way the real world does (a
seccomp filter as Docker and podman install it, the ``kernel.io_uring_*``
sysctls, RLIMIT_MEMLOCK for an unprivileged user, an opcode this kernel lacks)
and checks what trio_uring reports and does.  The child prints one
``RESULT <json>`` line, which the test asserts on.

The sysctl tests change a system-wide setting: they need root, hold a lock
file so that two runs of this suite never interleave their save/restore, and
keep the window short: the child starts, imports everything and drops its
privileges first, and only then is the sysctl changed, the child told to go
on, and the original value restored as soon as it has answered.  The other
children hold the same lock shared, so that a concurrent run of this suite
never sees the sysctls changed under it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import os
import select
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import auto_mode, slowness


def child_timeout() -> float:
    """A child's deadline: a minute on a quiet machine; a child under qemu's
    emulation took longer than that just to import trio (tests.helpers.slowness)."""
    return 60.0 * slowness()


#: uid/gid for children that must lack CAP_SYS_ADMIN and CAP_IPC_LOCK
NOBODY = 65534
#: uid for the RLIMIT_MEMLOCK children that must create rings: the rings are
#: charged per *user*, so each run of this suite uses a uid of its own that no
#: other process (another run of this suite included) is charging meanwhile.
MEMLOCK_UID = 3_000_000_000 + os.getpid()

SYSCTL_DISABLED = "/proc/sys/kernel/io_uring_disabled"
SYSCTL_GROUP = "/proc/sys/kernel/io_uring_group"
SYSCTL_LOCK = os.path.join(tempfile.gettempdir(), "trio_uring-test-io_uring-sysctl.lock")

DEFAULT_SQ, DEFAULT_CQ = 256, 4096

#: Executed by a child before its test code: ``deny_io_uring(err)`` installs a
#: seccomp filter answering io_uring_setup (425), io_uring_enter (426) and
#: io_uring_register (427) with ``err`` (EPERM like Docker 25+'s default
#: profile, ENOSYS like podman's), allowing every other syscall.
SECCOMP_HELPER = r"""
import ctypes as _ctypes


def deny_io_uring(err):
    import platform as _platform

    # <linux/audit.h>: EM_* | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE; the
    # io_uring syscall numbers (425-427) are the same on both.
    AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}[_platform.machine()]
    BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
    BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
    BPF_RET_K = 0x06  # BPF_RET | BPF_K
    SECCOMP_RET_ALLOW = 0x7FFF0000
    SECCOMP_RET_ERRNO = 0x00050000
    PR_SET_SECCOMP = 22
    PR_SET_NO_NEW_PRIVS = 38
    SECCOMP_MODE_FILTER = 2
    # struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
    OFFSET_NR, OFFSET_ARCH = 0, 4

    class SockFilter(_ctypes.Structure):
        _fields_ = [
            ("code", _ctypes.c_uint16),
            ("jt", _ctypes.c_uint8),
            ("jf", _ctypes.c_uint8),
            ("k", _ctypes.c_uint32),
        ]

    class SockFprog(_ctypes.Structure):
        _fields_ = [("len", _ctypes.c_ushort), ("filter", _ctypes.POINTER(SockFilter))]

    program = [
        (BPF_LD_W_ABS, 0, 0, OFFSET_ARCH),
        (BPF_JEQ_K, 0, 4, AUDIT_ARCH),  # another arch: allow
        (BPF_LD_W_ABS, 0, 0, OFFSET_NR),
        (BPF_JEQ_K, 3, 0, 425),  # io_uring_setup
        (BPF_JEQ_K, 2, 0, 426),  # io_uring_enter
        (BPF_JEQ_K, 1, 0, 427),  # io_uring_register
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | (err & 0xFFFF)),
    ]
    insns = (SockFilter * len(program))(*(SockFilter(*insn) for insn in program))
    prog = SockFprog(len(program), insns)
    libc = _ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [_ctypes.c_int, _ctypes.c_ulong, _ctypes.c_void_p, _ctypes.c_ulong, _ctypes.c_ulong]
    libc.prctl.restype = _ctypes.c_int
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        e = _ctypes.get_errno()
        raise OSError(e, "prctl(PR_SET_NO_NEW_PRIVS): " + os.strerror(e))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, _ctypes.addressof(prog), 0, 0) != 0:
        e = _ctypes.get_errno()
        raise OSError(e, "prctl(PR_SET_SECCOMP): " + os.strerror(e))
"""

#: Executed by every child first.  Everything a child needs is imported here,
#: before it drops its privileges (the interpreter may live under /root).
CHILD_PRELUDE = (
    r'''
import errno
import json
import os
import resource
import socket
import sys
import warnings

import trio
import trio_uring
from trio_uring import UnsupportedError
from trio_uring._manager import open_ring
from trio_uring._ring import Ring


def emit(**result):
    print("RESULT " + json.dumps(result), flush=True)


def drop_privileges(uid, gid):
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def describe(exc):
    return {
        "type": type(exc).__name__,
        "cause": getattr(exc, "cause", None),
        "errno": getattr(exc, "errno", None),
        "message": str(exc),
        "reason": getattr(exc, "reason", None),
        "remedy": getattr(exc, "remedy", None),
    }


def support(**kwargs):
    """check_support(): the description, or the error described."""
    try:
        info = trio_uring.check_support(**kwargs)
    except UnsupportedError as exc:
        return describe(exc)
    return {"type": None, "info": info}


def try_run(async_fn):
    try:
        return {"type": None, "value": trio_uring.run(async_fn)}
    except Exception as exc:
        return describe(exc)


def seccomp_mode():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Seccomp:"):
                return int(line.split()[1])
    return None


async def tiny():
    """A trio.sleep(0) and a wait_readable on a socketpair."""
    await trio.sleep(0)
    a, b = socket.socketpair()
    with a, b:
        b.send(b"x")
        await trio.lowlevel.wait_readable(a)
        data = a.recv(1)
    stats = trio.lowlevel.current_statistics().io_statistics
    return {"backend": stats.backend, "ring_mode": getattr(stats, "ring_mode", None), "data": data.decode()}
'''
    + SECCOMP_HELPER
)


# ---- running children ------------------------------------------------------


def _child_argv(body: str) -> list[str]:
    return [sys.executable, "-c", CHILD_PRELUDE + "\n" + textwrap.dedent(body)]


def _parse_result(stdout: str, stderr: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    raise AssertionError(f"the child printed no RESULT line\nstdout:\n{stdout}\nstderr:\n{stderr}")


@contextlib.contextmanager
def _sysctl_lock(*, shared: bool = False) -> Iterator[None]:
    """Held exclusively while the sysctls are changed, shared by every other child."""
    with open(SYSCTL_LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run(argv: list[str], *, lock: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a child to completion (with the timeout), output captured as text."""
    with _sysctl_lock(shared=True) if lock else contextlib.nullcontext():
        return subprocess.run(argv, capture_output=True, text=True, timeout=child_timeout(), check=False)


def run_child(body: str) -> dict[str, Any]:
    """Run ``body`` in a fresh interpreter after the prelude; return what it emitted."""
    proc = run(_child_argv(body))
    assert proc.returncode == 0, f"child failed ({proc.returncode})\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return _parse_result(proc.stdout, proc.stderr)


def run_script(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``CHILD_PRELUDE + code`` with ``args`` and return the finished process."""
    return run(_child_argv(code) + list(args))


def _report(*args: str, lock: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m trio_uring *args``."""
    return run([sys.executable, "-m", "trio_uring", *args], lock=lock)


def _read_line(proc: subprocess.Popen[bytes], deadline: float) -> bytes:
    """One line of the child's stdout, or b"" at EOF; fails at the deadline."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"the child did not answer within {child_timeout():.0f} s")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 1)
        if not chunk:
            return line
        line += chunk
    return line


def _require_sysctls(*paths: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing kernel.io_uring_disabled needs root")
    for path in paths:
        if not os.path.exists(path):
            pytest.skip(f"{path} is absent (Linux before 6.6, or no CONFIG_IO_URING)")
        if not os.access(path, os.W_OK):
            pytest.skip(f"{path} is not writable here (read-only /proc/sys?)")


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def run_child_under_sysctls(setup: str, body: str, sysctls: dict[str, str]) -> dict[str, Any]:
    """Run a child whose ``setup`` (e.g. dropping privileges) runs first; then
    set ``sysctls`` (in order), let the child run ``body``, and restore the
    original values (in reverse order) as soon as it has printed its result."""
    _require_sysctls(*sysctls)
    code = textwrap.dedent(setup) + '\nprint("READY", flush=True)\nsys.stdin.readline()\n' + textwrap.dedent(body)
    deadline = time.monotonic() + child_timeout()
    with tempfile.TemporaryFile() as stderr_file:
        proc = subprocess.Popen(_child_argv(code), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr_file)
        assert proc.stdin is not None
        assert proc.stdout is not None

        def child_stderr() -> str:
            stderr_file.seek(0)
            return stderr_file.read().decode(errors="replace")

        try:
            ready = _read_line(proc, deadline)
            assert ready == b"READY\n", f"child did not get ready: {ready!r}\nstderr:\n{child_stderr()}"
            with _sysctl_lock():
                originals: dict[str, str] = {}
                try:
                    for path, value in sysctls.items():
                        with open(path) as f:
                            originals[path] = f.read().strip()
                        _write(path, value)
                    proc.stdin.write(b"GO\n")
                    proc.stdin.flush()
                    line = _read_line(proc, deadline)
                finally:
                    for path, value in reversed(originals.items()):
                        _write(path, value)
                    for path, value in originals.items():
                        with open(path) as f:
                            assert f.read().strip() == value, f"{path} was not restored to {value}"
            rest = proc.stdout.read()
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stdout = (line + rest).decode(errors="replace")
        assert proc.returncode == 0, f"child failed ({proc.returncode})\nstdout:\n{stdout}\nstderr:\n{child_stderr()}"
        return _parse_result(stdout, child_stderr())


def _assert_unsupported(result: dict[str, Any], cause: str, err: int | None, *fragments: str) -> None:
    assert result["type"] == "UnsupportedError", result
    assert result["cause"] == cause, result
    assert result["errno"] == err, result
    for fragment in fragments:
        assert fragment in result["message"], (fragment, result["message"])


# ---- seccomp ----------------------------------------------------------------------

SECCOMP_CASES = [
    pytest.param(errno.EPERM, "Docker", "docker run --security-opt seccomp=", id="docker-EPERM"),
    pytest.param(errno.ENOSYS, "podman", "podman run --security-opt seccomp=", id="podman-ENOSYS"),
]


@pytest.mark.parametrize(("err", "runtime", "remedy"), SECCOMP_CASES)
def test_seccomp_filter(err: int, runtime: str, remedy: str) -> None:
    result = run_child(
        f"""
        before = support()
        deny_io_uring({err})
        r = {{"before": before, "seccomp": seccomp_mode(), "check": support()}}
        r["is_supported"] = trio_uring.is_supported()
        r["run"] = try_run(tiny)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r["installed"] = trio_uring.install(fallback=True)
        r["warnings"] = [[w.category.__name__, str(w.message)] for w in caught]
        r["after_install"] = trio.run(tiny)
        emit(**r)
        """
    )
    # The same process could use io_uring before the filter went on.
    assert result["before"]["type"] is None, result["before"]
    assert result["seccomp"] == 2
    check = result["check"]
    _assert_unsupported(check, "seccomp", err, "seccomp", runtime, remedy, "install(fallback=True)")
    assert remedy in check["remedy"]
    assert result["is_supported"] is False
    # trio_uring.run refuses rather than silently using another backend.
    _assert_unsupported(result["run"], "seccomp", err)
    # install(fallback=True) warns, naming the cause, and leaves trio alone.
    assert result["installed"] is False
    assert len(result["warnings"]) == 1, result["warnings"]
    category, message = result["warnings"][0]
    assert category == "RuntimeWarning"
    assert "seccomp" in message
    assert result["after_install"] == {"backend": "epoll", "ring_mode": None, "data": "x"}


@pytest.mark.parametrize(("err", "runtime", "remedy"), SECCOMP_CASES)
def test_seccomp_report(err: int, runtime: str, remedy: str) -> None:
    """``python -m trio_uring`` under the filter (inherited across execve)."""
    code = f"""
        deny_io_uring({err})
        os.execv(sys.executable, [sys.executable, "-m", "trio_uring", *sys.argv[1:]])
        """
    proc = run_script(textwrap.dedent(code))
    assert proc.returncode == 1, proc
    lines = proc.stdout.splitlines()
    assert lines[-1] == "io_uring: unavailable", proc.stdout
    assert any(line.split() == ["cause:", "seccomp"] for line in lines), proc.stdout
    assert any(line.split() == ["seccomp:", "2", "(filter)"] for line in lines), proc.stdout
    assert runtime in proc.stdout
    assert "--security-opt" in proc.stdout

    proc = run_script(textwrap.dedent(code), "--json")
    assert proc.returncode == 1, proc
    data = json.loads(proc.stdout)
    assert data["io_uring"] == "unavailable"
    assert data["cause"] == "seccomp"
    assert data["errno"] == errno.errorcode[err]
    assert data["seccomp"] == 2
    assert remedy in data["remedy"]


# ---- kernel.io_uring_disabled ---------------------------------------------------------

DROP_TO_NOBODY = f"drop_privileges({NOBODY}, {NOBODY})\n"


def test_sysctl_disabled_2_blocks_even_root() -> None:
    result = run_child_under_sysctls(
        "assert os.geteuid() == 0\n",
        "emit(check=support(), seccomp=seccomp_mode())\n",
        {SYSCTL_DISABLED: "2"},
    )
    assert result["seccomp"] == 0
    _assert_unsupported(
        result["check"],
        "sysctl-disabled",
        errno.EPERM,
        "kernel.io_uring_disabled is 2",
        "sysctl kernel.io_uring_disabled=0",
    )


@pytest.mark.parametrize(
    ("group", "fragments"),
    [
        pytest.param("-1", ["kernel.io_uring_group is -1", "CAP_SYS_ADMIN"], id="no-group"),
        pytest.param("0", ["kernel.io_uring_group", "gid 0", f"uid {NOBODY}"], id="other-group"),
    ],
)
def test_sysctl_disabled_1_blocks_unprivileged(group: str, fragments: list[str]) -> None:
    result = run_child_under_sysctls(
        DROP_TO_NOBODY,
        "emit(check=support())\n",
        {SYSCTL_GROUP: group, SYSCTL_DISABLED: "1"},
    )
    _assert_unsupported(result["check"], "sysctl-disabled", errno.EPERM, "kernel.io_uring_disabled is 1", *fragments)
    assert "io_uring_group" in result["check"]["remedy"]


def test_sysctl_disabled_1_allows_the_group() -> None:
    """The same setting lets in a member of kernel.io_uring_group: the
    sysctl, not the unprivileged user, is what the previous test sees."""
    result = run_child_under_sysctls(
        DROP_TO_NOBODY,
        "emit(check=support(), run=try_run(tiny))\n",
        {SYSCTL_GROUP: str(NOBODY), SYSCTL_DISABLED: "1"},
    )
    assert result["check"]["type"] is None, result["check"]
    assert result["run"]["value"]["backend"] == "io_uring", result["run"]


def test_sysctl_disabled_1_allows_cap_sys_admin() -> None:
    result = run_child_under_sysctls(
        "assert os.geteuid() == 0\n",
        "emit(check=support())\n",
        {SYSCTL_GROUP: "-1", SYSCTL_DISABLED: "1"},
    )
    assert result["check"]["type"] is None, result["check"]


# ---- RLIMIT_MEMLOCK -----------------------------------------------------------------------


@functools.cache
def memlock_charges_rings() -> bool:
    """Does the running kernel charge ring memory to RLIMIT_MEMLOCK?  Linux
    5.1-5.11 and 6.14+ do, 5.12-6.13 do not (and a distribution may backport
    either way), so the kernel is asked: a child without CAP_IPC_LOCK, under a
    limit of 0, creates a bare 8-entry ring with io_uring_setup(2)."""
    result = run_child(
        f"""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        params = (ctypes.c_uint32 * 30)()  # struct io_uring_params
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
        drop_privileges({NOBODY}, {NOBODY})
        fd = libc.syscall(425, 8, ctypes.byref(params))  # io_uring_setup
        emit(errno=ctypes.get_errno() if fd < 0 else None)
        """
    )
    assert result["errno"] in (None, errno.ENOMEM), result
    return result["errno"] == errno.ENOMEM


def test_memlock_zero() -> None:
    result = run_child(
        f"""
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
        drop_privileges({NOBODY}, {NOBODY})  # CAP_IPC_LOCK would bypass the charge
        emit(check=support(), run=try_run(tiny))
        """
    )
    if memlock_charges_rings():
        _assert_unsupported(result["check"], "memlock", errno.ENOMEM, "ulimit -l", "0 KiB", "RLIMIT_MEMLOCK")
        _assert_unsupported(result["run"], "memlock", errno.ENOMEM, "ulimit -l")
    else:
        # this kernel does not charge rings to the limit: a limit of 0 changes nothing
        assert result["check"]["type"] is None, result["check"]
        assert result["check"]["info"]["cq_entries"] == DEFAULT_CQ, result["check"]
        assert result["run"]["type"] is None, result["run"]
        assert result["run"]["value"]["backend"] == "io_uring", result["run"]


SMALL_MEMLOCK = f"""
resource.setrlimit(resource.RLIMIT_MEMLOCK, (64 * 1024, 64 * 1024))
drop_privileges({MEMLOCK_UID}, {MEMLOCK_UID})
"""


def test_memlock_small_limit_shrinks_the_ring() -> None:
    result = run_child(
        SMALL_MEMLOCK
        + f"""
try:
    Ring({DEFAULT_SQ}, {DEFAULT_CQ}).close()
    default = None
except OSError as exc:
    default = exc.errno
with open_ring() as ring:
    emit(default=default, sq=ring.sq_entries, cq=ring.cq_entries, mode=ring.mode)
"""
    )
    if memlock_charges_rings():
        # The default ring does not fit in 64 KiB ...
        assert result["default"] == errno.ENOMEM
        # ... so open_ring settled for a smaller one, still in the fastest mode.
        assert result["sq"] <= DEFAULT_SQ
        assert result["cq"] < DEFAULT_CQ
    else:
        # not charged: the default ring fits, and open_ring does not shrink it
        assert result["default"] is None
        assert (result["sq"], result["cq"]) == (DEFAULT_SQ, DEFAULT_CQ)
    assert result["mode"] == auto_mode()


def test_memlock_small_limit_run() -> None:
    result = run_child(SMALL_MEMLOCK + "emit(run=try_run(tiny))\n")
    assert result["run"] == {
        "type": None,
        "value": {"backend": "io_uring", "ring_mode": auto_mode(), "data": "x"},
    }


def test_memlock_small_limit_runs_after_check_support() -> None:
    """What ``install()`` followed by ``trio.run`` does: create a ring, close
    it, create the run's ring at once; twenty times over."""
    result = run_child(
        SMALL_MEMLOCK
        + """
outcomes = []
for _ in range(20):
    outcomes.append([support()["type"], try_run(tiny).get("cause")])
emit(outcomes=outcomes)
"""
    )
    assert result["outcomes"] == [[None, None]] * 20


# ---- opcodes -------------------------------------------------------------------------------


def test_missing_opcode() -> None:
    result = run_child('emit(plain=support(), nop128=support(required_opcodes=["NOP128"]))\n')
    assert result["plain"]["type"] is None, result["plain"]
    if "NOP128" in result["plain"]["info"]["opcodes"]:
        pytest.skip("this kernel supports NOP128 (opcode 63)")
    _assert_unsupported(
        result["nop128"], "missing-opcode", None, "NOP128", "lacks the opcode NOP128; Linux 6.19 and newer have it"
    )

    proc = _report("--require", "NOP128")
    assert proc.returncode == 1, proc
    assert any(line.split() == ["cause:", "missing-opcode"] for line in proc.stdout.splitlines()), proc.stdout


# ---- python -m trio_uring where io_uring works -----------------------------------------------


def _text_keys(stdout: str) -> list[str]:
    """The ``key:`` labels of the report (continuation lines are indented)."""
    return [line.split(":", 1)[0] for line in stdout.splitlines() if line and not line[0].isspace()]


def test_report_usable() -> None:
    proc = _report()
    assert proc.returncode == 0, proc
    lines = proc.stdout.splitlines()
    assert lines[-1] == "io_uring: usable"
    assert any(line.split() == ["ring_mode:", auto_mode()] for line in lines), proc.stdout
    assert all(len(line) <= 88 for line in lines), proc.stdout
    words = proc.stdout.split()
    for name in ("RECV", "SEND", "ACCEPT", "POLL_ADD", "ASYNC_CANCEL"):
        assert name in words
    kernel = next(line for line in lines if line.startswith("kernel:"))
    assert kernel.split() == ["kernel:", os.uname().release]

    with _sysctl_lock(shared=True):  # the sysctls stay as the child saw them
        proc_json = _report("--json", lock=False)
        sysctls = {
            key: int(Path(path).read_text()) if os.path.exists(path) else "absent"
            for key, path in (("kernel.io_uring_disabled", SYSCTL_DISABLED), ("kernel.io_uring_group", SYSCTL_GROUP))
        }
    assert proc_json.returncode == 0, proc_json
    data = json.loads(proc_json.stdout)
    assert sorted(data) == sorted(_text_keys(proc.stdout))
    assert data["io_uring"] == "usable"
    assert data["ring_mode"] == auto_mode()
    assert data["kernel"] == os.uname().release
    assert {"RECV", "SEND", "ACCEPT"} <= set(data["opcodes"])
    assert {"NODROP", "EXT_ARG", "FAST_POLL"} <= set(data["features"])
    mode_flag = {"defer": "DEFER_TASKRUN", "coop": "COOP_TASKRUN", "plain": "CQSIZE"}[auto_mode()]
    assert mode_flag in data["setup_flags"]
    assert data["kernel_profile"] == os.environ.get("TRIO_URING_KERNEL", "native")
    assert isinstance(data["fallbacks"], list)
    assert (data["sq_entries"], data["cq_entries"]) == (DEFAULT_SQ, DEFAULT_CQ)
    for key, value in sysctls.items():
        assert data[key] == value


def test_console_script() -> None:
    script = Path(sys.executable).parent / "trio-uring"
    if not script.exists():
        pytest.skip(f"{script} is not installed")
    proc = run([str(script), "--json"])
    assert proc.returncode == 0, proc
    assert json.loads(proc.stdout)["io_uring"] == "usable"


# ---- every entry point, under every off-switch ------------------------------------------

#: ``drop_capabilities(*caps)``: take capabilities out of this process's
#: bounding, permitted and effective sets, keeping uid 0 (so that the
#: interpreter and the tree, which may live under /root, stay readable).
#: Without CAP_SYS_ADMIN kernel.io_uring_disabled=1 applies to us, without
#: CAP_IPC_LOCK RLIMIT_MEMLOCK does.
CAPS_HELPER = r"""
import ctypes as _ctypes

CAP_IPC_LOCK, CAP_SYS_ADMIN = 14, 21


def drop_capabilities(*caps):
    libc = _ctypes.CDLL(None, use_errno=True)
    for cap in caps:
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(_ctypes.get_errno(), "PR_CAPBSET_DROP")

    class Header(_ctypes.Structure):
        _fields_ = [("version", _ctypes.c_uint32), ("pid", _ctypes.c_int)]

    class Data(_ctypes.Structure):
        _fields_ = [(name, _ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]

    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
    if libc.syscall(125, _ctypes.byref(header), data) != 0:  # capget
        raise OSError(_ctypes.get_errno(), "capget")
    for cap in caps:
        for field in ("effective", "permitted", "inheritable"):
            setattr(data[cap // 32], field, getattr(data[cap // 32], field) & ~(1 << cap % 32))
    if libc.syscall(126, _ctypes.byref(header), data) != 0:  # capset
        raise OSError(_ctypes.get_errno(), "capset")
"""

#: Everything the entry points need is imported (and a pytest test file
#: written) before the off-switch goes on.
ENTRY_POINTS_SETUP = r"""
import contextlib, io, runpy, tempfile, textwrap
import pytest

import trio_uring
import trio_uring.__main__

test_dir = tempfile.mkdtemp()
test_file = os.path.join(test_dir, "test_tiny.py")
with open(test_file, "w") as f:
    f.write("import trio\n\ndef test_tiny():\n    trio.run(trio.sleep, 0)\n")


def captured(fn, *args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = fn(*args)
        except SystemExit as exc:
            code = exc.code
    return {"code": int(code), "stdout": out.getvalue(), "stderr": err.getvalue()}


def python_m_trio_uring():
    sys.argv = ["trio_uring", "--json"]
    runpy.run_module("trio_uring", run_name="__main__", alter_sys=True)
    return 0


def pytest_trio_uring(*extra):
    return pytest.main(["--trio-uring", *extra, "-q", "-p", "no:cacheprovider", "--rootdir", test_dir, test_file])


# pytest once on trio's own backend first: every module and plugin it loads
# is then loaded, and the entry points take some 40 ms in all (the window in
# which a sysctl test changes the machine-wide setting)
warm = captured(pytest.main, ["-q", "-p", "no:cacheprovider", "--rootdir", test_dir, test_file])
assert warm["code"] == 0, warm
"""

#: Every entry point, one after the other, in the child.
ENTRY_POINTS_BODY = r"""
r = {"check_support": support(), "is_supported": trio_uring.is_supported(), "run": try_run(tiny)}
try:
    trio_uring.install()
    r["install"] = {"type": None}
except UnsupportedError as exc:
    r["install"] = describe(exc)
r["installed_after_refusal"] = trio_uring.is_installed()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    r["install_fallback"] = trio_uring.install(fallback=True)
r["fallback_warnings"] = [str(w.message) for w in caught]
r["trio_run_after_fallback"] = trio.run(tiny)
trio_uring.uninstall()
r["python_m"] = captured(python_m_trio_uring)
r["pytest"] = captured(pytest_trio_uring)
r["pytest_fallback"] = captured(pytest_trio_uring, "--trio-uring-fallback")
emit(**r)
"""

OFF_SWITCHES = [
    pytest.param("seccomp-EPERM", "seccomp", errno.EPERM, "seccomp", id="seccomp-EPERM"),
    pytest.param("seccomp-ENOSYS", "seccomp", errno.ENOSYS, "seccomp", id="seccomp-ENOSYS"),
    pytest.param("sysctl-2", "sysctl-disabled", errno.EPERM, "kernel.io_uring_disabled is 2", id="io_uring_disabled-2"),
    pytest.param(
        "sysctl-1", "sysctl-disabled", errno.EPERM, "kernel.io_uring_disabled is 1", id="io_uring_disabled-1-no-admin"
    ),
    pytest.param("memlock", "memlock", errno.ENOMEM, "ulimit -l", id="memlock-0-no-ipc-lock"),
]


@pytest.mark.parametrize(("switch", "cause", "err", "fragment"), OFF_SWITCHES)
def test_every_entry_point_under_every_off_switch(switch: str, cause: str, err: int, fragment: str) -> None:
    """trio_uring.run, install(), install(fallback=True) (and the trio.run
    after it), check_support/is_supported, python -m trio_uring and
    pytest --trio-uring (with and without --trio-uring-fallback), in one
    child where io_uring is switched off: each answers with the cause, none
    hangs (every child has a timeout).  The two entry points that are
    commands run in the child itself (runpy, pytest.main), so that the
    machine-wide sysctl is changed for a fraction of a second only."""
    setup = CAPS_HELPER + ENTRY_POINTS_SETUP
    if switch.startswith("seccomp"):
        result = run_child(setup + f"deny_io_uring({err})\n" + ENTRY_POINTS_BODY)
    elif switch == "memlock":
        if os.geteuid() != 0:
            pytest.skip("dropping CAP_IPC_LOCK while keeping the tree readable needs root")
        if not memlock_charges_rings():
            pytest.skip(
                f"this kernel ({os.uname().release}) does not charge ring memory to RLIMIT_MEMLOCK "
                "(Linux 5.12-6.13 do not): a limit of 0 does not switch io_uring off here "
                "(test_memlock_zero checks that)"
            )
        code = "resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))\ndrop_capabilities(CAP_IPC_LOCK)\n"
        result = run_child(setup + code + ENTRY_POINTS_BODY)
    elif switch == "sysctl-2":
        result = run_child_under_sysctls(setup, ENTRY_POINTS_BODY, {SYSCTL_DISABLED: "2"})
    else:
        result = run_child_under_sysctls(
            setup + "drop_capabilities(CAP_SYS_ADMIN)\n",
            ENTRY_POINTS_BODY,
            {SYSCTL_GROUP: "-1", SYSCTL_DISABLED: "1"},
        )

    for entry in ("check_support", "run", "install"):
        _assert_unsupported(result[entry], cause, err, fragment)
    assert result["is_supported"] is False
    assert result["installed_after_refusal"] is False
    # install(fallback=True): a warning naming the cause, and trio's own backend
    assert result["install_fallback"] is False
    assert len(result["fallback_warnings"]) == 1, result["fallback_warnings"]
    assert fragment in result["fallback_warnings"][0]
    assert result["trio_run_after_fallback"]["backend"] == "epoll"
    # python -m trio_uring --json: exit status 1 and the cause
    python_m = result["python_m"]
    assert python_m["code"] == 1, python_m
    report = json.loads(python_m["stdout"])
    assert report["io_uring"] == "unavailable"
    assert report["cause"] == cause
    assert report["errno"] == errno.errorcode[err]
    # pytest --trio-uring: a usage error naming the cause, before any test runs
    assert result["pytest"]["code"] == pytest.ExitCode.USAGE_ERROR, result["pytest"]
    assert "--trio-uring" in result["pytest"]["stderr"]
    assert fragment in result["pytest"]["stderr"], result["pytest"]
    # ... and with --trio-uring-fallback, the test runs on trio's own backend
    assert result["pytest_fallback"]["code"] == pytest.ExitCode.OK, result["pytest_fallback"]
    assert "1 passed" in result["pytest_fallback"]["stdout"]
