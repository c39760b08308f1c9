"""trio_uring.workers with real processes, sockets and signals.

Each test runs tests/workers_server.py (a supervisor and its workers) in a
process group of its own, talks to it over loopback, signals it, and checks
afterwards that no process of the group is left.  Nothing here depends on
timing except generous upper bounds (a slow machine waits longer, it does
not fail).
"""

from __future__ import annotations

import contextlib
import errno
import json
import multiprocessing
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_uring
import trio_uring.workers
from trio_uring._reuseport import SO_INCOMING_CPU, open_reuseport_listeners

SERVER = Path(__file__).resolve().parent / "workers_server.py"
#: upper bound for anything to happen (processes start slowly on a loaded machine)
PATIENCE = 60.0
CPUS = sorted(os.sched_getaffinity(0))


class Server:
    """workers_server.py in its own session; stderr collected by a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.out: list[str] = []
        self.cond = threading.Condition()
        self.threads = [
            threading.Thread(target=self._collect, args=(self.proc.stderr, self.lines), daemon=True),
            threading.Thread(target=self._collect, args=(self.proc.stdout, self.out), daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _collect(self, stream: Any, into: list[str]) -> None:
        for line in stream:
            with self.cond:
                into.append(line.rstrip("\n"))
                self.cond.notify_all()

    def wait_line(self, pattern: str, *, count: int = 1, stdout: bool = False) -> list[re.Match[str]]:
        lines = self.out if stdout else self.lines
        deadline = time.monotonic() + PATIENCE
        with self.cond:
            while True:
                found = [m for line in lines if (m := re.search(pattern, line))]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reading()):
                    raise AssertionError(f"no {count} x {pattern!r} in:\n" + "\n".join(self.lines + self.out))
                self.cond.wait(min(left, 0.5))

    def _reading(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)

    @property
    def port(self) -> int:
        return int(self.wait_line(r"port (\d+) on")[0][1])

    def children(self) -> set[int]:
        return _children(self.proc.pid)

    def group(self) -> set[int]:
        """Every live process of the server's process group (session)."""
        found = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[2]) == self.proc.pid and fields[0] != "Z":
                        found.add(int(entry))
        return found

    def wait(self) -> int:
        code = self.proc.wait(timeout=PATIENCE)
        for thread in self.threads:
            thread.join(PATIENCE)
        return code

    def stderr(self) -> str:
        return "\n".join(self.lines)

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found.update(int(x) for x in (task / "children").read_text().split())
    return found


@contextlib.contextmanager
def server(*args: str) -> Iterator[Server]:
    srv = Server(*args)
    try:
        yield srv
    finally:
        leftovers = wait_gone(srv.group(), timeout=PATIENCE) if srv.proc.poll() is not None else set()
        srv.kill_group()
        assert not leftovers, f"processes left behind: {leftovers}"


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = {pid for pid in pids if _alive(pid)}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def ask(port: int, request: str, timeout: float = PATIENCE) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.decode().strip()


def who(port: int) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(ask(port, "who"))
    return result


def wait_for_workers(port: int, count: int) -> dict[int, dict[str, Any]]:
    """Connect until ``count`` different workers have answered (the kernel
    spreads connections by a hash of their addresses; each new connection has
    a new source port)."""
    seen: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + PATIENCE
    while len(seen) < count:
        assert time.monotonic() < deadline, f"only {len(seen)} of {count} workers answered: {seen}"
        try:
            info = who(port)
        except ConnectionRefusedError:  # no worker listening yet
            time.sleep(0.05)
            continue
        seen[info["pid"]] = info
    return seen


def options(**kwargs: Any) -> str:
    return json.dumps(kwargs)


# ---- serving ------------------------------------------------------------------------------


def test_two_workers_both_serve_on_io_uring_and_stop_on_sigterm() -> None:
    with server("serve", options(workers=2)) as srv:
        seen = wait_for_workers(srv.port, 2)
        assert {info["backend"] for info in seen.values()} == {"io_uring"}
        assert set(seen) == srv.children() & set(seen)  # the workers are the supervisor's children
        assert srv.proc.pid not in seen
        assert ask(srv.port, "hello") == "hello"
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait() == 0, srv.stderr()
        assert not wait_gone(set(seen), PATIENCE)
        srv.wait_line(r"worker \d \(pid \d+\) exited with status 0", count=2)


def test_sigint_to_the_process_group_stops_gracefully() -> None:
    """Ctrl-C in a terminal: SIGINT to the supervisor and every worker at once."""
    with server("serve", options(workers=2)) as srv:
        wait_for_workers(srv.port, 2)
        os.killpg(srv.proc.pid, signal.SIGINT)
        assert srv.wait() == 0, srv.stderr()


