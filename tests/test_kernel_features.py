"""The kernel features record, the kernel profiles, and each fallback.

Every fallback is tested here under a forced profile ($TRIO_URING_KERNEL set
for the test), so it runs on every kernel and under every profile: the
profile only takes features away, and these tests take away the one they
test.  What a profile leaves the ring is asked of the running kernel.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
import trio
import trio.lowlevel

import trio_uring
from trio_uring import _features, _support
from trio_uring import _kernel as k
from trio_uring._entry import manager as lowlevel_manager
from trio_uring._manager import UringIOManager
from trio_uring._ring import Ring

from .helpers import fd_count, manager, ops_submitted, run

PROFILES = ["5.15", "5.19", "6.1", "6.8"]


@pytest.fixture
def profile_5_15(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rings made in this test are made as on Linux 5.15."""
    monkeypatch.setenv(_features.ENV, "5.15")


def native_modes() -> list[str]:
    modes = []
    for mode in ("defer", "coop", "plain"):
        try:
            Ring(8, 16, mode=mode, profile=None).close()  # type: ignore[arg-type]
        except OSError:
            continue
        modes.append(mode)
    return modes


# ---- the record --------------------------------------------------------------------------


def test_native_record_is_the_kernels_answer() -> None:
    with Ring(8, 16, profile=None) as ring:
        record = ring.kernel
        assert record.profile == "native"
        assert record.setup_flags == ring.setup_flags == ring.params.flags
        assert record.features == ring.params.features
        assert record.missing() == []
        # the record's opcodes are PROBE's answer, asked again here
        mem = k.Memory(16 + 256 * 8)
        k.io_uring_register(ring.fd, k.IORING_REGISTER_PROBE, mem.address, 256)
        probed = {mem.view[16 + i * 8] for i in range(mem.view[1]) if mem.view[16 + i * 8 + 2] & 1}
        assert record.opcodes == probed
        assert record.cqe_skip == bool(ring.params.features & k.IORING_FEAT_CQE_SKIP)
        witness = "SOCKET" in _names(probed)
        assert record.buf_ring == record.multishot_accept == record.cancel_any == witness
    with pytest.raises(AttributeError):
        record.features = 0  # type: ignore[misc]  # immutable


def _names(opcodes: set[int] | frozenset[int]) -> set[str]:
    return {k.OPCODE_NAMES[i] for i in opcodes if i < len(k.OPCODE_NAMES)}


@pytest.mark.parametrize("name", PROFILES)
def test_a_profile_narrows_flags_features_and_opcodes(name: str) -> None:
    profile = _features.PROFILES[name]
    with Ring(8, 16, profile=None) as native:
        native_record = native.kernel
    with Ring(8, 16, profile=profile) as ring:
        record = ring.kernel
        assert record.profile == name
        assert ring.setup_flags & ~profile.setup_flags == 0
        assert record.features == native_record.features & profile.features
        assert record.opcodes == {op for op in native_record.opcodes if op <= profile.last_opcode}
        # the fastest mode both the profile and this kernel have
        expected = next(mode for mode in native_modes() if not _mode_flags(mode) & ~profile.setup_flags)
        assert ring.mode == expected
        assert ring.describe()["kernel_profile"] == name


def _mode_flags(mode: str) -> int:
    from trio_uring._ring import _MODE_FLAGS

    return _MODE_FLAGS[mode]


def test_5_15_profile_takes_every_fallback() -> None:
    with Ring(8, 16, profile=_features.PROFILES["5.15"]) as ring:
        record = ring.kernel
        assert ring.mode == "plain"
        for capability in ("cqe_skip", "submit_all", "buf_ring", "multishot_accept", "cancel_any"):
            assert not getattr(record, capability), capability
        assert not record.has_op("FTRUNCATE")
        assert not record.has_op("SOCKET")
        assert record.has_op("LINKAT")  # 5.15's newest opcode
        fallbacks = "\n".join(record.fallbacks())
        for piece in ("CQE_SKIP_SUCCESS (5.17)", "SUBMIT_ALL (5.18)", "provided-buffer rings (5.19)"):
            assert piece in fallbacks
        for piece in ("multishot ACCEPT (5.19)", "DEFER_TASKRUN (6.1)", "FTRUNCATE (6.9)"):
            assert piece in fallbacks


