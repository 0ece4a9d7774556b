"""The proxy against real upstream processes on OS-assigned ports, with a fake supervisor."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import anyio
import pytest
from proxy_support import (
    UPSTREAM,
    Upstream,
    backend_for,
    running_proxy,
    start_upstream,
    svc,
    upstream,
)
from support import free_port, port_open, stays, until

from a3s_dev.core.state import ServiceState
from a3s_dev.errors import RuntimeFailure
from a3s_dev.proxy.server import serve_proxy

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def ups(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Upstream]]:
    folder = tmp_path_factory.mktemp("upstreams")
    with upstream(folder, "api", free_port()) as api, upstream(folder, "web", free_port()) as web:
        yield {"api": api, "web": web}


def backend(ups: dict[str, Upstream]):
    return backend_for(
        svc("api", ups["api"].port), svc("web", ups["web"].port, subdomain="app"), svc("worker", None)
    )


async def get(port: int, host: str, path: str = "/", **kw: object) -> tuple[int, str, aiohttp.ClientResponse]:
    async with aiohttp.ClientSession() as client, client.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host, **kw.pop("headers", {})}, **kw) as r:  # type: ignore[arg-type]
        return r.status, await r.text(), r


async def test_routes_by_host_header_in_any_case(ups: dict[str, Upstream]) -> None:
    b = backend(ups)
    async with running_proxy(b) as port:
        assert b.announced == [f"proxy on http://localhost:{port}: http://api.shop.localhost:{port}, http://app.shop.localhost:{port}"]
        status, text, _ = await get(port, f"API.Localhost:{port}")
        assert status == 200 and text.startswith("hello from api")
        status, text, _ = await get(port, "app.localhost")
        assert status == 200 and text.startswith("hello from web")


async def test_keeps_host_adds_forwarded_headers_and_drops_hop_by_hop(ups: dict[str, Upstream]) -> None:
    headers = {"Host": "", "Connection": "keep-alive, X-Private",
               "X-Private": "secret", "Proxy-Authorization": "Basic eA==", "X-Custom": "kept"}
    async with running_proxy(backend(ups)) as port, aiohttp.ClientSession() as client:
        headers["Host"] = f"api.localhost:{port}"
        async with client.get(f"http://127.0.0.1:{port}/headers?q=a%20b&x=1", headers=headers) as r:
            body = await r.json()
    got = {k.lower(): v for k, v in body["headers"]}
    assert body["path"] == "/headers?q=a%20b&x=1"
    assert got["host"] == f"api.localhost:{port}"
    assert got["x-forwarded-for"] == "127.0.0.1"
    assert got["x-forwarded-host"] == f"api.localhost:{port}"
    assert got["x-forwarded-proto"] == "http"
    assert got["x-custom"] == "kept"
    assert "x-private" not in got and "proxy-authorization" not in got


async def test_unknown_host_gets_404_listing_routes(ups: dict[str, Upstream]) -> None:
    async with running_proxy(backend(ups)) as port:
        status, text, _ = await get(port, f"nope.localhost:{port}")
    assert status == 404
    assert f'href="http://api.shop.localhost:{port}/"' in text and f'href="http://app.shop.localhost:{port}/"' in text


@pytest.mark.parametrize("host", ["localhost", "a3s.localhost"])
async def test_index_page_lists_services_states_and_links(ups: dict[str, Upstream], host: str) -> None:
    b = backend(ups)
    b.states["worker"] = ServiceState.STOPPED
    async with running_proxy(b) as port:
        status, text, _ = await get(port, f"{host}:{port}")
    assert status == 200
    assert f'href="http://api.shop.localhost:{port}/"' in text
    assert 'data-service="worker"' in text and '<span class="state state-stopped">stopped</span>' in text


async def test_stopped_service_gets_502_with_state_and_escaped_logs(ups: dict[str, Upstream]) -> None:
    b = backend(ups)
    b.states["api"] = ServiceState.FAILED
    b.logs["api"] = [f"boot {i}" for i in range(25)] + ["<b>boom</b> & crash"]
    async with running_proxy(b) as port:
        started = time.monotonic()
        status, text, _ = await get(port, "api.localhost")
    assert status == 502
    assert time.monotonic() - started < 2, "a failed service is not held"
    assert "api is failed" in text
    assert "&lt;b&gt;boom&lt;/b&gt; &amp; crash" in text and "<b>boom" not in text
    assert "boot 5" not in text and "boot 6" in text  # the last 20 lines only


async def test_service_without_port_is_not_routable(ups: dict[str, Upstream]) -> None:
    async with running_proxy(backend(ups)) as port:
        status, text, _ = await get(port, "worker.localhost")
    assert status == 502 and "has no port" in text


async def test_five_megabyte_upload_arrives_intact(ups: dict[str, Upstream]) -> None:
    payload = os.urandom(5 * 1024 * 1024)

    async def chunks():
        for i in range(0, len(payload), 256 * 1024):
            yield payload[i : i + 256 * 1024]

    async with running_proxy(backend(ups)) as port, aiohttp.ClientSession() as client:
        for data in (payload, chunks()):
            async with client.post(
                f"http://127.0.0.1:{port}/hash", data=data, headers={"Host": "api.localhost"}
            ) as r:
                assert r.status == 200
                body = await r.json()
            assert body == {"sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)}


async def test_large_response_streams_whole(ups: dict[str, Upstream]) -> None:
    async with (
        running_proxy(backend(ups)) as port,
        aiohttp.ClientSession() as client,
        client.get(f"http://127.0.0.1:{port}/big", headers={"Host": "api.localhost"}) as r,
    ):
        assert r.status == 200
        assert await r.read() == b"x" * (1024 * 1024)


async def test_server_sent_events_arrive_as_sent(ups: dict[str, Upstream]) -> None:
    async with running_proxy(backend(ups)) as port, aiohttp.ClientSession() as client:
        started = time.monotonic()
        async with client.get(f"http://127.0.0.1:{port}/sse", headers={"Host": "api.localhost"}) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            with anyio.fail_after(5):
                line = await r.content.readline()
        assert line == b"data: event 0\n"
        assert time.monotonic() - started < 1.0, "the first event must not wait for the stream's end"


async def test_websocket_echoes_text_and_binary_and_passes_close_code(ups: dict[str, Upstream]) -> None:
    async with running_proxy(backend(ups)) as port, aiohttp.ClientSession() as client:
        async with client.ws_connect(
            f"http://127.0.0.1:{port}/ws", headers={"Host": "api.localhost"}, protocols=("chat",)
        ) as ws:
            assert ws.protocol == "chat"
            await ws.send_str("hi")
            assert (await ws.receive(timeout=5)).data == "echo hi"
            await ws.send_bytes(b"\x00\x01")
            assert (await ws.receive(timeout=5)).data == b"echo \x00\x01"
            await ws.send_str("close:4001")
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert msg.data == 4001 and msg.extra == "bye", "the upstream's close code and reason"
        assert ws.close_code == 4001


async def test_the_supervisor_hears_of_requests_once_a_second_and_of_each_open_and_closed_websocket(
    ups: dict[str, Upstream],
) -> None:
    """SPEC §13: what keeps an `idle_stop` service up is what the proxy tells its supervisor."""
    fake = backend(ups)
    async with running_proxy(fake) as port, aiohttp.ClientSession() as client:
        for _ in range(5):  # on the direct path, within one second: said once
            async with client.get(f"http://127.0.0.1:{port}/", headers={"Host": "api.localhost"}) as r:
                assert r.status == 200
        assert fake.used == [("api", None)]
        async with client.ws_connect(f"http://127.0.0.1:{port}/ws", headers={"Host": "api.localhost"}) as ws:
            await ws.send_str("hi")
            assert (await ws.receive(timeout=5)).data == "echo hi"
            assert ("api", 1) in fake.used
        with anyio.fail_after(5):
            while ("api", 0) not in fake.used:
                await anyio.sleep(0.02)
        assert [u for u in fake.used if u[1] is not None] == [("api", 1), ("api", 0)]


async def closes_seen(client: aiohttp.ClientSession, port: int, count: int) -> list[list[object]]:
    with anyio.fail_after(5):
        while True:
            async with client.get(f"http://127.0.0.1:{port}/ws-closes", headers={"Host": "api.localhost"}) as r:
                seen = await r.json()
            if len(seen) >= count:
                return list(seen)
            await anyio.sleep(0.02)


async def test_a_browsers_close_code_and_reason_reach_the_upstream(ups: dict[str, Upstream]) -> None:
    async with running_proxy(backend(ups)) as port, aiohttp.ClientSession() as client:
        before = len(await closes_seen(client, port, 0))
        async with client.ws_connect(f"http://127.0.0.1:{port}/ws", headers={"Host": "api.localhost"}) as ws:
            await ws.send_str("hi")
            assert (await ws.receive(timeout=5)).data == "echo hi"
            await ws.close(code=4002, message=b"see you")
        assert (await closes_seen(client, port, before + 1))[before] == [4002, "see you"]


def raw_websocket(port: int) -> socket.socket:
    """A WebSocket to api's /ws through the proxy on a bare socket, upgraded (the 101 read):
    a test then says, or leaves unsaid, what a library would."""
    key = base64.b64encode(os.urandom(16)).decode()
    tab = socket.create_connection(("127.0.0.1", port), timeout=10)
    tab.sendall(
        f"GET /ws HTTP/1.1\r\nHost: api.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert tab.recv(4096).startswith(b"HTTP/1.1 101")
    return tab


async def test_a_vanished_browser_is_closed_upstream_with_1001_never_1006(ups: dict[str, Upstream]) -> None:
    """SPEC §8: 1006 is reserved and must not be sent (Vite logs a RangeError for each one)."""
    async with running_proxy(backend(ups)) as port, aiohttp.ClientSession() as client:
        before = len(await closes_seen(client, port, 0))

        def vanish() -> None:
            with raw_websocket(port):
                pass  # closed here without a close frame, as a killed tab does

        await anyio.to_thread.run_sync(vanish)
        assert (await closes_seen(client, port, before + 1))[before] == [1001, ""]


async def test_a_close_frame_then_a_dropped_connection_still_gives_the_upstream_its_code(ups: dict[str, Upstream]) -> None:
    """Issue 21: a client that sent close 4000 and went without waiting for the reply was
    reported to the service as 1001."""
    import struct

    async with running_proxy(backend(ups)) as port, aiohttp.ClientSession() as client:
        before = len(await closes_seen(client, port, 0))

        def close_and_go() -> None:
            with raw_websocket(port) as tab:
                payload = struct.pack("!H", 4000) + b"gone"
                mask = os.urandom(4)
                masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                tab.sendall(bytes([0x88, 0x80 | len(payload)]) + mask + masked)
            # closed at once, the close's reply never read

        await anyio.to_thread.run_sync(close_and_go)
        assert (await closes_seen(client, port, before + 1))[before] == [4000, "gone"]


async def test_request_for_a_starting_service_is_held_then_forwarded(ups: dict[str, Upstream]) -> None:
    b = backend(ups)
    b.states["api"] = ServiceState.STARTING
    async with running_proxy(b) as port:
        async with anyio.create_task_group() as tg:
            result: list[tuple[int, str]] = []

            async def request() -> None:
                status, text, _ = await get(port, "api.localhost")
                result.append((status, text))

            tg.start_soon(request)
            await stays(lambda: not result, 0.4, "no answer while the service starts")
            b.set_state("api", ServiceState.RUNNING)
        assert len(result) == 1 and result[0][0] == 200 and result[0][1].startswith("hello from api")


async def test_hold_gives_up_with_503_after_the_timeout(ups: dict[str, Upstream]) -> None:
    b = backend(ups)
    b.states["api"] = ServiceState.BACKOFF
    async with running_proxy(b, hold_timeout=0.5) as port:
        started = time.monotonic()
        status, text, _r = await get(port, "api.localhost")
    assert status == 503 and "api is backoff" in text
    assert 0.4 < time.monotonic() - started < 5


async def test_request_during_a_restart_is_answered_by_the_new_process(tmp_path: Path) -> None:
    script = tmp_path / "upstream.py"
    script.write_text(UPSTREAM)
    port = free_port()
    b = backend_for(svc("api", port))
    old = start_upstream(script, "old", port)
    new: Upstream | None = None
    try:
        async with running_proxy(b) as proxy_port:
            _status, text, _ = await get(proxy_port, "api.localhost")
            assert text.startswith("hello from old")
            # the supervisor's restart: stopping -> (process gone) -> stopped -> starting -> running
            b.set_state("api", ServiceState.STOPPING)
            old.stop()
            async with anyio.create_task_group() as tg:
                result: list[tuple[int, str]] = []

                async def request() -> None:
                    status, text, _ = await get(proxy_port, "api.localhost")
                    result.append((status, text))

                before = len(b.asked)
                tg.start_soon(request)
                # The proxy looked at api while it was stopping: the request is held from here on.
                await until(lambda: ("api", ServiceState.STOPPING) in b.asked[before:], message="the request held")
                before = len(b.asked)
                b.set_state("api", ServiceState.STOPPED)
                # ... and still held once it saw api stopped (a restart passes through `stopped`).
                await until(lambda: ("api", ServiceState.STOPPED) in b.asked[before:], message="the proxy saw api stopped")
                b.set_state("api", ServiceState.STARTING)
                new = await anyio.to_thread.run_sync(start_upstream, script, "new", port)
                b.set_state("api", ServiceState.RUNNING)
            assert len(result) == 1, result
            assert result[0][0] == 200 and result[0][1].startswith("hello from new")
    finally:
        old.stop()
        if new is not None:
            new.stop()


async def test_crashed_upstream_still_marked_running_gives_502_with_reason() -> None:
    port = free_port()
    b = backend_for(svc("api", port))
    async with running_proxy(b) as proxy_port:
        started = time.monotonic()
        status, text, _ = await get(proxy_port, "api.localhost")
    assert status == 502 and "api is running" in text and f"127.0.0.1:{port}" in text
    assert time.monotonic() - started < 5


async def test_port_in_use_is_one_clear_error() -> None:
    b = backend_for(svc("api", 1))
    async with running_proxy(b) as taken:
        with pytest.raises(RuntimeFailure) as err:
            await serve_proxy(b, taken)
    assert f"port {taken} is already in use" in err.value.message
    assert "\n" not in err.value.message


async def test_listens_on_ipv4_and_ipv6_loopback_only() -> None:
    import socket

    b = backend_for(svc("api", 1))
    async with running_proxy(b) as port:
        assert port_open(port, "127.0.0.1")
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", 0))
            has_v6 = True
        except OSError:
            has_v6 = False
        if has_v6:
            assert port_open(port, "::1")
        # not on the wildcard address: another loopback address does not answer
        assert not port_open(port, "127.0.0.2")


async def test_head_and_204_pass_through_without_a_body(ups: dict[str, Upstream]) -> None:
    async with running_proxy(backend(ups)) as port, aiohttp.ClientSession() as client:
        async with client.head(f"http://127.0.0.1:{port}/", headers={"Host": "api.localhost"}) as r:
            assert r.status == 200
            assert int(r.headers["Content-Length"]) > 0, "HEAD keeps the length the GET would have"
            assert await r.read() == b""
        async with client.get(f"http://127.0.0.1:{port}/nocontent", headers={"Host": "api.localhost"}) as r:
            assert r.status == 204 and await r.read() == b""
        # the connection is still in a clean state for the next request
        async with client.get(f"http://127.0.0.1:{port}/", headers={"Host": "api.localhost"}) as r:
            assert r.status == 200 and (await r.text()).startswith("hello from api")


async def test_upstream_connections_are_kept_alive_and_reused(ups: dict[str, Upstream]) -> None:
    async with running_proxy(backend(ups)) as port:
        peers = set()
        async with aiohttp.ClientSession() as client:
            for _ in range(5):
                async with client.get(f"http://127.0.0.1:{port}/headers", headers={"Host": "api.localhost"}) as r:
                    peers.add((await r.json())["peer"])
    assert len(peers) == 1, f"sequential requests used {len(peers)} upstream connections"


ONE_SHOT = """
import socket, sys
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
n = 0
while True:
    conn, _ = srv.accept()
    n += 1
    conn.recv(65536)
    # keep-alive by HTTP/1.1 default, yet the connection is closed: like an upstream whose
    # keep-alive timeout fires while the proxy holds the connection in its pool
    body = f"answer {n}".encode()
    conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n%s" % (len(body), body))
    conn.close()
