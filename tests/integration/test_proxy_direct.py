"""The proxy's direct path (proxy_direct.py) and its hand-over to aiohttp, with real sockets.

The upstream here is a stdlib server that writes its responses by hand, so that the framings
the direct path must relay (chunked, until close, hop-by-hop headers, a slow stream) are
exactly what it gets. Clients are blocking stdlib ones run in a thread, off the proxy's loop.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import to_thread
from proxy_support import backend_for, running_proxy, start_upstream, svc
from support import free_port

pytestmark = pytest.mark.anyio

HUGE = 16 * 1024 * 1024

RAW_UPSTREAM = r"""
import json, os, socketserver, time
from pathlib import Path

FOLDER = Path(__file__).parent
HUGE = 16 * 1024 * 1024

class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = self.rfile.readline()
                if not line:
                    return
                head += line
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            for line in lines:
                if line.lower().startswith("content-length:"):
                    self.rfile.read(int(line.split(":")[1]))
            if not self.answer(method, path, lines):
                return

    def send(self, data):
        self.wfile.write(data)
        self.wfile.flush()

    def answer(self, method, path, lines):
        if path == "/chunked":
            self.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b"one ", b"two ", b"three"):
                self.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.send(b"0\r\n\r\n")
            return True
        if path == "/until-close":
            self.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstreamed until close")
            return False
        if path == "/hop":
            self.send(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n"
                      b"X-Secret: s\r\nX-Kept: k\r\nContent-Length: 2\r\n\r\nok")
            return True
        if path == "/two-lengths":
            self.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 20\r\n\r\nhello" + b"x" * 15)
            return False
        if path == "/split":  # two responses in one write: the second was never asked for
            self.send(b"HTTP/1.1 204 No Content\r\n\r\n"
                      b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nSet-Cookie: evil=1\r\n\r\ninjected!")
            return True
        if path == "/xchunked":
            self.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            return False
        if path == "/gzip-chunked":
            self.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            return False
        if path == "/switch":  # 101 to a request that asked for no upgrade
            self.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: evil\r\nConnection: Upgrade\r\n\r\nraw bytes")
            return False
        if path == "/bare-cr":
            self.send(b"HTTP/1.1 200 OK\r\nX-Smuggle: a\rSet-Cookie: evil=1\r\nContent-Length: 2\r\n\r\nok")
            return False
        if path == "/huge":
            self.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % HUGE)
            piece = bytes(range(256)) * 256
            for _ in range(HUGE // len(piece)):
                self.wfile.write(piece)
            self.wfile.flush()
            return True
        if path == "/stream":
            self.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            try:
                for i in range(2000):
                    event = b"data: %d\n\n" % i
                    self.send(b"%x\r\n%s\r\n" % (len(event), event))
                    time.sleep(0.01)
            except OSError:
                (FOLDER / "client-gone").write_text("yes")
            return False
        body = json.dumps({"path": path, "head": lines[1:-2]}).encode()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        self.send(head if method == "HEAD" else head + body)
        return True

class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.fixture
def raw_upstream(tmp_path: Path) -> Iterator[int]:
    script = tmp_path / "raw_upstream.py"
    script.write_text(RAW_UPSTREAM)
    up = start_upstream(script, "raw", free_port())
    try:
        yield up.port
    finally:
        up.stop()


class _KeptOpen:
    """A socket file whose close() leaves it open, for the next response on the socket."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def close(self) -> None:
        pass


class _OneReader:
    """Lets http.client.HTTPResponse read several responses from one socket in turn."""

    def __init__(self, sock: socket.socket) -> None:
        self.file = sock.makefile("rb")

    def makefile(self, *args: Any, **kwargs: Any) -> Any:
        return _KeptOpen(self.file)


def read_response(reader: _OneReader, method: str = "GET") -> tuple[http.client.HTTPResponse, bytes]:
    response = http.client.HTTPResponse(reader, method=method)  # type: ignore[arg-type]
    response.begin()
    return response, response.read()


def requests_on_one_connection(port: int, calls: list[tuple[str, str, bytes | None]]) -> list[tuple[int, dict[str, str], bytes, bool]]:
    """Send each (method, path, body) on one kept-alive connection; per answer: status, headers,
    body and whether the same socket was still in use."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    try:
        first: socket.socket | None = None
        for method, path, body in calls:
            conn.request(method, path, body=body, headers={"Host": "api.localhost"})
            response = conn.getresponse()
            data = response.read()
            first = first or conn.sock
            out.append((response.status, dict(response.getheaders()), data, conn.sock is first))
    finally:
        conn.close()
    return out


async def test_plain_requests_go_direct_and_a_body_moves_the_connection_to_aiohttp(raw_upstream: int) -> None:
    b = backend_for(svc("api", raw_upstream))
    async with running_proxy(b) as port:
        answers = await to_thread.run_sync(requests_on_one_connection, port, [
            ("GET", "/a", None), ("GET", "/b", None), ("HEAD", "/c", None),
            ("POST", "/d", b"a body"),  # aiohttp's path from here on
            ("GET", "/e", None),
        ])
        assert [a[0] for a in answers] == [200] * 5
        assert all(same for *_, same in answers), "every answer came on the one client connection"
        assert [json.loads(a[2])["path"] for a in answers if a[2]] == ["/a", "/b", "/d", "/e"]
        assert answers[2][2] == b"" and int(answers[2][1]["Content-Length"]) > 0
        counts = b.proxy_counts
        assert (counts.direct, counts.handed_over) == (3, 1)


async def test_forwarded_head_is_the_same_on_both_paths(raw_upstream: int) -> None:
    """The direct path and aiohttp's path rewrite the request head alike."""

    def heads(port: int) -> list[list[str]]:
        out = []
        for method in ("GET", "OPTIONS"):  # OPTIONS with a body: aiohttp's path
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            body = b"x" if method == "OPTIONS" else None
            conn.putrequest(method, "/same?q=1", skip_host=True, skip_accept_encoding=True)
            for name, value in [
                ("Host", "api.localhost"), ("Connection", "keep-alive, X-Private"), ("X-Private", "p"),
                ("Connection", "X-Other"), ("X-Other", "o"),  # two Connection headers: both count (issue 21)
                ("X-Forwarded-For", "10.0.0.1"), ("X-Forwarded-Proto", "https"), ("Accept", "*/*"),
                *([("Content-Length", "1")] if body else []),
            ]:
                conn.putheader(name, value)
            conn.endheaders(body)
            head = json.loads(conn.getresponse().read())["head"]
            conn.close()
            out.append([h for h in head if not h.lower().startswith(("content-length", "transfer-encoding", "accept-encoding"))])
        return out

    b = backend_for(svc("api", raw_upstream))
    async with running_proxy(b) as port:
        direct, full = await to_thread.run_sync(heads, port)
    assert sorted(direct) == sorted(full)
    assert "Host: api.localhost" in direct and "Accept: */*" in direct
    assert "X-Forwarded-For: 10.0.0.1, 127.0.0.1" in direct and "X-Forwarded-Proto: http" in direct
    assert "X-Forwarded-Host: api.localhost" in direct
    assert not any(h.startswith(("Connection", "X-Private", "X-Other")) for h in direct)


async def test_pipelined_requests_are_answered_in_order(raw_upstream: int) -> None:
    def pipeline(port: int) -> list[str]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"".join(b"GET /p%d HTTP/1.1\r\nHost: api.localhost\r\n\r\n" % i for i in range(5)))
            reader = _OneReader(sock)
            return [json.loads(read_response(reader)[1])["path"] for _ in range(5)]

    b = backend_for(svc("api", raw_upstream))
    async with running_proxy(b) as port:
        assert await to_thread.run_sync(pipeline, port) == [f"/p{i}" for i in range(5)]
        assert b.proxy_counts.direct == 5


