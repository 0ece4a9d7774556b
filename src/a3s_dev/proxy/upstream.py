"""A small HTTP/1.1 client for the proxy: keep-alive connections to `127.0.0.1:<port>`, pooled.

Why not `aiohttp.ClientSession` for plain requests: profiling the proxy under wrk showed two
thirds of the per-request time in the client's bookkeeping (URL building, `ClientRequest`
header merging, timers, connector and response objects), none of which a loopback proxy
needs. This client writes the request head in one call, parses the response head in one
pass (cutting hop-by-hop lines as it goes) and hands the body on as it arrives
(Content-Length, chunked, or until close), to an awaiting reader (server.py) or to a
callback (direct.py). WebSocket upgrades still go through aiohttp (server.py).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import NamedTuple

from a3s_dev.proxy.headers import HOP_BY_HOP

MAX_HEAD = 64 * 1024  # a response head larger than this is an upstream error
READ_HIGH_WATER = 256 * 1024  # stop reading from the upstream while this much body waits
NO_BODY_STATUS = frozenset({204, 304})


class UpstreamError(Exception):
    """The upstream broke the exchange (closed early, sent garbage)."""


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



_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


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
        self._buf = bytearray()
        self._state = _DONE
        self._no_body = False
        self._remaining = 0
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
            self._state = _DONE
        elif self._state != _DONE:
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
        if self._state == _DONE:
            # bytes nobody asked for: the connection can no longer be trusted
            self._keep_alive = False
            if self.transport is not None:
                self.transport.close()
            return
        if not self._buf and self._state == _HEAD:
            end = data.find(b"\r\n\r\n")
            if end != -1:
                # the common case, a whole small response in one read: no buffer copies
                try:
                    self._on_head(data[:end])
                except UpstreamError as exc:
                    self._fail(exc)
                    return
                data = data[end + 4 :]
                if self._state == _LENGTH and len(data) == self._remaining:
                    if data:
                        self._push(data)
                    self._remaining = 0
                    self._state = _DONE
                    self._wake()
                    return
                if not data:
                    self._wake()
                    return
        self._buf += data
        try:
            self._parse()
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

    # ------------------------------------------------------------------ parsing

    def _parse(self) -> None:
        buf = self._buf
        while buf:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end == -1:
                    if len(buf) > MAX_HEAD:
                        raise UpstreamError(f"127.0.0.1:{self.port}: response head larger than {MAX_HEAD} bytes")
                    return
                head = bytes(buf[:end])
                del buf[: end + 4]
                self._on_head(head)
            elif state == _LENGTH:
                n = min(self._remaining, len(buf))
                self._push(bytes(buf[:n]))
                del buf[:n]
                self._remaining -= n
                if self._remaining == 0:
                    self._state = _DONE
            elif state == _UNTIL_CLOSE:
                self._push(bytes(buf))
                buf.clear()
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n")
                if end == -1:
                    if len(buf) > 4096:
                        raise UpstreamError(f"127.0.0.1:{self.port}: bad chunk size line")
                    return
                try:
                    size = int(bytes(buf[:end]).split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise UpstreamError(f"127.0.0.1:{self.port}: bad chunk size line") from None
                del buf[: end + 2]
                if size < 0:
                    raise UpstreamError(f"127.0.0.1:{self.port}: bad chunk size line")
                self._remaining = size
                self._state = _CHUNK_DATA if size else _TRAILERS
            elif state == _CHUNK_DATA:
                n = min(self._remaining, len(buf))
                self._push(bytes(buf[:n]))
                del buf[:n]
                self._remaining -= n
                if self._remaining == 0:
                    self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    raise UpstreamError(f"127.0.0.1:{self.port}: chunk not followed by CRLF")
                del buf[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = buf.find(b"\r\n")
                if end == -1:
                    if len(buf) > MAX_HEAD:
                        raise UpstreamError(f"127.0.0.1:{self.port}: trailers too large")
                    return
                del buf[: end + 2]
                if end == 0:  # the empty line that ends the message (trailers are dropped)
                    self._state = _DONE
            else:  # _DONE with bytes left over: the upstream sent more than one response
                self._keep_alive = False
                buf.clear()
                return

    def _on_head(self, raw: bytes) -> None:
        # One decode (latin-1: every byte maps to one character and back), one split, one loop:
        # the framing headers read, hop-by-hop lines cut; str operations beat bytes ones here.
        lines = raw.decode("latin-1").split("\r\n")
        first = lines[0]
        if not (first.startswith(("HTTP/1.1 ", "HTTP/1.0 ")) and first[9:12].isdigit() and first[12:13] in ("", " ")):
            text = first[:80].encode("latin-1").decode("utf-8", "replace")
            raise UpstreamError(f"127.0.0.1:{self.port}: not an HTTP/1.x response: {text!r}")
        status = int(first[9:12])
        if 100 <= status < 200:
            return  # 100 Continue and friends: the real response follows
        length: int | None = None
        chunked = False
        keep_alive = first[7] == "1"  # HTTP/1.1
        connection: str | None = None
        kept = [""]
        for line in lines[1:]:
            key, sep, value = line.partition(":")
            if not sep:
                text = line[:80].encode("latin-1").decode("utf-8", "replace")
                raise UpstreamError(f"127.0.0.1:{self.port}: bad header line {text!r}")
            low = key.lower()
            if low == "content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise UpstreamError(f"127.0.0.1:{self.port}: bad Content-Length {value.strip()!r}") from None
                if length < 0:
                    raise UpstreamError(f"127.0.0.1:{self.port}: bad Content-Length {length}")
            elif low in HOP_BY_HOP:
                value = value.strip(" \t")
                if low == "transfer-encoding":
                    chunked = "chunked" in value.lower()
                elif low == "connection":
                    connection = value if connection is None else f"{connection}, {value}"
                    tokens = value.lower()
                    if "close" in tokens:
                        keep_alive = False
                    elif "keep-alive" in tokens:
                        keep_alive = True
                continue
            kept.append(line)
        if chunked:
            # RFC 9112 §6.3: Transfer-Encoding wins over Content-Length, which then must not
            # reach the client beside our own chunked framing
            if length is not None:
                kept = [line for line in kept if line.partition(":")[0].strip().lower() != "content-length"]
            length = None
        self._keep_alive = keep_alive
        if self._no_body or status in NO_BODY_STATUS:
            self._state = _DONE
        elif chunked:
            self._state = _CHUNK_SIZE
        elif length is not None:
            self._remaining = length
            self._state = _LENGTH if length else _DONE
        else:
            self._state = _UNTIL_CLOSE
            self._keep_alive = False
        reason = first[13:]
        if not reason.isascii():
            reason = reason.encode("latin-1").decode("utf-8", "replace")
        forward = "\r\n".join(kept).encode("latin-1") if len(kept) > 1 else b""
        self._head = ResponseHead(status, reason, forward, length, self._keep_alive, connection)

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
        self._state = _HEAD
        self._no_body = no_body
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

    async def connect(self, port: int) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(lambda: UpstreamConnection(loop, port), "127.0.0.1", port)
        except TimeoutError:
            raise UpstreamConnectError(port, f"no answer to connect within {self.connect_timeout:g} s") from None
        except OSError as exc:
            raise UpstreamConnectError(port, exc.strerror or str(exc)) from None
        return conn

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
