"""httpcore 1.0.9, tests/test_cancellations.py::test_connection_pool_timeout_during_request:
why it can fail on a slow machine, on any backend.

The test cancels ``pool.request(...)`` with ``anyio.move_on_after(0.01)`` and
expects the pool to be empty afterwards, assuming the deadline strikes while
the request is writing.  If the 10 ms are gone before the request's first
checkpoint (a loaded machine), the cancel lands earlier: the pool has already
created the connection for the request, and it stays in the pool, NEW, with
no request sent.  This script cancels after 0, 1, 2, ... checkpoints instead
of after 10 ms, on stock trio.  At 0 the cancel and the request's first
step race (trio randomizes the order of tasks scheduled together): when the
request goes first, the pool keeps the NEW connection, the state the failing
test reports.  (Run from the unpacked httpcore sdist.)

    python httpcore_cancel_before_first_use.py
"""

import sys

import httpcore
import trio

sys.path.insert(0, ".")
from tests.test_cancellations import SlowWriteBackend


async def once(checkpoints: int) -> list[str]:
    """The pool's connections after a request cancelled once the canceller
    has passed ``checkpoints`` checkpoints."""
    async with httpcore.AsyncConnectionPool(network_backend=SlowWriteBackend()) as pool:
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def canceller() -> None:
                for _ in range(checkpoints):
                    await trio.lowlevel.checkpoint()
                scope.cancel()

            nursery.start_soon(canceller)
            with scope:
                await pool.request("GET", "http://example.com")
        return [repr(c) for c in pool.connections]


async def main() -> None:
    for checkpoints in range(4):
        kept = [pool for pool in [await once(checkpoints) for _ in range(20)] if pool]
        print(f"cancelled after {checkpoints} checkpoints: {len(kept)} of 20 pools kept a connection {kept[:1]}")


if __name__ == "__main__":
    trio.run(main)
