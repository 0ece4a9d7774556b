"""A small HTTP/1.1 client for the proxy: keep-alive connections to `127.0.0.1:<port>`, pooled.

Why not `aiohttp.ClientSession` for plain requests: profiling the proxy under wrk showed two
thirds of the per-request time in the client's bookkeeping (URL building, `ClientRequest`
header merging, timers, connector and response objects), none of which a loopback proxy
needs. This client writes the request head in one call and lets llhttp (through httptools,
the parser uvicorn uses) read the response: the head, then the body as it arrives
(Content-Length, chunked, or until close), handed on to an awaiting reader (server.py) or to
a callback (direct.py). llhttp is strict: conflicting Content-Lengths, a bare CR or a control
character in a header is an UpstreamError, which the proxy answers with its 502 page.
WebSocket upgrades still go through aiohttp (server.py).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import NamedTuple

import httptools

from a3s_dev.proxy.headers import HOP_BY_HOP

MAX_HEAD = 64 * 1024  # a response head larger than this is an upstream error
READ_HIGH_WATER = 256 * 1024  # stop reading from the upstream while this much body waits
NO_BODY_STATUS = frozenset({204, 304})


class _Unasked(Exception):
    """The upstream began a second response nobody asked for."""


class UpstreamError(Exception):
    """The upstream broke the exchange (closed early, sent garbage)."""


_HOP_BY_HOP = frozenset(name.encode() for name in HOP_BY_HOP)


def _reason_of(exc: Exception) -> str:
    return str(exc).split(":", 1)[-1].strip() or type(exc).__name__


class UpstreamConnectError(UpstreamError):
    """Nothing accepted the connection: no request byte was sent, so a retry is safe."""

    def __init__(self, port: int, strerror: str) -> None:
        super().__init__(f"127.0.0.1:{port}: {strerror}")
        self.strerror = strerror


class ResponseHead(NamedTuple):
    """The status line and headers of one upstream response, plus how its body is framed.

    The header lines to forward stay bytes as they came (`lines`, hop-by-hop ones already
    cut): the direct path writes them out as they are, and only aiohttp's path splits them
    into `headers`. A NamedTuple rather than a frozen dataclass: built once per request, and a
    frozen dataclass's __init__ costs a microsecond more."""

    status: int
    reason: str
    lines: bytes  # header lines minus hop-by-hop ones, each led by CRLF: b"\r\nServer: x\r\nX-A: 1"
    content_length: int | None  # None: chunked or until close
    keep_alive: bool
    connection: str | None  # the Connection header, whose tokens may name more hop-by-hop headers

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The header lines to forward as `(name, value)` pairs, in order."""
        pairs = []
        for line in self.lines.decode("utf-8", "replace").split("\r\n")[1:]:
            key, _, value = line.partition(":")
            pairs.append((key, value.strip(" \t")))
        return pairs



_HEAD, _BODY, _UNTIL_CLOSE, _DONE = range(4)


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection; one request/response exchange at a time.

    Two ways to consume a response: await it (`response_head`, `read_chunk`: the aiohttp
    path), or `attach` a callback that runs after every step of progress and takes what has
    arrived (`head`, `take_chunks`, `finished`, `error`: the direct path, no task at all)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, port: int) -> None:
        self.loop = loop
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._parser: httptools.HttpResponseParser | None = None
        self._head_bytes = 0
        self._state = _DONE
        self._no_body = False
        self._reason = b""
        self._pairs: list[tuple[bytes, bytes]] = []
        self._head: ResponseHead | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused_reading = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._error: Exception | None = None
        self._keep_alive = True
        self._sink: Callable[[], None] | None = None
        self._held = False  # reading paused for the direct path's slow client

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._keep_alive = False
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE  # the body ends with the connection
        elif self._state != _DONE and self._error is None:
            self._error = UpstreamError(
                f"127.0.0.1:{self.port}: connection closed "
                + ("before the response" if self._state == _HEAD else "in the middle of the response")
            )
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(self._error or UpstreamError("connection closed while sending"))
            self._drain = None

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    def data_received(self, data: bytes) -> None:
        if self._state == _DONE or self._parser is None:
            # bytes nobody asked for: the connection can no longer be trusted
            self._keep_alive = False
            if self.transport is not None:
                self.transport.close()
            return
        if self._state == _HEAD:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD and b"\r\n\r\n" not in data:
                self._fail(UpstreamError(f"127.0.0.1:{self.port}: response head larger than {MAX_HEAD} bytes"))
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:  # one of our callbacks raised: llhttp wraps it
            if isinstance(exc.__context__, _Unasked):
                self._keep_alive = False  # the first response stands, whole; the rest is dropped
                if self.transport is not None:
                    self.transport.close()
            else:
                cause = exc.__context__
                self._fail(cause if isinstance(cause, UpstreamError) else UpstreamError(
                    f"127.0.0.1:{self.port}: malformed response ({_reason_of(exc)})"))
                return
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"127.0.0.1:{self.port}: malformed response ({_reason_of(exc)})"))
            return
        except UpstreamError as exc:
            self._fail(exc)
            return
        self._wake()

    def _fail(self, exc: UpstreamError) -> None:
        self._error = exc
        self._keep_alive = False
        if self.transport is not None:
            self.transport.close()
        self._wake()

    # ------------------------------------------------------------------ llhttp's callbacks

    def on_status(self, reason: bytes) -> None:
        self._reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._pairs.append((name, value))
        if len(self._pairs) > 1000:
            raise UpstreamError(f"127.0.0.1:{self.port}: response head with more than 1000 headers")

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if status == 101:  # the proxy never asks this connection for an upgrade
            raise UpstreamError(f"127.0.0.1:{self.port}: malformed response (101 Switching Protocols "
                                "to a request that asked for no upgrade)")
        if 100 <= status < 200:
            self._pairs = []  # 100 Continue and friends: the real response follows
            return
        length: int | None = None
        chunked = False
        connection: str | None = None
        kept = []
        for name, value in self._pairs:
            low = name.lower()
            if low == b"content-length":
                length = int(value)  # llhttp checked it: digits, only one
            elif low in _HOP_BY_HOP:
                if low == b"transfer-encoding":
                    codings = [c.strip() for c in value.lower().split(b",") if c.strip()]
                    unknown = [c for c in codings if c != b"chunked"]
                    if unknown or not codings:
                        # nginx answers 502 too: a coding the client would not be told about
                        raise UpstreamError(
                            f"127.0.0.1:{self.port}: malformed response (transfer-coding "
                            f'"{value.decode("latin-1")}" is not supported)'
                        )
                    chunked = True
                elif low == b"connection":
                    text = value.decode("latin-1")
                    connection = text if connection is None else f"{connection}, {text}"
                continue
            kept.append(b"\r\n%s: %s" % (name, value))
        self._pairs = []
        if chunked:
            # RFC 9112 §6.3: Transfer-Encoding wins over Content-Length, which then must not
            # reach the client beside the chunked framing
            if length is not None:
                kept = [line for line in kept if not line[2:].lower().startswith(b"content-length:")]
            length = None
        self._keep_alive = self._parser.should_keep_alive()
        if self._no_body or status in NO_BODY_STATUS:
            self._state = _DONE  # no body, whatever the headers say (llhttp is told so by a new parser next time)
        elif chunked or length is not None:
            self._state = _BODY if length != 0 else _DONE
        else:
            self._state = _UNTIL_CLOSE
            self._keep_alive = False
        reason = self._reason.decode("latin-1")
        if not reason.isascii():
            reason = self._reason.decode("utf-8", "replace")
        self._head = ResponseHead(status, reason, b"".join(kept), length, self._keep_alive, connection)

    def on_body(self, body: bytes) -> None:
        if self._state != _DONE:
            self._push(body)

    def on_message_begin(self) -> None:
        if self._head is not None and self._state == _DONE:
            # A second response in the same read, before the next request was sent: never
            # relayed (it would overwrite the first head); the connection is not reused.
            raise _Unasked

    def on_message_complete(self) -> None:
        if self._head is not None:
            self._state = _DONE

    def _push(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > READ_HIGH_WATER and not self._paused_reading and self.transport is not None:
            self._paused_reading = True
            self.transport.pause_reading()

    def _wake(self) -> None:
        if self._sink is not None:
            self._sink()
            return
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # ------------------------------------------------------------------ the exchange

    def begin(self, head: bytes, *, no_body: bool) -> None:
        """Send a request head; `no_body` for HEAD requests, whose response has no body."""
        assert self.transport is not None
        # A parser per exchange: llhttp cannot be told that the answer to a HEAD has no body,
        # so that answer ends at its head and the next exchange starts clean.
        self._parser = httptools.HttpResponseParser(self)
        self._parser.set_dangerous_leniencies(lenient_chunked_length=True)  # RFC 9112 §6.3, above
        self._state = _HEAD
        self._head_bytes = 0
        self._no_body = no_body
        self._reason = b""
        self._pairs = []
        self._head = None
        self._error = None
        self._chunks.clear()
        self._buffered = 0
        if self.closed:  # the upstream closed it since we got it: nothing will ever answer
            self._error = UpstreamError(f"127.0.0.1:{self.port}: connection closed before the response")
            self._wake()
            return
        self.transport.write(head)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        if self.closed:
            raise self._error or UpstreamError(f"127.0.0.1:{self.port}: connection closed while sending")
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the kernel's send buffer is full (a slow upstream reading a big upload)."""
        if self._drain is not None:
            await self._drain

    async def response_head(self) -> ResponseHead:
        while self._head is None:
            if self._error is not None:  # set by begin() or connection_lost() when it closed
                raise self._error
            await self._wait()
        return self._head

    def take_all(self) -> bytes | None:
        """The whole body when it has already arrived (the common small-response case), else None."""
        if self._state != _DONE or self._error is not None:
            return None
        if not self._chunks:
            return b""
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return body

    async def read_chunk(self) -> bytes:
        """The next piece of body as it arrived; b"" once the body is complete."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._state == _DONE:
                return b""
            await self._wait()
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused_reading and self._buffered <= READ_HIGH_WATER // 4 and self.transport is not None:
            self._paused_reading = False
            self.transport.resume_reading()
        return chunk

    # ------------------------------------------------------------------ the callback way

    def attach(self, sink: Callable[[], None]) -> None:
        """Call `sink` after each step of the exchange instead of waking an awaiting reader."""
        self._sink = sink

    def detach(self) -> None:
        self._sink = None
        if self._held:
            self._held = False
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()

    @property
    def head(self) -> ResponseHead | None:
        return self._head

    @property
    def replied(self) -> bool:
        """Some of an answer to this exchange arrived, well-formed or not: the request was
        read, so it is never sent again (only a close without a byte may be retried)."""
        return self._head_bytes > 0 or self._head is not None

    @property
    def error(self) -> Exception | None:
        """Why the exchange broke, including a close before the response."""
        return self._error

    @property
    def finished(self) -> bool:
        """The whole response has arrived (and been taken, for the callback way)."""
        return self._state == _DONE and self._error is None and not self._chunks

    def take_chunks(self) -> list[bytes]:
        """The body pieces that arrived since the last call, in order."""
        chunks = list(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._paused_reading and self.transport is not None:
            self._paused_reading = False
            if not self._held:
                self.transport.resume_reading()
        return chunks

    def hold(self) -> None:
        """Stop reading from the upstream: the client is not keeping up."""
        if not self._held and self.transport is not None and not self.closed:
            self._held = True
            self.transport.pause_reading()

    def release_hold(self) -> None:
        if self._held:
            self._held = False
            if self.transport is not None and not self.closed and not self._paused_reading:
                self.transport.resume_reading()

    @property
    def reusable(self) -> bool:
        return self._state == _DONE and self._keep_alive and not self.closed and self._error is None

    def close(self) -> None:
        self._keep_alive = False
        if self.transport is not None:
            self.transport.close()


class UpstreamPool:
    """Idle keep-alive connections per upstream port, most recently used first."""

    def __init__(self, *, connect_timeout: float = 5.0, idle_timeout: float = 30.0, max_idle: int = 256) -> None:
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        self._idle: dict[int, list[UpstreamConnection]] = {}
        self._hosts: dict[int, str] = {}  # port -> the loopback address it answered on
        # Ports that have answered HTTP at least once: only a request to one of them may be
        # sent again after the connection closed unanswered (SPEC §5).
        self.answered: set[int] = set()

    async def acquire(self, port: int) -> UpstreamConnection:
        """An idle connection to 127.0.0.1:port, or a new one."""
        return self.take_idle(port) or await self.connect(port)

    def take_idle(self, port: int) -> UpstreamConnection | None:
        """The most recently used idle connection to 127.0.0.1:port still open, if any."""
        idle = self._idle.get(port)
        if idle:
            now = time.monotonic()
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < self.idle_timeout:
                    conn.reused = True
                    return conn
                conn.close()
        return None

    def host(self, port: int) -> str:
        """The loopback address the service on `port` answered on last (127.0.0.1 until then)."""
        return self._hosts.get(port, "127.0.0.1")

    async def locate(self, port: int) -> str:
        """The loopback address the service on `port` listens on, found by connecting once when
        it is not known yet (a WebSocket goes through aiohttp's client, which tries one address)."""
        if port not in self._hosts:
            (await self.connect(port)).close()
        return self.host(port)

    async def connect(self, port: int) -> UpstreamConnection:
        """A new connection to the service on `port`: on 127.0.0.1, else on ::1 (a dev server
        bound to `localhost` may listen on ::1 only); the address that answered is kept."""
        loop = asyncio.get_running_loop()
        first = self.host(port)
        refused: OSError | None = None
        for host in (first, "::1" if first == "127.0.0.1" else "127.0.0.1"):
            try:
                async with asyncio.timeout(self.connect_timeout):
                    _, conn = await loop.create_connection(lambda: UpstreamConnection(loop, port), host, port)
            except TimeoutError:
                raise UpstreamConnectError(port, f"no answer to connect within {self.connect_timeout:g} s") from None
            except OSError as exc:
                if refused is None:
                    refused = exc
                continue
            self._hosts[port] = host
            return conn
        assert refused is not None
        raise UpstreamConnectError(port, refused.strerror or str(refused))

    def release(self, conn: UpstreamConnection) -> None:
        """Keep `conn` for the next request when its last exchange ended cleanly; close it otherwise."""
        if not conn.reusable:
            conn.close()
            return
        idle = self._idle.setdefault(conn.port, [])
        if len(idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