@pytest.mark.skipif(len(CPUS) < 2, reason="needs 2 CPUs in the affinity mask")
def test_pinning() -> None:
    with server("serve", options(workers=2, cpus=CPUS[:2])) as srv:
        seen = wait_for_workers(srv.port, 2)
        assert sorted(info["affinity"] for info in seen.values()) == [[CPUS[0]], [CPUS[1]]]
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait() == 0, srv.stderr()


def _linux_at_least(major: int, minor: int) -> bool:
    found = re.match(r"(\d+)\.(\d+)", platform.release())
    return found is not None and (int(found[1]), int(found[2])) >= (major, minor)


CLIENT_ON_CPU = """
import json, os, socket, sys
cpu, port, count = (int(x) for x in sys.argv[1:])
os.sched_setaffinity(0, {cpu})
pids = []
for _ in range(count):
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"who\\n")
        reply = b""
        while not reply.endswith(b"\\n"):
            reply += s.recv(4096)
        pids.append(json.loads(reply)["affinity"])
print(json.dumps(pids))
"""


@pytest.mark.skipif(len(CPUS) < 2, reason="needs 2 CPUs in the affinity mask")
@pytest.mark.skipif(
    not _linux_at_least(6, 2),
    reason="a reuseport group honours SO_INCOMING_CPU from Linux 6.2 (soreuseport: Fix socket selection for "
    "SO_INCOMING_CPU)",
)
def test_incoming_cpu_hands_connections_to_the_worker_on_that_cpu() -> None:
    """Over loopback the SYN is processed on the connecting process's CPU:
    a client pinned to CPU n is served by the worker pinned to CPU n."""
    with server("serve", options(workers=2, cpus=CPUS[:2], incoming_cpu=True)) as srv:
        wait_for_workers(srv.port, 2)
        for cpu in CPUS[:2]:
            proc = subprocess.run(
                [sys.executable, "-c", CLIENT_ON_CPU, str(cpu), str(srv.port), "20"],
                capture_output=True,
                text=True,
                timeout=PATIENCE * 2,
                check=True,
            )
            assert json.loads(proc.stdout) == [[cpu]] * 20
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait() == 0, srv.stderr()


def test_open_reuseport_listeners_sets_the_options() -> None:
    async def main() -> None:
        first = await open_reuseport_listeners(0, host="127.0.0.1", incoming_cpu=CPUS[0])
        port = first[0].socket.getsockname()[1]
        second = await open_reuseport_listeners(port, host="127.0.0.1")  # the same port: reuseport
        for listener in first + second:
            assert listener.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert first[0].socket.getsockopt(socket.SOL_SOCKET, SO_INCOMING_CPU) == CPUS[0]
        assert second[0].socket.getsockopt(socket.SOL_SOCKET, SO_INCOMING_CPU) == -1
        for listener in first + second:
            await listener.aclose()

    trio_uring.run(main)


# ---- graceful stop --------------------------------------------------------------------------


