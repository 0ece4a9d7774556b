"""The proxy's direct path: plain requests to a ready service, forwarded without aiohttp's
server in between.

Every client connection starts here, as a bare `asyncio.Protocol`. A request that is plain
(`headers.plain_request`: HTTP/1.1, an idempotent method, no body, no upgrade) for a service
that can take it now is forwarded from callbacks alone: the rewritten head goes out on a
pooled upstream connection (`upstream.py`), the response head comes back rewritten and the
body is relayed piece by piece as it arrives (server-sent events included). No task, no
request or response object.

Everything else is handed to aiohttp: the connection, with every byte not yet answered, moves
to an aiohttp `RequestHandler` and stays there. That is where bodies are streamed, WebSockets
upgraded, requests held while a service starts, pages rendered and bad requests refused. A
request whose upstream fails before answering (refused, closed an idle connection) is handed
over the same way: nothing was sent back, the method is idempotent and there is no body, so
sending it again is safe, and aiohttp's path knows how to wait for the service or render the 502.

Why: profiled under wrk, aiohttp's server, its request and response objects and a task per
request were most of the cost of a forwarded request; this path about doubles the requests per
second and halves the latency added under load (benchmarks/bench_proxy.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import weakref
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from a3s_dev.core.state import ServiceState
from a3s_dev.proxy.headers import LAST_CHUNK, chunk, plain_request, request_head, response_head
from a3s_dev.proxy.router import FORWARD_STATES, RouteKind, Router
from a3s_dev.proxy.tally import Tally
from a3s_dev.proxy.upstream import (
    MAX_HEAD,
    NO_BODY_STATUS,
    UpstreamConnectError,
    UpstreamConnection,
    UpstreamPool,
)
from a3s_dev.system.limits import open_files_limit
from a3s_dev.system.peers import peer_uid

if TYPE_CHECKING:
    from aiohttp import web

# A client connection idle this long is closed (aiohttp's keep-alive default).
IDLE_TIMEOUT = 75.0
# A client that sends requests faster than it reads the answers is not read while this much waits.
MAX_PIPELINED = 256 * 1024
SWEEPS = 4  # idle connections are looked for every IDLE_TIMEOUT / SWEEPS seconds
# How many client connections one listener keeps open (its own and those it handed to aiohttp)
# before it closes the oldest idle one for each new one: a quarter of the open files limit, for
# each proxied request also holds an upstream socket, within these bounds. A browser keeps 256
# sockets at most, six per host; a load test through the proxy may keep a few thousand.
MIN_CONNECTIONS = 64
MAX_CONNECTIONS = 4096
SAY_CLOSED_IDLE_EVERY = 60.0  # seconds

_log = logging.getLogger(__name__)


def connection_cap(open_files: int) -> int:
    """The connections a listener keeps open before it closes idle ones, for this limit on open files."""
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, open_files // 4))


@dataclass
class ProxyCounts:
    """What the proxy did since it started (`a3s_proxy_*` in /metrics)."""

    direct: int = 0  # requests answered on the direct path
    handed_over: int = 0  # client connections handed to aiohttp's path


class States(Protocol):
    def get(self, project: str, name: str) -> ServiceState: ...


class FullPath(Protocol):
    """What the direct path shares with the full (aiohttp) path: the routes, the services'
    states and the upstream pool (`server.ProxyServer`)."""

    @property
    def router(self) -> Router: ...
    @property
    def states(self) -> States: ...
    @property
    def pool(self) -> UpstreamPool: ...
    @property
    def answering(self) -> AbstractSet[asyncio.BaseTransport]: ...  # handed over, a request being answered
    @property
    def logins(self) -> object | None: ...  # not None: the dashboard asks for a login, no uid is checked
    def refuse_resend(self, transport: asyncio.BaseTransport | None, detail: str) -> None: ...
    def used(self, project: str, name: str, open_sockets: int | None = None) -> None: ...


class DirectPath:
    """The listening sockets' protocol factory and what its connections share."""

    def __init__(
        self,
        proxy: FullPath,
        full: web.Server,
        *,
        counts: ProxyCounts | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        proto: str = "http",
    ) -> None:
        self.proxy = proxy
        self.full = full  # aiohttp's server: its RequestHandlers take handed-over connections
        self.proto = proto  # X-Forwarded-Proto: "https" on the TLS listeners
        self.idle_timeout = idle_timeout
        self.counts = counts if counts is not None else ProxyCounts()
        self.connections: dict[ClientConnection, None] = {}  # oldest first
        self._sweeper: asyncio.TimerHandle | None = None
        self.uid = os.getuid()
        self._opened_count = itertools.count()
        # the handed-over connections' transports (aiohttp's handlers take no weak reference)
        self.handed_order: weakref.WeakKeyDictionary[asyncio.BaseTransport, int] = weakref.WeakKeyDictionary()
        self._closed_idle = Tally(SAY_CLOSED_IDLE_EVERY)

    def own_user(self, transport: asyncio.BaseTransport) -> bool:
        """Whether the peer of a new connection may be this proxy's user. True where the kernel
        does not say (the dashboard then asks for a login): the refusal is for what it knows,
        never a guess."""
        if self.proxy.logins is not None:
            return True
        sock = transport.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else None
        return uid is None or uid == self.uid

    def make_room(self, newcomer: ClientConnection) -> None:
        """Past `connection_cap` open connections, close the oldest idle one, as nginx does with
        its keep-alive connections when it runs short. Every peer served is this proxy's own
        user, so there is no other to tell apart: a local process that opens a thousand
        connections and sends nothing (or asks for a page on each and keeps them) has its oldest
        closed, and every project stays reachable. A connection with a request in flight on the
        direct path or on aiohttp's is never closed here."""
        handed = self.full.connections
        if len(self.connections) + len(handed) <= connection_cap(open_files_limit()):
            return
        mine = next((c for c in self.connections if not c.busy and c is not newcomer), None)
        answering = self.proxy.answering
        theirs = next(
            (h for h in handed if h.transport is not None and h.transport not in answering), None
        )
        if theirs is not None and theirs.transport is not None and (
            mine is None or self.handed_order.get(theirs.transport, -1) < mine.opened
        ):
            theirs.force_close()  # waiting for its next request: nothing in flight is cut
        elif mine is not None:
            del self.connections[mine]
            mine.close()
        else:
            return
        self._say_closed_idle()

    def _say_closed_idle(self) -> None:
        """Say once a minute at most that idle connections are being closed, and how many."""
        closed = self._closed_idle.due()
        if closed is not None:
            _log.warning(
                "closing idle connections: more than %d open (%d closed since last said); a local process "
                "holds many connections open",
                connection_cap(open_files_limit()), closed,
            )

    def __call__(self) -> ClientConnection:
        if self._sweeper is None:
            self._schedule_sweep()
        return ClientConnection(self, next(self._opened_count))

    def _schedule_sweep(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(self.idle_timeout / SWEEPS, self._sweep)

    def _sweep(self) -> None:
        """Close connections that answered nothing and had nothing in flight for `SWEEPS`
        sweeps in a row (a count per sweep, so that requests pay for no clock reading)."""
        for conn in list(self.connections):
            if conn.busy or conn.served != conn.served_at_sweep:
                conn.served_at_sweep = conn.served
                conn.idle_sweeps = 0
            else:
                conn.idle_sweeps += 1
                if conn.idle_sweeps >= SWEEPS:
                    conn.close()
        self._schedule_sweep()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.connections):
            conn.close()