async def test_a_hand_over_in_the_middle_of_a_pipeline_keeps_every_request_in_order(raw_upstream: int) -> None:
    """Two plain requests, one with a body, two plain again, in one write: the first two go
    direct, then aiohttp gets the connection with the rest of the bytes and answers them."""

    def pipeline(port: int) -> list[tuple[str, str]]:
        requests = [
            b"GET /a HTTP/1.1\r\nHost: api.localhost\r\n\r\n",
            b"GET /b HTTP/1.1\r\nHost: api.localhost\r\n\r\n",
            b"POST /c HTTP/1.1\r\nHost: api.localhost\r\nContent-Length: 4\r\n\r\nbody",
            b"GET /d HTTP/1.1\r\nHost: api.localhost\r\n\r\n",
            b"HEAD /e HTTP/1.1\r\nHost: api.localhost\r\n\r\n",
        ]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"".join(requests))
            reader = _OneReader(sock)
            out = []
            for method in ("GET", "GET", "POST", "GET", "HEAD"):
                response, body = read_response(reader, method)
                out.append((method, json.loads(body)["path"] if body else response.getheader("Content-Type")))
            return out

    b = backend_for(svc("api", raw_upstream))
    async with running_proxy(b) as port:
        assert await to_thread.run_sync(pipeline, port) == [
            ("GET", "/a"), ("GET", "/b"), ("POST", "/c"), ("GET", "/d"), ("HEAD", "application/json"),
        ]
        assert (b.proxy_counts.direct, b.proxy_counts.handed_over) == (2, 1)


