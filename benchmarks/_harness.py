"""Child processes for the benchmarks: servers, load generators, counters.

Every child starts in a session (so a process group) of its own, is pinned to
one CPU, has a time limit, and is killed with its whole group when the code
that started it leaves, normally or not (``finally`` and :func:`kill_all`).
Nothing here changes a machine-wide setting: open-file limits are raised by
each child for itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
HOST = "127.0.0.1"


class BenchError(Exception):
    """A benchmark could not be measured (not: it was slow)."""


# ---------------------------------------------------------------- CPUs


def pick_cores() -> tuple[int, int, str]:
    """(server core, load-generator core, a note)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= 2:
        return cores[0], cores[1], f"server on CPU {cores[0]}, load generator on CPU {cores[1]}"
    return cores[0], cores[0], f"only CPU {cores[0]} is available: server and load generator share it"


SERVER_CORE, LOAD_CORE, PINNING_NOTE = pick_cores()


# ---------------------------------------------------------------- process groups

_children: dict[int, subprocess.Popen[bytes]] = {}


#: ``spawn(cpu=ANY_CPU)``: free to run on every CPU of the machine
ANY_CPU = -1


def spawn(argv: Sequence[str], *, cpu: int | None, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session, pinned to ``cpu`` (None: as this
    process is; ``ANY_CPU``: every CPU); remembered until :func:`reap`."""

    def pin() -> None:
        if cpu == ANY_CPU:
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
        elif cpu is not None:
            os.sched_setaffinity(0, {cpu})

    proc: subprocess.Popen[bytes] = subprocess.Popen(
        list(argv), start_new_session=True, preexec_fn=pin, cwd=ROOT, **kwargs
    )
    _children[proc.pid] = proc
    return proc


def reap(proc: subprocess.Popen[bytes], grace: float = 0.0) -> None:
    """Wait up to ``grace`` seconds, then kill the child's whole process group."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _children.pop(proc.pid, None)


def kill_all() -> None:
    for proc in list(_children.values()):
        reap(proc)


class LineReader:
    """Lines from a child's pipe, each with a timeout."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.fd = stream.fileno()
        self.pending = b""

    def readline(self, timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
            readable, _, _ = select.select([self.fd], [], [], left)
            if readable:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise BenchError(f"{what}: the process closed its output")
                self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()


def tail(file: IO[bytes], lines: int = 15) -> str:
    file.seek(0)
    return "\n".join(file.read().decode(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------- the package under test


def tree_sha256(package: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def package_snapshot() -> Iterator[dict[str, Any]]:
    """Make every child import a copy of trio_uring/ taken now.

    One run then measures one version of the package even if someone edits
    the work tree meanwhile (a server started later would otherwise import
    other code than one started earlier).  The copy goes first on the
    children's PYTHONPATH, ahead of the editable install.
    """
    source = ROOT / "trio_uring"
    with tempfile.TemporaryDirectory(prefix="trio_uring-bench-") as scratch:
        shutil.copytree(source, Path(scratch) / "trio_uring", ignore=shutil.ignore_patterns("__pycache__"))
        digest = tree_sha256(Path(scratch) / "trio_uring")
        previous = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = scratch + (os.pathsep + previous if previous else "")
        try:
            probe = subprocess.run(
                [sys.executable, "-c", "import trio_uring; print(trio_uring.__file__)"],
                capture_output=True,
                text=True,
                check=False,
                cwd=BENCH,  # sys.path[0] as for benchmarks/servers.py
            )
            if not probe.stdout.strip().startswith(scratch):
                raise BenchError(f"children do not import the snapshot: {probe.stdout.strip()} {probe.stderr[-300:]}")
            info: dict[str, Any] = {"sha256": digest, "measured": "a copy of trio_uring/ taken when the run started"}
            yield info
            info["work_tree_changed_during_run"] = tree_sha256(source) != digest
        finally:
            if previous is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = previous


# ---------------------------------------------------------------- servers


class Server:
    """``benchmarks/servers.py KIND BACKEND`` in its own process on the server core."""

    def __init__(self, kind: str, backend: str, *, nofile: int = 4096, max_seconds: float = 600.0) -> None:
        self.kind, self.backend = kind, backend
        self.argv = [
            sys.executable,
            str(BENCH / "servers.py"),
            kind,
            backend,
            "--cpu",
            str(SERVER_CORE),
            "--nofile",
            str(nofile),
            "--max-seconds",
            str(max_seconds),
        ]

    def __enter__(self) -> Server:
        self.stderr = tempfile.TemporaryFile()
        self.proc = spawn(self.argv, cpu=SERVER_CORE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr)
        assert self.proc.stdout is not None
        self.reader = LineReader(self.proc.stdout)
        try:
            hello = json.loads(self.reader.readline(30.0, f"the {self.backend} {self.kind} server to start"))
        except BenchError as exc:
            self.__exit__(None, None, None)
            raise BenchError(f"{exc}\n{tail(self.stderr)}") from None
        self.port: int = hello["port"]
        self.pid: int = self.proc.pid
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # the server's signal to exit
        reap(self.proc, grace=5.0)
        self.stderr.close()

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(b"stats\n")
            self.proc.stdin.flush()
            return dict(json.loads(self.reader.readline(10.0, f"{self.backend} server statistics")))
        except (BenchError, OSError) as exc:
            raise BenchError(f"{exc}\n{tail(self.stderr)}") from None

    def wait_connections(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (live := self.stats()["connections"]) != count:
            if time.monotonic() > deadline:
                raise BenchError(f"{self.backend} server has {live} connections after {timeout:g} s, expected {count}")
            time.sleep(0.05)

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        if match is None:
            raise BenchError(f"no VmRSS in /proc/{self.pid}/status")
        return int(match.group(1))

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- load generators


def compile_loadgen() -> tuple[list[str] | None, str]:
    """Compile loadgen.c with the system's cc; (argv prefix or None, description)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None, "no C compiler (cc) found"
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
    source, binary = BENCH / "loadgen.c", RESULTS / "build" / "loadgen"
    binary.parent.mkdir(parents=True, exist_ok=True)
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        scratch = binary.with_name(f"loadgen.{os.getpid()}.tmp")
        proc = subprocess.run(
            [cc, "-O2", "-Wall", "-o", str(scratch), str(source)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            scratch.unlink(missing_ok=True)
            return None, f"{version}: compiling loadgen.c failed: {proc.stderr.strip()[-300:]}"
        os.replace(scratch, binary)  # atomic: a concurrent run sees the old or the new one
    return [str(binary)], f"loadgen.c compiled with {version} -O2"


def choose_loadgen(which: str) -> tuple[list[str], dict[str, Any]]:
    python = [sys.executable, str(BENCH / "loadgen.py")]
    if which == "python":
        return python, {"kind": "python", "description": "loadgen.py (chosen with --loadgen python)"}
    prefix, description = compile_loadgen()
    if prefix is not None:
        return prefix, {"kind": "c", "description": description}
    if which == "c":
        raise SystemExit(f"--loadgen c: {description}")
    return python, {"kind": "python", "description": f"loadgen.py, because {description}"}


def run_loadgen(prefix: list[str], mode: str, port: int, *args: float | int, timeout: float) -> dict[str, Any]:
    """Run one bounded load-generator pass on the load core; its JSON result."""
    argv = [*prefix, mode, HOST, str(port), *(str(a) for a in args)]
    proc = spawn(argv, cpu=LOAD_CORE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"load generator timed out after {timeout:g} s: {' '.join(argv)}") from None
    finally:
        reap(proc)
    lines = out.decode().strip().splitlines()
    if not lines:
        raise BenchError(f"load generator printed nothing (exit {proc.returncode}): {err.decode()[-500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    if result.get("errors"):
        raise BenchError(f"load generator: {result.get('first_error')} ({' '.join(argv)})")
    return result


@contextlib.contextmanager
def idle_clients(prefix: list[str], port: int, conns: int, size: int, hold: float) -> Iterator[dict[str, Any]]:
    """``loadgen idle``: yields once all connections are open, closes them on exit."""
    argv = [*prefix, "idle", HOST, str(port), str(conns), str(size), str(hold)]
    proc = spawn(argv, cpu=LOAD_CORE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        ready: dict[str, Any] = json.loads(LineReader(proc.stdout).readline(hold, f"{conns} idle connections"))
        if not ready.get("ready"):
            raise BenchError(f"idle clients: {ready.get('first_error')}")
        yield ready
    finally:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        reap(proc, grace=10.0)


# ---------------------------------------------------------------- wrk


def wrk_version() -> dict[str, Any]:
    path = shutil.which("wrk")
    if path is None:
        return {
            "available": False,
            "reason": "wrk is not installed (Debian: apt-get install wrk); HTTP is measured with our own "
            "keep-alive load generator instead",
        }
    proc = subprocess.run([path, "-v"], capture_output=True, text=True, check=False)
    return {"available": True, "path": path, "version": (proc.stdout + proc.stderr).split("\n")[0].strip()}


def run_wrk(port: int, conns: int, seconds: int) -> dict[str, Any]:
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", f"http://{HOST}:{port}/"]
    proc = spawn(argv, cpu=LOAD_CORE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        out_b, err_b = proc.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk timed out: {' '.join(argv)}") from None
    finally:
        reap(proc)
    out = out_b.decode()
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if rate is None or total is None:
        raise BenchError(f"could not read wrk's output (exit {proc.returncode}): {out[-400:]} {err_b.decode()[-200:]}")
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rate": float(rate.group(1)),
        "requests": int(total.group(1)),
        "socket_errors": sum(int(g) for g in socket_errors.groups()) if socket_errors else 0,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "command": " ".join(argv[:-1]) + " http://127.0.0.1:PORT/",
    }


# ---------------------------------------------------------------- syscall counters


def syscall_counter() -> dict[str, Any]:
    """perf (raw_syscalls:sys_enter) if it works here, else strace -c -f, else unavailable."""
    perf = shutil.which("perf")
    if perf is not None:
        probe = subprocess.run(
            [perf, "stat", "-x,", "-e", "raw_syscalls:sys_enter", "--", "true"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if probe.returncode == 0 and re.search(r"^\d+,.*raw_syscalls:sys_enter", probe.stderr, re.MULTILINE):
            return {"available": True, "tool": "perf", "command": "perf stat -e raw_syscalls:sys_enter -p PID"}
        perf_problem = f"perf cannot count raw_syscalls:sys_enter here: {probe.stderr.strip()[-200:]}"
    else:
        perf_problem = "perf is not installed"
    strace = shutil.which("strace")
    if strace is not None:
        return {"available": True, "tool": "strace", "command": "strace -c -f -p PID", "note": perf_problem}
    return {
        "available": False,
        "reason": f"{perf_problem}; strace is not installed either (Debian: apt-get install strace linux-perf)",
    }


@contextlib.contextmanager
def count_syscalls(tool: str, pid: int) -> Iterator[dict[str, int]]:
    """Count the syscalls ``pid`` makes inside the block; the total lands in the yielded dict."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "counts"
        if tool == "perf":
            argv = ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-o", str(out), "-p", str(pid)]
        else:
            argv = ["strace", "-c", "-f", "-o", str(out), "-p", str(pid)]
        proc = spawn(argv, cpu=LOAD_CORE, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        counts: dict[str, int] = {}
        try:
            time.sleep(0.5)  # let it attach
            if proc.poll() is not None:
                assert proc.stderr is not None
                raise BenchError(f"{tool} exited at once: {proc.stderr.read().decode()[-300:]}")
            yield counts
            proc.send_signal(signal.SIGINT)  # both write their totals on SIGINT
            proc.wait(timeout=20)
        finally:
            reap(proc)
        text = out.read_text() if out.exists() else ""
        counts["syscalls"] = parse_syscall_count(tool, text)


def parse_syscall_count(tool: str, text: str) -> int:
    if tool == "perf":
        for line in text.splitlines():
            if "raw_syscalls:sys_enter" in line:
                value = line.split(",")[0]
                if not value.isdigit():
                    raise BenchError(f"perf did not count: {line}")
                return int(value)
    else:
        for line in text.splitlines():
            fields = line.split()
            if fields and fields[-1] == "total":
                return int(fields[3])
    raise BenchError(f"no total in {tool}'s output: {text[-300:]!r}")
