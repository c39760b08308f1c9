"""A length-prefixed message protocol, a reader with a cancellation bug, a
fixed reader, and trio_uring.testing finding the bug.

    python examples/framing.py

Each message on the stream is a 4-byte big-endian length followed by that
many bytes.  Two readers:

``NaiveReader``
    reads the header, then the payload, into local variables.  If it is
    cancelled after it has received part of a message, those bytes are
    gone: they were taken off the stream but never returned.  The next
    ``receive_message`` starts in the middle of a message and reads garbage
    as a length.
``BufferedReader``
    keeps every received byte in a buffer that belongs to the reader, not
    to the call, and takes a message out only when it is complete.  A
    cancelled call leaves the partial message in the buffer for the next
    call.

``check_reader`` is the test body: a peer sends ten messages; the reader
under test receives inside a ``Region`` (the part the sweep cancels at);
afterwards every message must still arrive, intact and in order.
:func:`trio_uring.testing.sweep` cancels the region at each io_uring
operation in turn, for both race outcomes, and reports the runs that fail.
With ``short_io=3``, every receive returns at most 3 bytes, so each
message takes several receives and there are many places to cut.
"""

from __future__ import annotations

import struct
import sys

import trio

import trio_uring
from trio_uring.testing import Region, sweep

HEADER = struct.Struct(">I")
MESSAGES = [b"message %d " % i * (i + 1) for i in range(10)]


def frame(message: bytes) -> bytes:
    return HEADER.pack(len(message)) + message


class ProtocolError(Exception):
    """The stream does not hold well-formed messages (lost sync)."""


class NaiveReader:
    """Reads each message with local state: loses data when cancelled."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream

    async def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = await self.stream.receive_some(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    async def receive_message(self) -> bytes:
        (length,) = HEADER.unpack(await self._exactly(HEADER.size))
        if length > 1_000_000:
            raise ProtocolError(f"implausible message length {length}: the reader lost its place")
        return await self._exactly(length)


class BufferedReader:
    """Keeps received bytes in the reader: safe to cancel at any point."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def receive_message(self) -> bytes:
        while True:
            if len(self.buffer) >= HEADER.size:
                (length,) = HEADER.unpack_from(self.buffer)
                if length > 1_000_000:
                    raise ProtocolError(f"implausible message length {length}")
                end = HEADER.size + length
                if len(self.buffer) >= end:
                    message = bytes(self.buffer[HEADER.size : end])
                    del self.buffer[:end]
                    return message
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError
            # Appended before any other checkpoint: never lost.
            self.buffer += chunk


async def check_reader(region: Region, reader_class: type[NaiveReader] | type[BufferedReader]) -> None:
    """The sweep's test body: receive in the region, then check the rest."""
    left, right = trio.socket.socketpair()
    sender, receiver = trio.SocketStream(left), trio.SocketStream(right)
    await sender.send_all(b"".join(frame(m) for m in MESSAGES))
    await sender.aclose()
    reader = reader_class(receiver)
    received: list[bytes] = []
    with region:
        while len(received) < len(MESSAGES):
            received.append(await reader.receive_message())
    # Cancelled or not, the rest must still arrive, intact and in order.
    while len(received) < len(MESSAGES):
        received.append(await reader.receive_message())
    await receiver.aclose()
    if received != MESSAGES:
        raise AssertionError("messages were lost or corrupted")


def main() -> int:
    for reader_class in (NaiveReader, BufferedReader):
        report = sweep(check_reader, reader_class, short_io=3)
        print(
            f"{reader_class.__name__}: {len(report.ops)} io_uring operations in the region, "
            f"{report.runs} runs, {len(report.failures)} failing"
        )
        for failure in report.failures[:3]:
            print(f"  {failure}")
    with trio_uring.testing.faults() as log:
        trio_uring.run(_one_plain_run)
    print(f"(a plain run of the body submitted {len(log.ops)} io_uring operations)")
    return 0


async def _one_plain_run() -> None:
    await check_reader(Region(), BufferedReader)


if __name__ == "__main__":
    sys.exit(main())
