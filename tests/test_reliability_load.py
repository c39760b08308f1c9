"""Reliability under load (issue 7, part 1), on real loopback sockets.

* many connections exchanging random-sized messages (1 B to 64 KiB) with an
  echo server on trio_uring for a bounded time: every byte checked, and the
  server's fds, RSS and io_uring state back at their baseline afterwards;
* many idle connections held open, each with a receive parked in the kernel;
* bursts with more submissions in one scheduler tick than the SQ holds and
  more completions at once than the CQ holds.

The server runs in a child process (``tests/reliability_server.py``), so its
figures are its own.  ``make stress`` (``TRIO_URING_STRESS=10``) scales the
counts and durations; each test prints its figures (``pytest -s`` shows them).
"""

from __future__ import annotations

import random
import socket
import time
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from trio_uring import _manager
from trio_uring import lowlevel as ll

from .helpers import STRESS, ServerChild, fd_count, needs_mode, nofile_at_least, run

#: concurrent connections, and seconds of traffic, for the echo load test
CONNECTIONS = 200 if STRESS == 1 else 200 * STRESS
SECONDS = 3.0 if STRESS == 1 else 3.0 * STRESS
#: idle connections held open at once
IDLE = 1000 if STRESS == 1 else 1000 * STRESS
#: how far the server's RSS may be above its baseline after a round, in KiB.
#: A leak of one 64 KiB receive buffer per connection (200 x 64 KiB, or
#: 2,000 x 64 KiB under stress), or of 1 KiB per message (a round exchanges
#: some 25,000 on a quiet 2-core machine), would exceed it.  The load test
#: counts the RSS without the provided-buffer ring's data area
#: (:func:`live_kib`).
RSS_SLACK_KIB = 8 * 1024 if STRESS == 1 else 16 * 1024


def log_uniform_size(rng: random.Random) -> int:
    """1 B to 64 KiB, every order of magnitude equally likely."""
    return min(65536, int(2 ** rng.uniform(0, 16)))