FORBIDDEN_TEXT = b"this a3s proxy serves the user who runs it only\n"
FORBIDDEN = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(FORBIDDEN_TEXT), FORBIDDEN_TEXT)
)


class ClientConnection(asyncio.Protocol):
    """One client connection while it is on the direct path."""

    def __init__(self, direct: DirectPath, opened: int) -> None:
        self.direct = direct
        self.opened = opened  # the how-manieth connection of its listener: oldest are closed first
        self.proxy = direct.proxy
        self.transport: asyncio.Transport | None = None
        self.client_ip: str | None = None
        self.served = 0  # requests answered on the direct path
        self.served_at_sweep = 0  # `served` when the idle sweep last looked
        self.idle_sweeps = 0  # sweeps in a row that found this connection idle
        self._buf = b""
        self._raw = b""  # the request in flight, as received: handed over if its upstream fails
        self._up: UpstreamConnection | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._no_body = False  # HEAD: the response has no body whatever its headers say
        self._head_sent = False
        self._chunked = False  # we frame the response body in chunks (upstream chunked or until close)
        self._close_after = False
        self._eof = False
        self._write_paused = False
        self._read_paused = False

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.direct.own_user(transport):
            # Loopback reaches every user of the machine; the dashboard, the routes and the
            # services' logs are this user's only. Checked once per connection (~20 µs).
            transport.write(FORBIDDEN)  # type: ignore[attr-defined]
            transport.close()
            self.transport = None
            return
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if peer else None
        self.direct.connections[self] = None
        self.direct.make_room(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.direct.connections.pop(self, None)
        self.transport = None
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        self._let_go()  # an exchange cut short: the pool closes a connection left mid-response

    def data_received(self, data: bytes) -> None:
        self._buf = self._buf + data if self._buf else data
        if self.busy:
            if len(self._buf) > MAX_PIPELINED and not self._read_paused and self.transport is not None:
                self._read_paused = True
                self.transport.pause_reading()
            return
        self._next()

    def eof_received(self) -> bool:
        self._eof = True
        # keep the socket open to finish the answer in flight; TLS cannot (asyncio closes it
        # whatever we say, and warns each time we ask)
        return self.busy and self.direct.proto != "https"

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._up is not None:
            self._up.hold()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._up is not None:
            self._up.release_hold()

    # ------------------------------------------------------------------ requests

    @property
    def busy(self) -> bool:
        return self._up is not None or self._connecting is not None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _next(self) -> None:
        """Start on the next request in the buffer, or hand the connection to aiohttp."""
        buf = self._buf
        if not buf:
            if self._eof:
                self.close()
            return
        end = buf.find(b"\r\n\r\n")
        if end == -1:
            # too big, bare-LF lines, or not a request line at all (a TLS ClientHello on the plain
            # port waited for a head that never comes): aiohttp decides, with a 400 for the last
            if len(buf) > MAX_HEAD or b"\n\n" in buf or not buf[:1].isalpha():
                self._hand_over(buf)
            return
        request = plain_request(buf[:end])
        if request is None:
            self._hand_over(buf)
            return
        proxy = self.proxy
        route = proxy.router.resolve(request.host)
        if route.kind is not RouteKind.UPSTREAM or proxy.states.get(route.project, route.service) not in FORWARD_STATES:  # type: ignore[arg-type]
            self._hand_over(buf)  # pages, and holding for a service not ready, are aiohttp's
            return
        self._raw = buf[: end + 4]
        self._buf = buf[end + 4 :]
        self._no_body = request.method == "HEAD"
        self._close_after = request.close
        head = request_head(
            request.method, request.target, request.headers, self.client_ip, chunked=False,
            connection=request.connection, proto=self.direct.proto,
        )
        port: int = route.port  # type: ignore[assignment]
        proxy.used(route.project, route.service)  # type: ignore[arg-type]
        up = proxy.pool.take_idle(port)
        if up is None:
            self._connecting = asyncio.get_running_loop().create_task(self._connect(port, head))
        else:
            self._send(up, head)

    async def _connect(self, port: int, head: bytes) -> None:
        try:
            up = await self.proxy.pool.connect(port)
        except UpstreamConnectError:
            self._connecting = None
            self._retry_in_full()
            return
        self._connecting = None
        if self.transport is None:  # the client left while we connected
            self.proxy.pool.release(up)
            return
        self._send(up, head)

    def _send(self, up: UpstreamConnection, head: bytes) -> None:
        self._up = up
        self._head_sent = False
        up.attach(self._on_upstream)
        if self._write_paused:
            up.hold()
        up.begin(head, no_body=self._no_body)

    def _on_upstream(self) -> None:
        """Relay what has arrived from the upstream: the head once, then body pieces."""
        up = self._up
        transport = self.transport
        if up is None or transport is None:
            return
        out: list[bytes] = []
        if not self._head_sent:
            head = up.head
            if head is None:
                if up.error is not None:  # no response: aiohttp's path retries or explains
                    error = up.error
                    self._let_go()
                    if up.replied or up.port not in self.proxy.pool.answered:
                        # A malformed answer (the request was read), or a port that has never
                        # answered HTTP (a database routed by mistake): the request is not sent
                        # again, aiohttp's path answers it with the 502 page.
                        self.proxy.refuse_resend(self.transport, str(error))
                    self._retry_in_full()
                return
            self.proxy.pool.answered.add(up.port)
            self._head_sent = True
            has_body = not (self._no_body or head.status in NO_BODY_STATUS)
            self._chunked = has_body and head.content_length is None
            out.append(
                response_head(
                    head.status, head.reason, head.lines, connection=head.connection,
                    chunked=self._chunked, close=self._close_after,
                )
            )
        chunks = up.take_chunks()
        if self._chunked:
            for piece in chunks:
                out.extend(chunk(piece))
        else:
            out.extend(chunks)
        if up.error is not None:
            # Too late for an error page: cut the client's connection so it sees a truncated
            # body rather than a complete one.
            self._let_go()
            transport.write(b"".join(out))
            transport.close()
            return
        if not up.finished:
            transport.write(b"".join(out))  # one piece is written as is, an empty list not at all
            return
        if self._chunked:
            out.append(LAST_CHUNK)
        self._let_go()
        self.direct.counts.direct += 1
        transport.write(b"".join(out))
        if self._close_after:
            transport.close()
            return
        self._raw = b""
        self.served += 1
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()
        self._next()

    def _let_go(self) -> None:
        """End the exchange with the upstream connection in flight, if any: the pool keeps it
        when the response ended cleanly and closes it otherwise (error, cut short)."""
        up, self._up = self._up, None
        if up is not None:
            up.detach()
            self.proxy.pool.release(up)

    # ------------------------------------------------------------------ handing over

    def _retry_in_full(self) -> None:
        """The upstream failed before answering the request in flight: aiohttp's path takes it."""
        if self.transport is not None:
            self._hand_over(self._raw + self._buf)

    def _hand_over(self, data: bytes) -> None:
        """Move this connection, and `data` (everything received and not yet answered), to an
        aiohttp RequestHandler for the rest of its life."""
        transport = self.transport
        assert transport is not None
        self.direct.connections.pop(self, None)
        self.direct.counts.handed_over += 1
        self.transport = None
        self._buf = self._raw = b""
        if self._read_paused:
            transport.resume_reading()
        handler = self.direct.full()
        self.direct.handed_order[transport] = self.opened
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self._write_paused:
            handler.pause_writing()
        if data:
            handler.data_received(data)
        if self._eof:
            handler.eof_received()
