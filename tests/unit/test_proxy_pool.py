"""The proxy's upstream HTTP/1.1 client on llhttp: response framing and reuse, fed bytes by hand (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from a3s_dev.proxy.upstream import UpstreamConnection, UpstreamError, UpstreamPool


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: Any) -> None:
        self.sent += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def exchange(feed: list[bytes], *, head_only: bool = False) -> tuple[UpstreamConnection, FakeTransport, Any, bytes]:
    """Send a request on a fresh connection, feed the response in pieces, read head and body."""

    async def run() -> tuple[UpstreamConnection, FakeTransport, Any, bytes]:
        conn = UpstreamConnection(asyncio.get_running_loop(), 9)
        transport = FakeTransport()
        conn.connection_made(transport)
        conn.begin(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", no_body=head_only)
        for piece in feed:
            conn.data_received(piece)
        head = await conn.response_head()
        body = b""
        while chunk := await conn.read_chunk():
            body += chunk
        return conn, transport, head, body

    return asyncio.run(run())


def test_hop_by_hop_lines_are_cut_and_the_connection_header_kept_aside() -> None:
    raw = (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-S\r\nKeep-Alive: timeout=5\r\n"
           b"X-S: 1\r\nContent-Length: 2\r\nX-A: \xc3\xa9\r\n\r\nok")
    _, _, head, body = exchange([raw])
    assert head.lines == b"\r\nX-S: 1\r\nContent-Length: 2\r\nX-A: \xc3\xa9", "bytes as they came"
    assert head.connection == "keep-alive, X-S" and head.keep_alive and body == b"ok"
    assert head.headers == [("X-S", "1"), ("Content-Length", "2"), ("X-A", "é")]


def test_chunked_wins_over_content_length_which_is_not_forwarded() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    conn, _, head, body = exchange([raw])
    assert (head.content_length, head.lines, body) == (None, b"\r\nX-A: 1", b"ok")
    assert conn.reusable


def test_callback_consumer_gets_head_pieces_and_the_end_without_awaiting() -> None:
    async def run() -> list[tuple[Any, ...]]:
        conn = UpstreamConnection(asyncio.get_running_loop(), 9)
        conn.connection_made(FakeTransport())
        seen: list[tuple[Any, ...]] = []
        conn.attach(lambda: seen.append((conn.head and conn.head.status, conn.take_chunks(), conn.finished)))
        conn.begin(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", no_body=False)
        for piece in (b"HTTP/1.1 200 OK\r\nTransfer-", b"Encoding: chunked\r\n\r\n3\r\nabc\r\n", b"0\r\n\r\n"):
            conn.data_received(piece)
        conn.detach()
        assert conn.reusable
        return seen

    assert asyncio.run(run()) == [(None, [], False), (200, [b"abc"], False), (200, [], True)]


def test_callback_consumer_hears_of_a_close_before_the_response() -> None:
    async def run() -> Exception | None:
        conn = UpstreamConnection(asyncio.get_running_loop(), 9)
        conn.connection_made(FakeTransport())
        errors: list[Exception | None] = []
        conn.attach(lambda: errors.append(conn.error))
        conn.begin(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", no_body=False)
        conn.connection_lost(None)
        return errors[-1]

    error = asyncio.run(run())
    assert isinstance(error, UpstreamError) and "before the response" in str(error)


def test_a_request_begun_on_a_connection_closed_meanwhile_fails_at_once() -> None:
    """The upstream may close a fresh connection before the request goes out: the exchange
    fails at once, for the callback way as for the awaiting one, instead of waiting forever."""

    async def run() -> tuple[list[Exception | None], Exception]:
        conn = UpstreamConnection(asyncio.get_running_loop(), 9)
        conn.connection_made(FakeTransport())
        conn.connection_lost(None)
        errors: list[Exception | None] = []
        conn.attach(lambda: errors.append(conn.error))
        conn.begin(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", no_body=False)
        conn.detach()
        with pytest.raises(UpstreamError) as awaited:
            await asyncio.wait_for(conn.response_head(), 1)
        return errors, awaited.value

    errors, awaited = asyncio.run(run())
    assert len(errors) == 1 and isinstance(errors[0], UpstreamError) and "before the response" in str(errors[0])
    assert "before the response" in str(awaited)


def test_content_length_body_and_keep_alive() -> None:
    conn, _, head, body = exchange([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello"])
    assert (head.status, head.reason, body) == (200, "OK", b"hello")
    assert ("X-A", "1") in head.headers and head.content_length == 5
    assert conn.reusable


@pytest.mark.parametrize("split", [1, 3, 7])
def test_chunked_body_is_decoded_across_any_split(split: int) -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n"
    pieces = [raw[i : i + split] for i in range(0, len(raw), split)]
    conn, _, head, body = exchange(pieces)
    assert body == b"hello world" and head.content_length is None
    assert conn.reusable


def test_body_until_close_is_not_reused() -> None:
    async def run() -> tuple[bytes, bool]:
        conn = UpstreamConnection(asyncio.get_running_loop(), 9)
        conn.connection_made(FakeTransport())
        conn.begin(b"GET / HTTP/1.1\r\n\r\n", no_body=False)
        conn.data_received(b"HTTP/1.0 200 OK\r\n\r\npart one ")
        await conn.response_head()
        first = await conn.read_chunk()
        conn.data_received(b"part two")
        second = await conn.read_chunk()
        conn.connection_lost(None)
        assert await conn.read_chunk() == b""
        return first + second, conn.reusable

    assert asyncio.run(run()) == (b"part one part two", False)


def test_interim_100_continue_is_skipped() -> None:
    _, _, head, body = exchange([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"])
    assert (head.status, body) == (201, b"ok")


def test_head_and_304_responses_have_no_body_even_with_a_length() -> None:
    conn, _, head, body = exchange([b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"], head_only=True)
    assert (head.status, head.content_length, body) == (200, 99, b"") and conn.reusable
    conn, _, head, body = exchange([b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"])
    assert (head.status, body) == (304, b"") and conn.reusable


def test_connection_close_header_prevents_reuse() -> None:
    conn, _, _, body = exchange([b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"])
    assert body == b"ok" and not conn.reusable


def test_close_in_the_middle_of_a_body_is_an_error() -> None:
    async def run() -> None:
        conn = UpstreamConnection(asyncio.get_running_loop(), 9)
        conn.connection_made(FakeTransport())
        conn.begin(b"GET / HTTP/1.1\r\n\r\n", no_body=False)
        conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await conn.response_head()
        assert await conn.read_chunk() == b"abc"
        conn.connection_lost(None)
        with pytest.raises(UpstreamError, match="middle of the response"):
            await conn.read_chunk()

    asyncio.run(run())


def test_garbage_instead_of_a_response_is_an_error() -> None:
    with pytest.raises(UpstreamError, match="malformed response"):
        exchange([b"SSH-2.0-OpenSSH\r\n\r\n"])


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 20\r\n\r\nhello", "Duplicate Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 20\r\n\r\nhello", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 5\r\n\r\nhello", "LF"),
        (b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello", "header value char"),
        (b"HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\nContent-Length: 5\r\n\r\nhello", "whitespace"),
        (b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", "CR"),
    ],
    ids=["conflicting-lengths", "length-list", "bare-cr", "nul", "obs-fold", "bare-lf"],
)
def test_an_ambiguous_or_malformed_response_head_is_an_error_never_forwarded(raw: bytes, why: str) -> None:
    """SPEC §8: the proxy answers these with its 502 page; none of their bytes reach the client."""
    with pytest.raises(UpstreamError, match=f"malformed response.*{why}"):
        exchange([raw])


def test_transfer_encoding_wins_over_content_length_which_is_not_forwarded() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    _, _, head, body = exchange([raw])
    assert body == b"hello" and head.content_length is None and b"Content-Length" not in head.lines


def test_a_head_split_across_reads_is_read_whole() -> None:
    raw = b"HTTP/1.1 200 OK\r\nX-Long: " + b"v" * 5000 + b"\r\nContent-Length: 2\r\n\r\nok"
    _, _, head, body = exchange([raw[i : i + 7] for i in range(0, len(raw), 7)])
    assert body == b"ok" and head.lines.startswith(b"\r\nX-Long: vvv")


def test_a_slow_reader_pauses_the_upstream() -> None:
    async def run() -> None:
        conn = UpstreamConnection(asyncio.get_running_loop(), 9)
        transport = FakeTransport()
        conn.connection_made(transport)
        conn.begin(b"GET / HTTP/1.1\r\n\r\n", no_body=False)
        conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
        for _ in range(10):
            conn.data_received(b"x" * 100_000)
        assert transport.paused, "a body nobody reads must not pile up in memory"
        total = 0
        while chunk := await conn.read_chunk():
            total += len(chunk)
        assert total == 1_000_000 and not transport.paused

    asyncio.run(run())


def test_pool_reuses_clean_connections_and_drops_the_rest() -> None:
    async def run() -> None:
        pool = UpstreamPool()
        conn = UpstreamConnection(asyncio.get_running_loop(), 9)
        conn.connection_made(FakeTransport())
        pool.release(conn)  # a finished exchange (none yet): reusable
        assert await pool.acquire(9) is conn and conn.reused
        conn.begin(b"GET / HTTP/1.1\r\n\r\n", no_body=False)
        pool.release(conn)  # mid-exchange: must not be handed out again
        assert conn.transport is not None and conn.transport.is_closing()
        assert not pool._idle.get(9)

    asyncio.run(run())