def _start_request(port: int, request: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
    sock.sendall(request.encode() + b"\n")
    return sock


def _read_reply(sock: socket.socket) -> bytes:
    reply = b""
    with sock:
        while chunk := sock.recv(4096):
            reply += chunk
            if reply.endswith(b"\n"):
                break
    return reply


def test_stop_lets_running_handlers_finish_and_accepts_no_more() -> None:
    with server("serve", options(workers=1, grace_period=PATIENCE)) as srv:
        [pid] = wait_for_workers(srv.port, 1)
        busy = _start_request(srv.port, "sleep 2")
        time.sleep(0.5)  # the request reached the handler (if not, it is refused: the test fails)
        srv.proc.send_signal(signal.SIGTERM)
        # the listener closes: new connections are refused while the handler runs
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert _alive(pid)
        assert _read_reply(busy) == b"slept\n"
        assert srv.wait() == 0, srv.stderr()


def test_grace_period_then_handlers_are_cancelled() -> None:
    with server("serve", options(workers=1, grace_period=0.5)) as srv:
        wait_for_workers(srv.port, 1)
        busy = _start_request(srv.port, "sleep 3600")
        time.sleep(0.5)
        srv.proc.send_signal(signal.SIGTERM)
        assert _read_reply(busy) == b""  # closed by the cancelled handler, no reply
        assert srv.wait() == 0, srv.stderr()  # cancelling at the deadline is not a failure
        srv.wait_line(r"still running 0.5 s after the stop: cancelled")


def test_run_workers_main_sees_stopping() -> None:
    with server("run", "wait", options(workers=2)) as srv:
        srv.wait_line(r"worker \d \(pid \d+\) listening", count=2)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait() == 0, srv.stderr()
        stopped = [json.loads(line) for line in srv.out]
        assert sorted(x["index"] for x in stopped) == [0, 1]


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_stop_while_the_workers_are_starting(start_method: str) -> None:
    """SIGTERM right after the workers were started, before their Python has
    run any of our code: they stop gracefully all the same (a stop signal
    that arrives that early stays pending until their handler is in place)."""
    # grace_period: a worker still importing trio when the stop comes may take long on a loaded machine
    with server("run", "wait", options(workers=2, start_method=start_method, grace_period=PATIENCE)) as srv:
        srv.wait_line(r"worker 1 \(pid \d+\) started")
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait() == 0, srv.stderr()
        assert sorted(json.loads(line)["index"] for line in srv.out) == [0, 1]


def test_run_workers_returns_when_every_main_returned() -> None:
    with server("run", "return", options(workers=2)) as srv:
        assert srv.wait() == 0, srv.stderr()
        reports = [json.loads(line) for line in srv.out]
        assert sorted(r["index"] for r in reports) == [0, 1]
        assert {r["backend"] for r in reports} == {"io_uring"}
    with server("run", "return", options(workers=2, backend="trio")) as srv:
        assert srv.wait() == 0, srv.stderr()
        assert {json.loads(line)["backend"] for line in srv.out} == {"epoll"}


def test_run_workers_with_its_own_listeners() -> None:
    with server("run", "serve", options(workers=2, port=0, host="127.0.0.1")) as srv:
        seen = wait_for_workers(srv.port, 2)
        assert {info["backend"] for info in seen.values()} == {"io_uring"}
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait() == 0, srv.stderr()


# ---- failures ---------------------------------------------------------------------------------


def test_crashed_worker_is_restarted_and_the_exit_status_says_so() -> None:
    with server("serve", options(workers=1)) as srv:
        [first] = wait_for_workers(srv.port, 1)
        with contextlib.suppress(OSError):
            ask(srv.port, "crash")
        assert not wait_gone({first}, PATIENCE)
        srv.wait_line(rf"worker 0 \(pid {first}\) exited with status 3; restarting it in 0.1 s")
        # a new process serves
        deadline = time.monotonic() + PATIENCE
        while True:
            # Refused until the new worker listens; seen once under CI (not
            # understood yet, noted in the closing note): reset while it starts.
            with contextlib.suppress(ConnectionRefusedError, ConnectionResetError):
                second = who(srv.port)
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert second["pid"] != first
        assert second["backend"] == "io_uring"
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait() == 1
        srv.wait_line(rf"WorkersFailed: 1 worker failure\(s\): worker 0 \(pid {first}\) exited with status 3")


def test_a_worker_that_keeps_failing_stops_the_server() -> None:
    with server("run", "fail", options(workers=2, max_restarts=2)) as srv:
        assert srv.wait() == 1
        srv.wait_line(r"restarting it in 0.1 s")
        srv.wait_line(r"restarting it in 0.2 s")
        srv.wait_line(r"needed more than 2 restart\(s\) within 60 s: stopping the server")
        [line] = srv.wait_line(r"^WorkersFailed: .*")
        assert "RuntimeError: worker" in srv.stderr()
        assert "exited with status 1" in line[0]


def test_a_worker_that_does_not_stop_is_killed() -> None:
    with server("run", "stuck", options(workers=1, grace_period=0.5)) as srv:
        [match] = srv.wait_line(r"worker 0 \(pid (\d+)\) listening")
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait() == 1
        srv.wait_line(r"killed with SIGKILL: still running 5.5 s after the stop")
        assert not _alive(int(match[1]))


def test_second_signal_kills_at_once() -> None:
    with server("run", "stuck", options(workers=1, grace_period=PATIENCE)) as srv:
        srv.wait_line(r"worker 0 \(pid (\d+)\) listening")
        srv.proc.send_signal(signal.SIGTERM)
        srv.wait_line(r"stopping: SIGTERM to every worker")
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.wait() == 1
        srv.wait_line(r"killed with SIGKILL: a second stop signal")


@pytest.mark.parametrize("how", ["serve", "stuck"])
def test_supervisor_killed_with_sigkill_leaves_no_worker(how: str) -> None:
    """The workers notice (PR_SET_PDEATHSIG, the parent sentinel) and exit:
    gracefully, or after the grace period if their trio run is stuck."""
    args = (
        ("serve", options(workers=2, grace_period=1.0))
        if how == "serve"
        else ("run", "stuck", options(workers=2, grace_period=1.0))
    )
    with server(*args) as srv:
        if how == "serve":
            workers = set(wait_for_workers(srv.port, 2))
        else:
            workers = {int(m[1]) for m in srv.wait_line(r"worker \d \(pid (\d+)\) listening", count=2)}
        srv.proc.kill()
        srv.wait()
        assert not wait_gone(workers, PATIENCE), "orphaned workers"


# ---- bad input ----------------------------------------------------------------------------------


@pytest.fixture
def no_new_children() -> Iterator[None]:
    """The test body starts no process that outlives it (children this
    pytest process already had, from earlier test modules, don't count)."""
    before = _children(os.getpid())
    yield
    assert multiprocessing.active_children() == []
    assert _children(os.getpid()) - before == set()


async def _noop(worker: trio_uring.workers.Worker) -> None:
    pass


async def _handler(stream: trio.SocketStream) -> None:
    pass


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"workers": 0}, ValueError, "workers must be at least 1, not 0"),
        ({"workers": -3}, ValueError, "workers must be at least 1, not -3"),
        ({"workers": "2"}, TypeError, "workers must be an int, not '2'"),
        ({"workers": 2.0}, TypeError, "workers must be an int, not 2.0"),
        ({"workers": 1, "cpus": [os.cpu_count()]}, ValueError, f"CPU {os.cpu_count()} does not exist"),
        ({"workers": 1, "cpus": [-1]}, ValueError, "CPU -1 does not exist"),
        ({"workers": 1, "cpus": []}, ValueError, "cpus is empty"),
        ({"workers": 1, "cpus": "0"}, TypeError, "cpus must be a sequence of CPU numbers"),
        ({"workers": 1, "cpus": ["0"]}, TypeError, "cpus must hold CPU numbers"),
        ({"workers": 1, "incoming_cpu": True}, ValueError, "incoming_cpu=True needs cpus"),
        ({"workers": 1, "grace_period": -1}, ValueError, "grace_period must be a finite number of seconds >= 0"),
        ({"workers": 1, "grace_period": float("inf")}, ValueError, "grace_period must be a finite number"),
        ({"workers": 1, "max_restarts": -1}, ValueError, "max_restarts must be at least 0"),
        ({"workers": 1, "backend": "epoll"}, ValueError, "backend must be 'io_uring' or 'trio'"),
        ({"workers": 1, "start_method": "teleport"}, ValueError, "cannot find context for 'teleport'"),
        ({"workers": 1, "port": 65536}, ValueError, "port must be 0-65535, not 65536"),
        ({"workers": 1, "port": "80"}, TypeError, "port must be an int, not '80'"),
    ],
)
@pytest.mark.usefixtures("no_new_children")
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        trio_uring.workers.run_workers(_noop, **kwargs)