def test_an_unknown_profile_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_features.ENV, "4.19")
    with pytest.raises(ValueError, match=r"TRIO_URING_KERNEL='4.19' is not a kernel profile; choose one of native"):
        Ring(8, 16)


def test_check_support_and_the_report_name_the_profile_and_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_features.ENV, "5.15")
    info = trio_uring.check_support()
    assert info["kernel_profile"] == "5.15"
    assert any("multishot ACCEPT" in line for line in info["fallbacks"])  # type: ignore[attr-defined]
    env = {**os.environ, _features.ENV: "5.15"}
    out = subprocess.run(
        [sys.executable, "-m", "trio_uring", "--json"], capture_output=True, text=True, env=env, check=True
    ).stdout
    data = json.loads(out)
    assert data["kernel_profile"] == "5.15"
    assert data["ring_mode"] == "plain"
    assert data["fallbacks"] == info["fallbacks"]
    text = subprocess.run([sys.executable, "-m", "trio_uring"], capture_output=True, text=True, env=env).stdout
    assert "fallbacks:" in text
    assert "FTRUNCATE (6.9)" in text.replace("\n" + " " * 26, " ")


# ---- below the floor -----------------------------------------------------------------------

#: Linux 5.10, as far as trio_uring can tell: no EXT_ARG (5.11), opcodes up to TEE (33).
_FIVE_TEN = _features.Profile("5.10", (1 << 7) - 1, (1 << 8) - 1, 33)


def test_below_the_floor_the_error_names_the_kernel_the_floor_and_every_missing_piece() -> None:
    with pytest.raises(OSError, match="lacks what trio_uring needs") as info:
        Ring(8, 16, profile=_FIVE_TEN)
    exc = _support.explain_error(info.value)
    assert exc.cause == "missing-feature"
    assert exc.errno == errno.EOPNOTSUPP
    message = str(exc)
    assert os.uname().release in message
    assert "Linux 5.15 or newer" in message
    for piece in ("the feature EXT_ARG (5.11)", "the opcode SHUTDOWN (5.11)", "the opcode LINKAT (5.15)"):
        assert piece in message
    assert "NODROP" not in message  # present since 5.5: not a missing piece
    assert "install(fallback=True)" in exc.remedy


def test_below_the_floor_install_fallback_runs_trios_own_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_features.PROFILES, "5.10", _FIVE_TEN)
    monkeypatch.setenv(_features.ENV, "5.10")
    with pytest.raises(trio_uring.UnsupportedError, match="EXT_ARG"):
        trio_uring.check_support()

    async def backend() -> str:
        return str(trio.lowlevel.current_statistics().io_statistics.backend)

    with pytest.warns(RuntimeWarning, match=r"trio's own backend stays in use: .*EXT_ARG \(5.11\)"):
        installed = trio_uring.install(fallback=True)
    try:
        assert not installed
        assert trio.run(backend) == "epoll"
    finally:
        trio_uring.uninstall()


# ---- each fallback -------------------------------------------------------------------------


def test_submit_all_fallback_submits_the_rest_of_a_batch() -> None:
    """Without SUBMIT_ALL the kernel stops a batch at an SQE that fails to
    submit; the SQEs queued after it must still reach the kernel."""
    with Ring(8, 16, profile=_features.PROFILES["5.15"]) as ring:
        assert not ring.kernel.submit_all
        ring.prep(255, 10)  # no such opcode: fails at submission (EINVAL)
        ring.prep_nop(11)
        ring.prep_nop(12)
        ring.submit()
        assert ring.pending == 0
        got: dict[int, int] = {}
        for _ in range(100):
            ring.submit_and_wait(0.05, 1)
            got.update((ud, res) for ud, res, _flags in ring.reap())
            if len(got) == 3:
                break
        assert got == {10: -errno.EINVAL, 11: 0, 12: 0}