async def test_chunked_and_until_close_bodies_arrive_whole_and_the_client_connection_stays(raw_upstream: int) -> None:
    b = backend_for(svc("api", raw_upstream))
    async with running_proxy(b) as port:
        answers = await to_thread.run_sync(requests_on_one_connection, port, [
            ("GET", "/chunked", None), ("GET", "/until-close", None), ("GET", "/chunked", None), ("GET", "/x", None),
        ])
        assert b.proxy_counts.direct == 4
    assert [a[2] for a in answers[:3]] == [b"one two three", b"streamed until close", b"one two three"]
    assert all(same for *_, same in answers), "an upstream closing its own connection does not close the client's"
    assert answers[1][1].get("Transfer-Encoding") == "chunked" and "Connection" not in answers[1][1]


async def test_hop_by_hop_response_headers_are_dropped(raw_upstream: int) -> None:
    async with running_proxy(backend_for(svc("api", raw_upstream))) as port:
        ((status, headers, body, _),) = await to_thread.run_sync(requests_on_one_connection, port, [("GET", "/hop", None)])
    assert (status, body, headers.get("X-Kept")) == (200, b"ok", "k")
    assert not {"Connection", "Keep-Alive", "X-Secret"} & set(headers)


async def test_connection_close_from_the_client_is_honoured(raw_upstream: int) -> None:
    def ask(port: int) -> tuple[int, str | None, bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /bye HTTP/1.1\r\nHost: api.localhost\r\nConnection: close\r\n\r\n")
            reader = _OneReader(sock)
            response, _ = read_response(reader)
            return response.status, response.getheader("Connection"), reader.file.read()  # b"" once closed

    async with running_proxy(backend_for(svc("api", raw_upstream))) as port:
        assert await to_thread.run_sync(ask, port) == (200, "close", b"")


async def test_a_slow_reader_gets_a_large_body_whole(raw_upstream: int) -> None:
    def slow_read(port: int) -> tuple[int, str]:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            sock.sendall(b"GET /huge HTTP/1.1\r\nHost: api.localhost\r\n\r\n")
            reader = _OneReader(sock)
            response = http.client.HTTPResponse(reader)  # type: ignore[arg-type]
            response.begin()
            digest = hashlib.sha256()
            n = 0
            while piece := response.read(4096):
                digest.update(piece)
                n += len(piece)
            return n, digest.hexdigest()

    expected = hashlib.sha256((bytes(range(256)) * 256) * (HUGE // 65536)).hexdigest()
    async with running_proxy(backend_for(svc("api", raw_upstream))) as port:
        assert await to_thread.run_sync(slow_read, port) == (HUGE, expected)


async def test_a_client_leaving_mid_stream_closes_the_upstream_side(raw_upstream: int, tmp_path: Path) -> None:
    def read_two_events_and_leave(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: api.localhost\r\n\r\n")
            got = b""
            while got.count(b"data: ") < 2:
                got += sock.recv(4096)
            return got

    async with running_proxy(backend_for(svc("api", raw_upstream))) as port:
        got = await to_thread.run_sync(read_two_events_and_leave, port)
        assert b"data: 0\n\n" in got and b"text/event-stream" in got
        # the upstream's next writes fail only if the proxy closed its side too
        with anyio.fail_after(10):
            while not (tmp_path / "client-gone").exists():
                await anyio.sleep(0.05)


async def test_a_malformed_request_is_refused_by_aiohttp(raw_upstream: int, caplog: pytest.LogCaptureFixture) -> None:
    def send(port: int, data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(data)
            return sock.recv(65536)

    b = backend_for(svc("api", raw_upstream))
    async with running_proxy(b) as port:
        bad = await to_thread.run_sync(send, port, b"GET / HTTP/1.1\r\nHost: api.localhost\r\nBad Header\r\n\r\n")
        assert bad.split(b" ")[1] == b"400" and b"Invalid header" in bad
        http10 = await to_thread.run_sync(send, port, b"GET /old HTTP/1.0\r\nHost: api.localhost\r\n\r\n")
        assert http10.startswith(b"HTTP/1.") and b'"/old"' in http10
        # issue 21: a TLS ClientHello on the plain port waited 10 s for a head that never comes
        hello = bytes.fromhex("16030100f4010000f00303") + bytes(40)
        started = time.monotonic()
        tls = await to_thread.run_sync(send, port, hello)
        assert tls.split(b" ")[1] == b"400" and time.monotonic() - started < 2
        assert (b.proxy_counts.direct, b.proxy_counts.handed_over) == (0, 3)
    # a client's mistake is the client's answer, not a traceback in the developer's log stream
    assert not [r for r in caplog.records if r.name.startswith("aiohttp")]


async def test_idle_client_connections_are_closed(raw_upstream: int) -> None:
    def idle_then_read(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /once HTTP/1.1\r\nHost: api.localhost\r\n\r\n")
            reader = _OneReader(sock)
            read_response(reader)
            return reader.file.read()  # blocks until the proxy closes the idle connection

    async with running_proxy(backend_for(svc("api", raw_upstream)), idle_timeout=0.4) as port:
        with anyio.fail_after(8):
            assert await to_thread.run_sync(idle_then_read, port) == b""


# Answers the first request on each connection, then reads the next one, notes it and closes
# without answering: a kept-alive upstream connection that dies under a request.
ANSWERS_ONCE = r"""
import os, socket, threading
from pathlib import Path

log = Path(__file__).with_name("requests.log")
lock = threading.Lock()

def read_head(f):
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = f.readline()
        if not line:
            return None
        head += line
    with lock, log.open("a") as out:
        out.write(head.split(b"\r\n")[0].decode() + "\n")
    return head

def serve(conn):
    with conn, conn.makefile("rb") as f:
        if read_head(f) is None:
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nanswer")
        read_head(f)  # noted, never answered

srv = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


async def test_only_idempotent_requests_are_sent_again_after_an_unanswered_close(tmp_path: Path) -> None:
    script, log = tmp_path / "answers_once.py", tmp_path / "requests.log"
    script.write_text(ANSWERS_ONCE)
    up = start_upstream(script, "answers-once", free_port())
    up_port = up.port
    try:
        log.write_text("")

        def ask(port: int, method: str, path: str) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request(method, path, headers={"Host": "api.localhost"})
                response = conn.getresponse()
                response.read()
                return response.status
            finally:
                conn.close()

        async with running_proxy(backend_for(svc("api", up_port))) as port:
            # each first request leaves its upstream connection in the pool, alive; the next
            # request reuses it and the upstream closes it under that request, unanswered
            assert await to_thread.run_sync(ask, port, "GET", "/first") == 200
            assert await to_thread.run_sync(ask, port, "GET", "/again") == 200  # sent again, fresh
            assert await to_thread.run_sync(ask, port, "GET", "/second") == 200
            assert await to_thread.run_sync(ask, port, "POST", "/once") == 502  # never sent twice
        lines = log.read_text().splitlines()
        assert lines.count("GET /again HTTP/1.1") == 2, lines
        assert lines.count("POST /once HTTP/1.1") == 1, lines
    finally:
        up.stop()


ANSWERS_BADLY = ANSWERS_ONCE.replace(
    "        read_head(f)  # noted, never answered\n",
    "        while read_head(f) is not None:  # then a malformed answer to each request\n"
    "            conn.sendall(b\"HTTP/1.1 200 OK\\r\\nX-Bad: a\\x00b\\r\\nContent-Length: 2\\r\\n\\r\\nok\")\n",
)


@pytest.mark.parametrize("hops", [None, "1"], ids=["direct", "aiohttp"])
async def test_a_request_the_upstream_answered_badly_is_never_sent_again(tmp_path: Path, hops: str | None) -> None:
    """Issue 21: a malformed answer (here a NUL in a header) was taken for no answer at all and
    the request went a second time, DELETE included; only a close without a byte is retried."""
    script, log = tmp_path / "answers_badly.py", tmp_path / "requests.log"
    script.write_text(ANSWERS_BADLY)
    up = start_upstream(script, "answers-badly", free_port())
    try:
        log.write_text("")

        def ask(port: int, method: str, path: str) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            headers = {"Host": "api.localhost", **({"X-A3s-Hops": hops} if hops else {})}
            try:
                conn.request(method, path, headers=headers)
                response = conn.getresponse()
                response.read()
                return response.status
            finally:
                conn.close()

        async with running_proxy(backend_for(svc("api", up.port))) as port:
            assert await to_thread.run_sync(ask, port, "GET", "/first") == 200  # its connection is kept
            assert await to_thread.run_sync(ask, port, "DELETE", "/thing") == 502  # on that connection
        lines = log.read_text().splitlines()
        assert lines.count("DELETE /thing HTTP/1.1") == 1, lines
    finally:
        up.stop()


@pytest.mark.parametrize("path", ["/two-lengths", "/bare-cr", "/xchunked", "/gzip-chunked", "/switch"])
@pytest.mark.parametrize("method", ["GET", "POST"], ids=["direct", "aiohttp"])
async def test_an_ambiguous_upstream_response_gets_the_502_page_on_both_paths(
    raw_upstream: int, path: str, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SPEC §8: conflicting Content-Lengths or a bare CR in a header are never relayed; nor is a
    transfer-coding other than chunked (issue 21: `xchunked` was taken as chunked by substring
    and the client hung; `gzip, chunked` lost its gzip)."""

    def ask(port: int) -> tuple[int, bytes, list[tuple[str, str]]]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(method, path, body=b"x" if method == "POST" else None, headers={"Host": "api.localhost"})
        response = conn.getresponse()
        answer = response.status, response.read(), response.getheaders()
        conn.close()
        return answer

    b = backend_for(svc("api", raw_upstream))
    async with running_proxy(b) as port:
        status, body, headers = await to_thread.run_sync(ask, port)
    assert status == 502, body
    assert b"malformed response" in body and b"api" in body
    assert not any(name.lower() == "set-cookie" for name, _ in headers)
    assert b"hello" not in body and b"raw bytes" not in body
    assert not [r.getMessage() for r in caplog.records if r.exc_info], "a traceback in the proxy's log"


async def test_a_body_named_in_connection_can_never_smuggle_a_second_request(raw_upstream: int) -> None:
    """SPEC §8. The attack: `Connection: content-length` used to strip the body's framing, so the
    upstream read the body as a new request on the pooled connection and the next client got
    the answer to /hijacked."""
    smuggled = b"GET /hijacked HTTP/1.1\r\nHost: api.localhost\r\nX-Swallow: "

    def attack(port: int) -> tuple[dict[str, Any], dict[str, Any]]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as evil:
            evil.sendall(
                b"POST /innocent HTTP/1.1\r\nHost: api.localhost\r\nConnection: keep-alive, content-length, host\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(smuggled), smuggled)
            )
            first = read_json_response(evil)
        victim = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        victim.request("GET", "/next", headers={"Host": "api.localhost", "Cookie": "session=secret"})
        second = json.loads(victim.getresponse().read())
        victim.close()
        return first, second

    b = backend_for(svc("api", raw_upstream))
    async with running_proxy(b) as port:
        first, second = await to_thread.run_sync(attack, port)
    assert first["path"] == "/innocent"
    assert f"Content-Length: {len(smuggled)}" in first["head"]
    assert second["path"] == "/next", "the next client got the smuggled request's answer"


def read_json_response(sock: socket.socket) -> dict[str, Any]:
    """One Content-Length-framed JSON response read off a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return dict(json.loads(body[:length]))


async def test_an_absolute_form_target_reaches_the_upstream_in_origin_form(raw_upstream: int) -> None:
    def ask(port: int) -> dict[str, Any]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"GET http://evil.example/x?q=1 HTTP/1.1\r\nHost: api.localhost\r\n\r\n")
            return read_json_response(client)

    b = backend_for(svc("api", raw_upstream))
    async with running_proxy(b) as port:
        answer = await to_thread.run_sync(ask, port)
    assert answer["path"] == "/x?q=1"


async def test_a_request_is_never_sent_twice_to_a_service_that_never_answered_http() -> None:
    """SPEC §5: Postgres routed as HTTP got every browser request twice ("invalid length of
    startup packet" twice): a service that closes unanswered and never answered HTTP gets a
    request once, and the browser the 502 page."""
    import threading

    seen: list[bytes] = []
    with socket.socket() as db:
        db.bind(("127.0.0.1", 0))
        db.listen()
        port = db.getsockname()[1]

        def serve() -> None:
            db.settimeout(5)
            try:
                while True:
                    conn, _ = db.accept()
                    with conn:
                        seen.append(conn.recv(65536))  # reads the request, answers nothing, closes
            except OSError:
                return

        threading.Thread(target=serve, daemon=True).start()

        def ask(proxy_port: int) -> int:
            c = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)
            c.request("GET", "/", headers={"Host": "db.localhost"})
            status = c.getresponse().status
            c.close()
            return status

        b = backend_for(svc("db", port))
        async with running_proxy(b) as proxy_port:
            assert await to_thread.run_sync(ask, proxy_port) == 502
        assert len(seen) == 1, f"the request reached the service {len(seen)} times"


async def test_a_second_response_nobody_asked_for_is_never_forwarded(raw_upstream: int) -> None:
    """Issue 21: llhttp went on parsing; the second head overwrote the first (a 204 turned into
    the injected 200, with its cookie). The first response is forwarded, the upstream
    connection closed, and the client's connection stays in step."""
    async with running_proxy(backend_for(svc("api", raw_upstream))) as port:
        answers = await anyio.to_thread.run_sync(
            requests_on_one_connection, port, [("GET", "/split", None), ("GET", "/after", None)]
        )
    (status, headers, body, _), (after_status, _, after_body, _) = answers
    assert status == 204 and body == b"" and "Set-Cookie" not in headers
    assert after_status == 200 and json.loads(after_body)["path"] == "/after"
