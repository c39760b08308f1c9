"""SO_REUSEPORT listening sockets: one per worker process, all on one port.

With ``SO_REUSEPORT`` (socket(7), Linux 3.9+) several sockets of the same
user may listen on the same address and port; the kernel keeps them in one
group and hands each new connection to one of them, by a hash of the
connection's addresses.  ``SO_INCOMING_CPU`` (Linux 3.19+) on a listening
socket names the CPU it wants connections from: since Linux 6.2 ("soreuseport:
Fix socket selection for SO_INCOMING_CPU") the group prefers, for a
connection whose SYN was processed on CPU *n*, a socket whose incoming CPU is
*n*, so a worker pinned to CPU *n* gets the connections that arrive there.

The supervisor *reserves* the port before it starts any worker: it first
binds a socket without ``SO_REUSEPORT`` (which fails with EADDRINUSE if
anything else -- even another reuseport group, such as a second copy of this
server -- is listening there, and picks the port when 0 was asked for), then
keeps one bound but *not listening* ``SO_REUSEPORT`` socket for as long as it
runs.  A socket that does not listen is not in the group and receives no
connections (TCP finds listeners in the listening hash only), but it keeps
the port ours while workers restart.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

import trio

__all__ = ["Reservation", "incoming_cpus", "open_reuseport_listeners", "resolve", "reuseport_socket"]

#: socket(7); Python's socket module has it only on some builds
SO_INCOMING_CPU = getattr(socket, "SO_INCOMING_CPU", 49)

Address = tuple[int, int, int, tuple[object, ...]]


def check_port(port: object) -> int:
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"port must be an int, not {port!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0-65535, not {port}")
    return port


def resolve(host: str | None, port: int) -> list[Address]:
    """The passive addresses for ``host`` (None: every interface, IPv4 and
    IPv6, as ``trio.open_tcp_listeners``) and ``port``."""
    infos = socket.getaddrinfo(host, check_port(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return unique(infos)


def unique(infos: Iterable[tuple[int, int, int, str, tuple[object, ...]]]) -> list[Address]:
    addresses: list[Address] = []
    for family, type_, proto, _, sockaddr in infos:
        if (family, type_, proto, sockaddr) not in addresses:
            addresses.append((family, type_, proto, sockaddr))
    return addresses


def reuseport_socket(address: Address, *, reuseport: bool = True, incoming_cpu: int | None = None) -> socket.socket:
    """A socket bound to ``address`` (not listening)."""
    family, type_, proto, sockaddr = address
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers, as trio does
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if incoming_cpu is not None:
            sock.setsockopt(socket.SOL_SOCKET, SO_INCOMING_CPU, incoming_cpu)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OSError(errno.EADDRINUSE, f"address already in use: {_format(sockaddr)}") from None
            raise
    except BaseException:
        sock.close()
        raise
    return sock


def _format(sockaddr: tuple[object, ...]) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class Reservation:
    """The port, held by the supervisor (see the module docstring)."""

    def __init__(self, host: str | None, port: int) -> None:
        self.sockets: list[socket.socket] = []
        try:
            for address in resolve(host, port):
                # with port 0, the first socket's ephemeral port is taken by the others
                family, type_, proto, sockaddr = address
                address = (family, type_, proto, (sockaddr[0], port, *sockaddr[2:]))
                with reuseport_socket(address, reuseport=False) as probe:
                    port = probe.getsockname()[1]
                    address = (family, type_, proto, probe.getsockname())
                self.sockets.append(reuseport_socket(address))
        except BaseException:
            self.close()
            raise
        self.host = host

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


async def open_reuseport_listeners(
    port: int, *, host: str | None = None, incoming_cpu: int | None = None, backlog: int | None = None
) -> list[trio.SocketListener]:
    """Like ``trio.open_tcp_listeners(port, host=host)``, with ``SO_REUSEPORT``
    on every socket (so each worker process can have its own on the same
    port) and, if given, ``SO_INCOMING_CPU`` set to ``incoming_cpu``."""
    listeners: list[trio.SocketListener] = []
    try:
        infos = await trio.socket.getaddrinfo(host, check_port(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for address in unique(infos):
            sock = reuseport_socket(address, incoming_cpu=incoming_cpu)
            try:
                sock.listen(_backlog(backlog))
            except BaseException:
                sock.close()
                raise
            listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
    except BaseException:
        for listener in listeners:
            await trio.aclose_forcefully(listener)
        raise
    await trio.lowlevel.checkpoint()
    return listeners


def _backlog(backlog: int | None) -> int:
    # as trio's open_tcp_listeners: None means "as many as the kernel allows"
    return 0xFFFF if backlog is None else min(backlog, 0xFFFF)


def incoming_cpus(listeners: Iterable[trio.SocketListener]) -> list[int]:
    """``SO_INCOMING_CPU`` of each listener (-1: none set)."""
    return [int(listener.socket.getsockopt(socket.SOL_SOCKET, SO_INCOMING_CPU)) for listener in listeners]