async def receive_exactly(stream: trio.SocketStream, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = await stream.receive_some(n - len(got))
        assert chunk, f"EOF after {len(got)} of {n} bytes"
        got += chunk
    return bytes(got)


async def echo_round(port: int, connections: int, seconds: float, seed: int) -> dict[str, int]:
    """``connections`` clients, each sending random messages for ``seconds``
    while it checks every echoed byte (at most four messages in flight per
    connection), then half-closing and expecting EOF."""
    totals = {"messages": 0, "bytes": 0, "connections": 0}

    async def client(i: int, deadline: float) -> None:
        rng = random.Random(seed * 1_000_003 + i)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        totals["connections"] += 1
        expect_send, expect_receive = trio.open_memory_channel[bytes](4)

        async def sender() -> None:
            async with expect_send:
                while trio.current_time() < deadline:
                    message = rng.randbytes(log_uniform_size(rng))
                    await expect_send.send(message)
                    await stream.send_all(message)
            await stream.send_eof()

        async def receiver() -> None:
            async with expect_receive:
                async for message in expect_receive:
                    assert await receive_exactly(stream, len(message)) == message
                    totals["messages"] += 1
                    totals["bytes"] += len(message)
            assert await stream.receive_some() == b""

        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            nursery.start_soon(receiver)

    # The hang guard is generous: a 2-core machine may be slow, but never
    # minutes slow.
    with trio.fail_after(seconds + 120):
        deadline = trio.current_time() + seconds
        async with trio.open_nursery() as nursery:
            for i in range(connections):
                nursery.start_soon(client, i, deadline)
    return totals


def quiescent(stats: dict[str, Any]) -> bool:
    return stats["handlers"] == 0


def live_kib(stats: dict[str, Any]) -> int:
    """The server's RSS without the resident part of its provided-buffer
    ring (``bufring_kib``, see ``tests/reliability_server.py``).  That ring
    is one fixed 16 MiB mapping whose pages count once the kernel first
    writes into them: a round touches more of them the more data a receive
    finds waiting, so its share climbs towards 16 MiB over several rounds,
    the more slowly the slower the machine, then stops.  On a slow machine
    the warm-up exchanges few messages and the round after it touches most
    of the ring (under qemu's emulation the RSS grew 14.9 MB in that round;
    with no message in the warm-up, on one contended core, 10.6 MB, all of
    it the ring's).  Bounded by construction, it is no leak; what is left
    (heap, pymalloc's arenas, task stacks) stays within a few hundred KiB
    from the warm-up on, slow machine or not."""
    return int(stats["rss_kib"]) - int(stats["bufring_kib"])


def test_many_connections_random_messages_every_byte_checked_nothing_leaked() -> None:
    with nofile_at_least(CONNECTIONS + 1000), ServerChild("--nofile", str(2 * CONNECTIONS + 1000)) as server:
        idle = server.wait_for(quiescent)
        # Warm-up: the same load, briefly, so that the baseline includes
        # what a server of this size keeps (task stacks, allocator pools).
        client_fds = fd_count()
        warm = run(echo_round, server.port, CONNECTIONS, min(1.0, SECONDS), 1)
        assert warm["connections"] == CONNECTIONS
        baseline = server.wait_for(quiescent)
        start = time.monotonic()
        totals = run(echo_round, server.port, CONNECTIONS, SECONDS, 2)
        elapsed = time.monotonic() - start
        after = server.wait_for(quiescent)
        assert fd_count() == client_fds

    print(
        f"\nload: {CONNECTIONS} connections for {SECONDS:.0f} s: {totals['messages']} messages, "
        f"{totals['bytes'] / 2**20:.1f} MiB each way in {elapsed:.1f} s; server fds {idle['fds']} idle, "
        f"{baseline['fds']} before, {after['fds']} after; RSS {idle['rss_kib']} KiB idle, "
        f"{baseline['rss_kib']} KiB before, {after['rss_kib']} KiB after, of which the buffer ring "
        f"{idle['bufring_kib']}, {baseline['bufring_kib']}, {after['bufring_kib']} KiB"
    )
    assert totals["connections"] == CONNECTIONS
    assert totals["messages"] >= CONNECTIONS  # every connection exchanged at least one message
    # The server saw every byte and met no error (a reset would be one too).
    assert after["errors"] == [], after
    assert after["resets"] == 0, after
    assert after["served"] - baseline["served"] == CONNECTIONS
    assert after["bytes"] - baseline["bytes"] == totals["bytes"]
    # Back to the baseline: fds exactly, the io_uring requests and per-fd
    # records exactly (only the listener's multishot ACCEPT and the wake-up
    # poll remain), and the RSS, less the buffer ring's pages, within a few
    # MiB.
    for key in ("fds", "ops_in_flight", "fd_records", "waiting_read"):
        assert after[key] == baseline[key] == idle[key], (key, idle, baseline, after)
    assert live_kib(after) - live_kib(baseline) < RSS_SLACK_KIB, (baseline, after)


def idle_cycle(server: ServerChild, baseline: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Open IDLE connections and hold them until each handler is parked in a
    RECV; check each still echoes; close them all.  Returns the server's
    figures while they were held, and how long opening them took."""
    clients: list[socket.socket] = []
    try:
        start = time.monotonic()
        for _ in range(IDLE):
            clients.append(socket.create_connection(("127.0.0.1", server.port)))
        # every connection served, each handler parked in a RECV
        waiting = baseline["waiting_read"] + IDLE
        held = server.wait_for(lambda s: s["handlers"] == IDLE and s["waiting_read"] == waiting)
        opened = time.monotonic() - start
        assert held["ops_in_flight"] >= baseline["ops_in_flight"] + IDLE
        assert held["fds"] == baseline["fds"] + IDLE
        # all of them still work: one message each, echoed
        for i, c in enumerate(clients):
            c.sendall(b"%d;" % i)
        for i, c in enumerate(clients):
            c.settimeout(60)
            expected = b"%d;" % i
            got = b""
            while len(got) < len(expected):
                chunk = c.recv(len(expected) - len(got))
                assert chunk
                got += chunk
            assert got == expected
        server.wait_for(lambda s: s["waiting_read"] == waiting)
    finally:
        for c in clients:
            c.close()
    return held, opened


def test_many_idle_connections_are_held_and_released() -> None:
    """Twice: the first round leaves the server at the size it keeps (task
    and socket objects the allocator holds on to), the second must not
    grow it."""
    with nofile_at_least(IDLE + 1000), ServerChild("--nofile", str(IDLE + 1000)) as server:
        idle = server.wait_for(quiescent)
        idle_cycle(server, idle)
        baseline = server.wait_for(quiescent)
        held, opened = idle_cycle(server, baseline)
        after = server.wait_for(quiescent)

    per_connection = (held["rss_kib"] - idle["rss_kib"]) / IDLE
    print(
        f"\nidle: {IDLE} connections opened in {opened:.1f} s; server fds {baseline['fds']} -> {held['fds']} -> "
        f"{after['fds']}; RSS {idle['rss_kib']} KiB idle, {baseline['rss_kib']} KiB after a first round, "
        f"{held['rss_kib']} KiB holding, {after['rss_kib']} KiB after ({per_connection:.1f} KiB per idle "
        "connection held)"
    )
    assert after["errors"] == [], after
    assert after["resets"] == 0, after
    assert after["served"] == 2 * IDLE
    for key in ("fds", "ops_in_flight", "fd_records", "waiting_read"):
        assert after[key] == baseline[key] == idle[key], (key, idle, baseline, after)
    assert after["rss_kib"] - baseline["rss_kib"] < RSS_SLACK_KIB, (baseline, after)
    # A parked receive holds no buffer (provided-buffer ring): an idle
    # connection costs its task and socket, far less than a 64 KiB buffer.
    assert per_connection < 32, (idle, held)


# ---- bursts: more than the SQ and the CQ hold ---------------------------------------------


class _BatchRecorder:
    """Wraps a manager's ``process_events`` (an instance attribute, which
    trio's run loop looks up) and the ring's ``submit``, to record the
    largest batch of completions handled in one tick and how often a full
    SQ had to be flushed in the middle of a tick."""

    def __init__(self, m: _manager.UringIOManager) -> None:
        self.largest = 0
        self.sq_flushes = 0
        process, submit = m.process_events, m.ring.submit

        def process_events(events: Any) -> None:
            self.largest = max(self.largest, len(events))
            process(events)

        def counted_submit() -> int:
            self.sq_flushes += 1
            return submit()

        m.process_events = process_events  # type: ignore[method-assign]
        m.ring.submit = counted_submit  # type: ignore[method-assign]


def current_manager() -> _manager.UringIOManager:
    m = trio._core._run.GLOBAL_RUN_CONTEXT.runner.io_manager
    assert isinstance(m, _manager.UringIOManager)
    return m


def cq_overflow_counter(m: _manager.UringIOManager) -> int:
    """The kernel's count of CQEs it *dropped* (``cq.overflow``): with NODROP
    it must stay 0 however far the CQ overflows."""
    ring = m.ring
    return int(ring._cq_u32[ring._cq_koverflow])


async def burst(n: int) -> dict[str, int]:
    """``n`` receives parked on ``n`` socketpairs, woken all at once (one
    send to each, with no checkpoint in between), then ``n`` NOPs submitted
    from one tick.  Every receive gets its own message."""
    m = current_manager()
    recorder = _BatchRecorder(m)
    pairs = [socket.socketpair() for _ in range(n)]
    got: dict[int, bytes] = {}
    try:

        async def receiver(i: int, sock: socket.socket) -> None:
            buf = bytearray(32)
            got[i] = bytes(buf[: await ll.recv_into(sock, buf)])

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                # all n tasks run in the same tick: n RECVs prepared at once
                for i, (a, _b) in enumerate(pairs):
                    nursery.start_soon(receiver, i, a)
                await trio.testing.wait_all_tasks_blocked()
                submitted_flushes = recorder.sq_flushes
                for i, (_a, b) in enumerate(pairs):
                    b.send(b"message %d" % i)
            assert got == {i: b"message %d" % i for i in range(n)}

            def prep_nop(user_data: int, _fd: int) -> None:
                m.ring.prep_nop(user_data)

            async with trio.open_nursery() as nursery:
                for _ in range(n):
                    nursery.start_soon(m.perform, -1, prep_nop)
    finally:
        for a, b in pairs:
            a.close()
            b.close()
    return {
        "largest": recorder.largest,
        "flushes": submitted_flushes,
        "dropped": cq_overflow_counter(m),
        "sq": m.ring.sq_entries,
        "cq": m.ring.cq_entries,
        "in_flight": len(m._ops),
    }


def test_burst_beyond_the_default_rings() -> None:
    """The default ring (256 SQ, 4096 CQ): 5,000 receives submitted from
    one tick and completing at once, then 5,000 NOPs (more at stress)."""
    n = 5000 if STRESS == 1 else 8000
    with nofile_at_least(2 * n + 1000):
        result = run(burst, n)
    print(f"\nburst: {n} ops on a {result['sq']}/{result['cq']} ring: {result}")
    assert (result["sq"], result["cq"]) == (256, 4096)
    assert result["flushes"] >= n // result["sq"] - 1  # the SQ filled up, again and again
    assert result["largest"] > result["cq"]  # one tick handled more CQEs than the CQ holds
    assert result["dropped"] == 0
    assert result["in_flight"] == 1  # the wake-up poll


@pytest.mark.parametrize("mode", ["defer", "coop", "plain"])
def test_burst_beyond_a_tiny_ring(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose ring has 16 SQ and 32 CQ entries, in each ring mode."""
    needs_mode(mode)
    original = _manager.open_ring
    monkeypatch.setattr(_manager, "open_ring", lambda *_args: original(mode, 16, 32))
    n = 400 * STRESS
    with nofile_at_least(2 * n + 1000):
        result = run(burst, n)
    print(f"\nburst ({mode}): {n} ops on a 16/32 ring: {result}")
    assert (result["sq"], result["cq"]) == (16, 32)
    assert result["flushes"] >= n // 16 - 1
    assert result["largest"] > 32
    assert result["dropped"] == 0
    assert result["in_flight"] == 1