"""


def _spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, start_new_session=True)


async def test_an_upstream_that_drops_idle_connections_is_reconnected(tmp_path: Path) -> None:
    from support import kill_group, wait_until

    script = tmp_path / "oneshot.py"
    script.write_text(ONE_SHOT)
    up_port = free_port()
    proc = _spawn([sys.executable, str(script), str(up_port)])
    try:
        wait_until(lambda: port_open(up_port), timeout=10, message="one-shot upstream")
        async with running_proxy(backend_for(svc("api", up_port))) as port:
            texts = []
            for _ in range(4):
                status, text, _ = await get(port, "api.localhost")
                assert status == 200, text
                texts.append(text)
        # the readiness poll above used one connection; then one per request
        assert len(set(texts)) == 4 and all(t.startswith("answer ") for t in texts)
    finally:
        kill_group(proc.pid)
        proc.wait(timeout=10)


def _memory_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak_rss() -> bool:
    try:  # Linux: "5" resets VmHWM (the peak) to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


async def test_fifty_megabyte_upload_streams_without_being_held_in_memory(ups: dict[str, Upstream]) -> None:
    piece = os.urandom(1024 * 1024)
    expected = hashlib.sha256()
    for _ in range(50):
        expected.update(piece)

    async def chunks():
        for _ in range(50):
            yield piece

    async with running_proxy(backend(ups)) as port:
        if not _reset_peak_rss():
            pytest.skip("cannot reset the peak RSS here (/proc/self/clear_refs)")
        before = _memory_mb("VmRSS")
        async with aiohttp.ClientSession() as client, client.post(
            f"http://127.0.0.1:{port}/hash", data=chunks(), headers={"Host": "api.localhost"}
        ) as r:
            body = await r.json()
        grown = _memory_mb("VmHWM") - before
    assert body == {"sha256": expected.hexdigest(), "size": 50 * 1024 * 1024}
    assert grown < 25, f"the proxy process grew by {grown:.0f} MB while streaming a 50 MB upload"


def test_a_taken_proxy_port_is_refused_naming_its_holder_before_anything_starts() -> None:
    import socket

    from a3s_dev.link import proxy_process

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeFailure, match=f"port {port} is already in use by pid {os.getpid()} "):
            proxy_process.listen(port)
        assert not proxy_process.socket_path(port).exists()
    tcp, unix = proxy_process.listen(port)  # released: free again, and now ours
    try:
        assert tcp and {s.getsockname()[1] for s in tcp} == {port}
        assert {s.getsockname()[0] for s in tcp} <= {"127.0.0.1", "::1"}
        assert stat.S_IMODE(os.stat(proxy_process.socket_path(port)).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(proxy_process.folder()).st_mode) == 0o700
    finally:
        for sock in (*tcp, unix):
            sock.close()


async def test_a_request_sent_before_the_proxy_runs_waits_for_it(ups: dict[str, Upstream]) -> None:
    """`a3s up` listens on the proxy's port before spawning anything; the proxy serves it
    later. A browser's request in between waits in the backlog and is answered, not refused."""
    import socket

    from a3s_dev.link import proxy_process

    port = free_port()
    sockets, unix = proxy_process.listen(port)
    unix.close()
    try:
        early = socket.create_connection(("127.0.0.1", port), timeout=10)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    with early:  # the proxy closes the sockets it was given when it stops
        early.sendall(b"GET / HTTP/1.1\r\nHost: api.localhost\r\nConnection: close\r\n\r\n")
        b = backend(ups)
        async with anyio.create_task_group() as tg:
            bound = await tg.start(lambda task_status: serve_proxy(b, sockets=sockets, task_status=task_status))
            assert bound == port

            def read_all() -> bytes:
                data = b""
                while chunk := early.recv(65536):
                    data += chunk
                return data

            answer = await anyio.to_thread.run_sync(read_all)
            tg.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.1 200") and b"hello from api" in answer