def test_cqe_skip_fallback_cancels_in_flight_and_loses_no_byte(profile_5_15: None) -> None:
    """Without CQE_SKIP_SUCCESS the cancellation's own CQE arrives and is
    dropped; the cancelled RECV had no effect."""

    async def main() -> None:
        m = manager()
        assert not m.kernel.cqe_skip
        a, b = socket.socketpair()
        with a, b:
            with trio.move_on_after(0.05):
                await trio_uring.lowlevel.recv_into(a, bytearray(10))
            assert ops_submitted().get("ASYNC_CANCEL", 0) >= 1
            b.send(b"0123456789")
            assert await trio_uring.lowlevel.recv(a, 10) == b"0123456789"
            await trio.sleep(0.01)
            assert len(m._ops) == 1  # only the wake-up poll: nothing stale

    run(main)


def test_buffer_ring_fallback_waits_for_readiness_and_holds_no_buffer(profile_5_15: None) -> None:
    """Before 5.19 a receive waits with a POLL_ADD (no buffer), then
    recv(2): idle connections hold no memory, a cancelled wait loses
    nothing, and the bytes arrive in order."""

    async def main() -> None:
        m = manager()
        assert not m.kernel.buf_ring
        pairs = []
        for _ in range(50):
            a, b = socket.socketpair()
            pairs.append((trio.socket.from_stdlib_socket(a), b))
        received: list[bytes] = []
        await trio.testing.wait_all_tasks_blocked()
        waiting = trio.lowlevel.current_statistics().io_statistics.tasks_waiting_read
        async with trio.open_nursery() as nursery:
            for a, _b in pairs:
                nursery.start_soon(lambda s=a: _recv_into_list(s, received))
            await trio.testing.wait_all_tasks_blocked()
            assert m._bufring is None  # fifty idle receives, no buffer ring
            assert trio.lowlevel.current_statistics().io_statistics.tasks_waiting_read == waiting + 50
            nursery.cancel_scope.cancel()  # cancelled in flight: nothing received
        assert received == []
        payload = bytes(range(256)) * 64
        for a, b in pairs:
            b.sendall(payload)
            got = b""
            while len(got) < len(payload):
                got += await a.recv(len(payload) - len(got))
            assert got == payload
            # lowlevel.recv (no socket object) takes the same path
            b.sendall(b"xyz")
            assert await trio_uring.lowlevel.recv(a.fileno(), 3) == b"xyz"
        ops = ops_submitted()
        assert ops.get("RECV", 0) == 0
        assert ops["POLL_ADD"] >= 50
        assert m._bufring is None
        for a, b in pairs:
            a.close()
            b.close()

    run(main)


async def _recv_into_list(sock: trio.socket.SocketType, out: list[bytes]) -> None:
    out.append(await sock.recv(100))


