"""Who is on the other end of a loopback TCP connection: the uid the kernel knows for the peer's
socket, asked through netlink's sock_diag (one request, one answer, no scan of /proc/net/tcp).
Linux only; None wherever the kernel does not say. Stdlib only.

The shared proxy listens on loopback, which every user of the machine reaches: it serves the
user who runs it, and refuses everyone else (issue 21, SPEC §6).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states; then inet_diag_sockid: sport, dport
# (network order), src[16], dst[16], interface, cookie[2]
_REQUEST = struct.Struct("=BBBBI")
_SOCKID = struct.Struct("!HH16s16s")
_SOCKID_TAIL = struct.Struct("=III")
# inet_diag_msg: family, state, timer, retrans, sockid (48 bytes), expires, rqueue, wqueue, uid, inode
_MESSAGE = struct.Struct("=BBBB48sIIIII")
ANY_STATE = 0xFFFFFFFF
NO_COOKIE = 0xFFFFFFFF


def _address(host: str) -> tuple[int, bytes]:
    ip = ipaddress.ip_address(host.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:  # ::ffff:127.0.0.1 on a dual-stack socket
        ip = ip.ipv4_mapped
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    return family, ip.packed.ljust(16, b"\0")


def peer_uid(connection: socket.socket) -> int | None:
    """The uid owning the other end of `connection` (a TCP socket between two loopback
    addresses of this machine), or None when the kernel cannot say (not Linux, not local)."""
    try:
        local = connection.getsockname()
        remote = connection.getpeername()
    except OSError:
        return None
    return uid_of(remote[0], remote[1], local[0], local[1])


def uid_of(host: str, port: int, peer_host: str, peer_port: int) -> int | None:
    """The uid of the TCP socket bound to `host:port` and connected to `peer_host:peer_port`."""
    try:
        family, source = _address(host)
        _, destination = _address(peer_host)
    except ValueError:
        return None
    sockid = _SOCKID.pack(port, peer_port, source, destination) + _SOCKID_TAIL.pack(0, NO_COOKIE, NO_COOKIE)
    body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, ANY_STATE) + sockid
    message = _HEADER.pack(_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0) + body
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as diag:
            diag.settimeout(0.5)
            diag.send(message)
            answer = diag.recv(8192)
    except (OSError, AttributeError):  # no netlink (not Linux), or no sock_diag in this kernel
        return None
    if len(answer) < _HEADER.size + _MESSAGE.size:
        return None
    _, kind, _, _, _ = _HEADER.unpack_from(answer)
    if kind == NLMSG_ERROR:
        return None
    *_, uid, _inode = _MESSAGE.unpack_from(answer, _HEADER.size)
    return int(uid)


def kernel_names_peers() -> bool:
    """Whether the kernel says who is on the other end of a loopback TCP connection here: asked
    once, of a connection this process makes to itself."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            with socket.create_connection(server.getsockname(), timeout=1) as client:
                accepted, _ = server.accept()
                with accepted:
                    return peer_uid(accepted) == os.getuid() and peer_uid(client) == os.getuid()
    except OSError:
        return False