async def test_concurrent_mixed_requests_never_cross_talk(ups: dict[str, Upstream]) -> None:
    # pooled upstream connections are shared between requests one after another: a framing
    # slip would hand one request's bytes to another
    async with running_proxy(backend(ups)) as port, aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=20)) as client:

        async def one(i: int) -> None:
            host = {"Host": "api.localhost"}
            kind = i % 4
            if kind == 0:
                async with client.get(f"http://127.0.0.1:{port}/headers?i={i}", headers=host) as r:
                    assert (await r.json())["path"] == f"/headers?i={i}"
            elif kind == 1:
                async with client.get(f"http://127.0.0.1:{port}/big", headers=host) as r:
                    assert await r.read() == b"x" * (1024 * 1024)
            elif kind == 2:
                payload = bytes([i % 256]) * (100_000 + i)
                async with client.post(f"http://127.0.0.1:{port}/hash", data=payload, headers=host) as r:
                    assert (await r.json())["sha256"] == hashlib.sha256(payload).hexdigest()
            else:
                async with client.head(f"http://127.0.0.1:{port}/", headers=host) as r:
                    assert r.status == 200 and await r.read() == b""

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(120):
                    tg.start_soon(one, i)


async def test_a_service_that_is_not_http_is_never_sent_a_request(tmp_path: Path) -> None:
    """SPEC §5: `proxy = false` (Postgres, Redis): its host answers 404 saying so, and not one
    byte reaches it (Postgres logged "invalid length of startup packet" twice)."""
    import dataclasses
    import socket

    from proxy_support import backend_for, running_proxy, svc

    with socket.socket() as db:
        db.bind(("127.0.0.1", 0))
        db.listen()
        db.setblocking(False)
        port = db.getsockname()[1]
        b = backend_for(dataclasses.replace(svc("db", port), proxy=False), svc("api", free_port()))
        async with running_proxy(b) as proxy_port, aiohttp.ClientSession() as client:
            async with client.get(f"http://127.0.0.1:{proxy_port}/", headers={"Host": "db.localhost"}) as r:
                text = await r.text()
                assert r.status == 404 and "db is not an HTTP service" in text and f"127.0.0.1:{port}" in text
            async with client.get(f"http://127.0.0.1:{proxy_port}/", headers={"Host": "localhost"}) as r:
                index = await r.text()
            assert f"127.0.0.1:{port}" in index and "http://db.localhost" not in index
        with pytest.raises(BlockingIOError):
            db.accept()  # nothing ever connected