def test_multishot_accept_fallback_accepts_one_per_call(profile_5_15: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before 5.19 ``TRIO_URING_ACCEPT=multishot`` is ignored: each accept()
    that has to wait is one ACCEPT; cancelling one in flight loses no
    connection, and the peer address is reported."""
    monkeypatch.setenv("TRIO_URING_ACCEPT", "multishot")

    async def main() -> None:
        m = manager()
        assert not m.kernel.multishot_accept
        assert not m.accept_multishot
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        with listener:
            with trio.move_on_after(0.05):
                await listener.accept()
            for _ in range(3):
                got: list[tuple[trio.socket.SocketType, object]] = []

                async def accept_one(got: list[tuple[trio.socket.SocketType, object]] = got) -> None:
                    got.append(await listener.accept())

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(accept_one)
                    await trio.testing.wait_all_tasks_blocked()  # parked in its ACCEPT
                    c = socket.create_connection(listener.getsockname())
                conn, address = got[0]
                with conn:
                    assert address == c.getsockname()
                    c.sendall(b"hi")
                    assert await conn.recv(2) == b"hi"
                c.close()
            assert ops_submitted()["ACCEPT"] == 4
        assert len(m._ops) == 1

    before = fd_count()
    run(main)
    assert fd_count() == before


def test_cancel_any_fallback_drains_every_request_at_close(profile_5_15: None) -> None:
    """Before 5.19 close() cancels each request by its user_data."""
    r, w = os.pipe()
    try:
        m = UringIOManager(mode="auto")
        assert not m.kernel.cancel_any
        for _ in range(20):
            m.submit_multishot(r, m.ring.prep_poll_add, k.POLLIN, callback=lambda _res, _flags: None)
        m.get_events(0)
        assert len(m._ops) == 20
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "requests did not finish" would be a ResourceWarning
            m.close()
        assert m._ops == {}
    finally:
        os.close(r)
        os.close(w)


def test_ftruncate_fallback_is_os_ftruncate(profile_5_15: None) -> None:
    """Before 6.9 (no FTRUNCATE) lowlevel.ftruncate does ftruncate(2), with
    os.ftruncate's result and errors."""

    def os_error(fn: object, *args: object) -> int | None:
        try:
            fn(*args)  # type: ignore[operator]
        except OSError as exc:
            return exc.errno
        return None

    async def main() -> None:
        assert not manager().kernel.has_op("FTRUNCATE")
        with tempfile.TemporaryFile() as f:
            f.write(b"x" * 1000)
            f.flush()
            await trio_uring.lowlevel.ftruncate(f.fileno(), 10)
            assert os.fstat(f.fileno()).st_size == 10
            await trio_uring.lowlevel.ftruncate(f, 4096)
            assert os.pread(f.fileno(), 4096, 0) == b"x" * 10 + bytes(4086)
            assert "FTRUNCATE" not in ops_submitted()
        r, w = os.pipe()
        os.close(w)
        ro = os.open(__file__, os.O_RDONLY)
        for fd in (r, ro):
            with pytest.raises(OSError, match=os.strerror(os_error(os.ftruncate, fd, 0) or 0)) as info:
                await trio_uring.lowlevel.ftruncate(fd, 0)
            assert info.value.errno == os_error(os.ftruncate, fd, 0)
        os.close(r)
        os.close(ro)
        with pytest.raises(OSError, match="Bad file descriptor") as info:
            await trio_uring.lowlevel.ftruncate(r, 0)  # closed
        assert info.value.errno == os_error(os.ftruncate, r, 0) == errno.EBADF

    run(main)


def test_an_opcode_without_fallback_names_itself_its_release_and_what_to_call(profile_5_15: None) -> None:
    async def main() -> None:
        with pytest.raises(trio_uring.UnsupportedError) as info:
            lowlevel_manager("SEND_ZC")
        exc = info.value
        assert exc.cause == "missing-opcode"
        assert "lacks the opcode SEND_ZC; Linux 6.0 and newer have it" in str(exc)
        assert "trio_uring.lowlevel.send" in exc.remedy
        assert "5.19" not in str(exc)

    run(main)


def test_the_pytest_option_sets_the_profile_for_the_session_and_its_subprocesses(tmp_path: Path) -> None:
    (tmp_path / "test_profile.py").write_text(
        "import os, subprocess, sys, trio_uring\n"
        "def test_profile():\n"
        "    assert trio_uring.check_support()['kernel_profile'] == '5.19'\n"
        "    code = 'import trio_uring; print(trio_uring.check_support()[\"kernel_profile\"])'\n"
        "    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True).stdout\n"
        "    assert out.strip() == '5.19'\n"
    )
    env = {key: value for key, value in os.environ.items() if key != _features.ENV}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--trio-uring-kernel=5.19", "test_profile.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "trio_uring kernel profile: 5.19" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--trio-uring-kernel=4.19", "test_profile.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert bad.returncode == 4  # a usage error
    assert "invalid choice: '4.19'" in bad.stderr