def test_cpu_outside_the_affinity_mask() -> None:
    """In a child restricted to the first CPU, asking for the second fails."""
    if len(CPUS) < 2:
        pytest.skip("needs 2 CPUs in the affinity mask")
    code = (
        "import os, sys, trio_uring.workers as w\n"
        f"os.sched_setaffinity(0, {{{CPUS[0]}}})\n"
        "async def main(worker): pass\n"
        f"try:\n    w.run_workers(main, workers=1, cpus=[{CPUS[1]}])\n"
        "except ValueError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=PATIENCE, check=True)
    assert out.stdout.strip() == (
        f"CPU {CPUS[1]} is not in this process's affinity mask ({CPUS[0]}): a worker cannot run there"
    )


@pytest.mark.parametrize("reuseport", [False, True], ids=["plain-listener", "reuseport-listener"])
@pytest.mark.usefixtures("no_new_children")
def test_port_in_use(reuseport: bool) -> None:
    """Whether the port's holder uses SO_REUSEPORT or not (a second copy of
    this very server does), EADDRINUSE before any process starts."""
    with socket.socket() as busy:
        if reuseport:
            busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match=f"address already in use: 127.0.0.1:{port}") as info:
            trio_uring.workers.serve_tcp_workers(_handler, port, host="127.0.0.1", workers=2)
        assert info.value.errno == errno.EADDRINUSE


@pytest.mark.usefixtures("no_new_children")
def test_refused_inside_a_trio_run() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match=r"outside trio\.run"):
            trio_uring.workers.run_workers(_noop, workers=1)

    trio.run(main)


@pytest.mark.usefixtures("no_new_children")
def test_refused_outside_the_main_thread() -> None:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            trio_uring.workers.run_workers(_noop, workers=1)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(PATIENCE)
    [error] = errors
    assert isinstance(error, RuntimeError)
    assert "must run in the main thread" in str(error)