async def test_a_websocket_reaches_a_service_listening_on_ipv6_loopback_only(tmp_path: Path) -> None:
    """SPEC §5: Vite's hot reload is a WebSocket, and Vite may listen on ::1 only."""
    from proxy_support import backend_for, running_proxy, svc

    script = tmp_path / "ws6.py"
    script.write_text(
        "import os\nfrom aiohttp import web\n"
        "async def ws(request):\n"
        "    sock = web.WebSocketResponse()\n    await sock.prepare(request)\n"
        "    async for msg in sock:\n        await sock.send_str('v6 ' + msg.data)\n    return sock\n"
        "app = web.Application(); app.router.add_get('/ws', ws)\n"
        "print('listening', flush=True)\n"
        "web.run_app(app, host='::1', port=int(os.environ['PORT']), print=None)\n"
    )
    port = free_port()
    import functools

    proc = await anyio.to_thread.run_sync(
        functools.partial(
            subprocess.Popen, [sys.executable, str(script)], env={**os.environ, "PORT": str(port)},
            stdout=subprocess.PIPE, start_new_session=True,
        )
    )
    try:
        assert proc.stdout is not None
        assert (await anyio.to_thread.run_sync(proc.stdout.readline)).strip() == b"listening"
        import socket

        def up() -> bool:
            try:
                socket.create_connection(("::1", port), timeout=1).close()
            except OSError:
                return False
            return True

        with anyio.fail_after(10):
            while not up():
                await anyio.sleep(0.02)
        async with (
            running_proxy(backend_for(svc("vite", port))) as proxy_port,
            aiohttp.ClientSession() as client,
            client.ws_connect(f"http://127.0.0.1:{proxy_port}/ws", headers={"Host": "vite.localhost"}) as ws,
        ):
            await ws.send_str("hmr")
            assert (await ws.receive(timeout=5)).data == "v6 hmr"
    finally:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)
