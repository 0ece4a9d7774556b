"""Loopback ports: listening on 127.0.0.1 and ::1 only, whether a port is taken, a free one. Stdlib only."""

from __future__ import annotations

import errno
import socket


class ListenFailure(Exception):
    """A loopback listener could not be opened (`listen_loopback`)."""

    def __init__(self, host: str, port: int, err: int, strerror: str) -> None:
        super().__init__(f"{host}:{port}: {strerror}")
        self.host = host
        self.port = port
        self.errno = err
        self.strerror = strerror


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


LISTEN_BACKLOG = 1024


def _loopback_listener(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ListenFailure(host, port, exc.errno or 0, exc.strerror or str(exc)) from None
    return sock


def listen_loopback(port: int) -> list[socket.socket]:
    """Listening sockets on 127.0.0.1 and, where the host has it, ::1, both on `port` (0: one
    the OS picks); never on any other address. Raises `ListenFailure`."""
    ipv6 = has_ipv6_loopback()
    attempts = 5 if port == 0 else 1  # port 0: the v6 side may collide with the v4 pick
    for attempt in range(attempts):
        v4 = _loopback_listener(socket.AF_INET, "127.0.0.1", port)
        if not ipv6:
            return [v4]
        try:
            return [v4, _loopback_listener(socket.AF_INET6, "::1", v4.getsockname()[1])]
        except ListenFailure as exc:
            v4.close()
            if exc.errno != errno.EADDRINUSE or attempt + 1 == attempts:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def port_in_use(port: int) -> bool:
    """True when something listens on `port` of 127.0.0.1, of ::1 (a server bound to
    `localhost` may be on ::1 only), or of every address.

    A bind with SO_REUSEADDR fails only for a listener, not for sockets in TIME_WAIT
    left by the previous instance of the same service.
    """
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 on this host
        with s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


def free_loopback_port(avoid: frozenset[int] = frozenset()) -> int | None:
    """A port free on 127.0.0.1 and ::1, picked by the OS, that is none of `avoid`; None when
    100 picks found none."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in avoid and not port_in_use(port):
            return port
    return None
