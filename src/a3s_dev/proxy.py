"""The reverse proxy: `http://<subdomain>.localhost:<proxy_port>` -> `127.0.0.1:<service port>`.

Two halves. `Router` and the page renderers are pure (host -> route, state -> HTML) and
are tested without sockets. `serve_proxy` is the aiohttp edge: a low-level
`aiohttp.web.Server` (no Application router: one catch-all handler is all a proxy needs),
one pooled `ClientSession` to the upstreams, bodies streamed both ways, WebSockets
bridged, and requests for a service that is (re)starting held until it is ready.

Only `a3s up` imports this module, so importing aiohttp at its top keeps it out of
`a3s validate` and `a3s status`.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import html
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import anyio
from aiohttp import web
from anyio.abc import TaskStatus
from multidict import CIMultiDict
from yarl import URL

from a3s_dev.config import DevConfig, ServiceDef
from a3s_dev.errors import RuntimeFailure
from a3s_dev.events import Event, EventBus, StateChanged
from a3s_dev.proxy_pool import UpstreamConnectError, UpstreamConnection, UpstreamError, UpstreamPool
from a3s_dev.state import ServiceState, ServiceStatus

# --------------------------------------------------------------------------- routing (pure)

INDEX_HOSTS = frozenset({"localhost", "a3s.localhost", "127.0.0.1", "::1"})
LOCALHOST_SUFFIX = ".localhost"


class RouteKind(str, enum.Enum):
    UPSTREAM = "upstream"  # forward to 127.0.0.1:port
    INDEX = "index"  # localhost / a3s.localhost: the list of services
    UNKNOWN = "unknown"  # no service answers to this host: 404 with the routes
    NOT_ROUTABLE = "not-routable"  # the service exists but has no port to forward to


@dataclass(frozen=True, slots=True)
class Route:
    """Where one Host header leads."""

    kind: RouteKind
    service: str | None = None
    port: int | None = None
    subdomain: str | None = None


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One line of the routing table: `subdomain.localhost` -> service on port."""

    subdomain: str
    service: str
    port: int


def normalize_host(host: str | None) -> str:
    """The host part of a Host header, lower-cased, without port, brackets or trailing dot."""
    if not host:
        return ""
    host = host.strip().lower()
    if host.startswith("["):  # IPv6 literal, maybe with a port: [::1]:7080
        end = host.find("]")
        return host[1:end] if end != -1 else host[1:]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


class Router:
    """Host header -> `Route`. Built from the config; results are cached per raw header value."""

    _CACHE_LIMIT = 4096

    def __init__(self, services: Iterable[ServiceDef]) -> None:
        table: dict[str, RouteEntry] = {}
        by_name: dict[str, ServiceDef] = {}
        for svc in services:
            by_name[svc.name.lower()] = svc
            if svc.port is None:
                continue
            sub = (svc.subdomain or svc.name).lower()
            table[sub] = RouteEntry(sub, svc.name, svc.port)
        self._table = table
        self._by_name = by_name
        self._cache: dict[str | None, Route] = {}

    @classmethod
    def from_config(cls, config: DevConfig) -> Router:
        return cls(config.services)

    @property
    def entries(self) -> list[RouteEntry]:
        """The routing table in declaration order."""
        return list(self._table.values())

    def resolve(self, host: str | None) -> Route:
        """Where a request with this Host header goes."""
        route = self._cache.get(host)
        if route is None:
            route = self._resolve(normalize_host(host))
            if len(self._cache) >= self._CACHE_LIMIT:
                self._cache.clear()  # a client inventing hosts must not grow memory without bound
            self._cache[host] = route
        return route

    def _resolve(self, host: str) -> Route:
        if host in INDEX_HOSTS:
            return Route(RouteKind.INDEX)
        if not host.endswith(LOCALHOST_SUFFIX):
            return Route(RouteKind.UNKNOWN)
        sub = host[: -len(LOCALHOST_SUFFIX)]
        entry = self._table.get(sub)
        if entry is not None:
            return Route(RouteKind.UPSTREAM, entry.service, entry.port, entry.subdomain)
        svc = self._by_name.get(sub)
        if svc is not None and svc.port is None:
            return Route(RouteKind.NOT_ROUTABLE, svc.name, None, sub)
        return Route(RouteKind.UNKNOWN)


# States in which a request is forwarded; unhealthy still routes (SPEC §3).
FORWARD_STATES = frozenset({ServiceState.RUNNING, ServiceState.UNHEALTHY})
# States that will, on their own, lead to running again: hold the request.
HOLD_STATES = frozenset(
    {ServiceState.PENDING, ServiceState.STARTING, ServiceState.BACKOFF, ServiceState.STOPPING}
)
# Everything else (stopped, failed, completed) answers 502 at once.


# --------------------------------------------------------------------------- pages (pure)

_STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}"
    "pre{background:#f4f4f4;padding:1em;overflow:auto;font:13px/1.4 monospace}"
    "table{border-collapse:collapse}td,th{padding:.2em 1em .2em 0;text-align:left}"
    "code{background:#f4f4f4;padding:0 .3em}"
)


def _page(title: str, body: str, *, refresh: int | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        f'<!doctype html><html><head><meta charset="utf-8">{meta}<title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )


def route_url(entry: RouteEntry, proxy_port: int) -> str:
    return f"http://{entry.subdomain}.localhost:{proxy_port}/"


def render_not_found(host: str | None, entries: Iterable[RouteEntry], proxy_port: int) -> str:
    """404 page: the host is unknown; list every route as a link."""
    items = "".join(
        f'<li><a href="{html.escape(route_url(e, proxy_port))}">{html.escape(route_url(e, proxy_port))}</a>'
        f" &rarr; {html.escape(e.service)} (127.0.0.1:{e.port})</li>"
        for e in entries
    )
    listing = f"<ul>{items}</ul>" if items else "<p>No service has a <code>port</code>, so nothing is routed.</p>"
    return _page(
        "a3s: unknown host",
        f"<h1>No service at {html.escape(host or '(no Host header)')}</h1><p>Known routes:</p>{listing}",
    )


def render_unavailable(
    status: ServiceStatus, lines: Iterable[str], *, detail: str | None = None, refresh: int | None = 3
) -> str:
    """502/503 page: which service, in which state, why, and its last log lines (escaped)."""
    why = status.reason or detail
    reason = f"<p>{html.escape(why)}</p>" if why else ""
    if detail and status.reason:
        reason += f"<p>{html.escape(detail)}</p>"
    log = "\n".join(lines)
    log_html = (
        f"<h2>Last log lines</h2><pre>{html.escape(log)}</pre>" if log else "<p>(no output yet)</p>"
    )
    exit_code = f", exit code {status.exit_code}" if status.exit_code is not None else ""
    heading = f"<h1>{html.escape(status.name)} is {html.escape(status.state.value)}{exit_code}</h1>"
    footer = f"<p>This page reloads every {refresh} s.</p>" if refresh else ""
    return _page(
        f"a3s: {status.name} is {status.state.value}", heading + reason + log_html + footer, refresh=refresh
    )


def render_index(statuses: Iterable[ServiceStatus], entries: Iterable[RouteEntry], proxy_port: int) -> str:
    """The page at localhost / a3s.localhost: every service, its state, its link."""
    links: dict[str, str] = {e.service: route_url(e, proxy_port) for e in entries}
    rows = []
    for st in statuses:
        url = links.get(st.name)
        link = f'<a href="{html.escape(url)}">{html.escape(url)}</a>' if url else ""
        rows.append(
            f"<tr><td>{html.escape(st.name)}</td><td>{html.escape(st.state.value)}</td>"
            f"<td>{html.escape(st.health or '')}</td><td>{link}</td></tr>"
        )
    return _page(
        "a3s services",
        "<h1>a3s services</h1><table><tr><th>service</th><th>state</th><th>health</th><th>url</th></tr>"
        + "".join(rows)
        + "</table>",
        refresh=5,
    )


# --------------------------------------------------------------------------- the seam


class ProxyBackend(Protocol):
    """The slice of the Supervisor the proxy uses (docs/architecture.md)."""

    config: DevConfig
    bus: EventBus

    def status(self, name: str) -> ServiceStatus: ...

    def tail(self, name: str, n: int = 20) -> list[str]: ...


# --------------------------------------------------------------------------- server (aiohttp)

HOLD_TIMEOUT = 30.0
# A restart passes through `stopped` on its way to `starting`; a held request waits this long
# for the next state before it gives up on a service that was stopping.
RESTART_GRACE = 1.0
# Connection refused while the supervisor still says running: the process just died or is
# being replaced and the event has not arrived yet. Retry this long before answering 502.
REFUSED_GRACE = 1.0
# Upstream bodies up to this size are read whole and sent in one write (one syscall).
SMALL_BODY = 64 * 1024

# RFC 9110 §7.6.1 hop-by-hop headers, never forwarded. Upgrade is handled by the WebSocket path.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_REQUEST_DROP = HOP_BY_HOP | {"expect"}  # we answer 100-continue ourselves
_WS_DROP = HOP_BY_HOP | {
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",  # passed as `protocols`, negotiated per side
    "sec-websocket-accept",
}
_RESPONSE_DROP = HOP_BY_HOP


def forward_headers(
    headers: Mapping[str, str] | Any, drop: frozenset[str], client_ip: str | None, host: str | None
) -> CIMultiDict[str]:
    """Copy request headers minus `drop` and those named in Connection; add X-Forwarded-*."""
    out: CIMultiDict[str] = CIMultiDict()
    conn = headers.get("Connection")
    extra = {t.strip().lower() for t in conn.split(",")} if conn else ()
    for key, value in headers.items():
        low = key.lower()
        if low in drop or low in extra:
            continue
        out.add(key, value)
    prior = out.get("X-Forwarded-For")
    if client_ip:
        out["X-Forwarded-For"] = f"{prior}, {client_ip}" if prior else client_ip
    if host is not None and "X-Forwarded-Host" not in out:
        out["X-Forwarded-Host"] = host
    out["X-Forwarded-Proto"] = "http"
    return out


def request_head(
    method: str, path: str, headers: Mapping[str, str] | Any, client_ip: str | None, *, chunked: bool
) -> bytes:
    """The upstream request head in one string: original headers minus hop-by-hop ones, the
    original Host kept, X-Forwarded-For/-Host/-Proto added, and our own body framing."""
    conn = headers.get("Connection")
    extra = {t.strip().lower() for t in conn.split(",")} if conn else ()
    parts = [f"{method} {path} HTTP/1.1\r\n"]
    prior: str | None = None
    has_forwarded_host = False
    host: str | None = None
    for key, value in headers.items():
        low = key.lower()
        if low in _REQUEST_DROP or low in extra:
            continue
        if low == "x-forwarded-for":
            prior = f"{prior}, {value}" if prior else value
            continue
        if low == "x-forwarded-proto":
            continue  # we know the scheme: plain http on loopback
        if low == "host":
            host = value
        elif low == "x-forwarded-host":
            has_forwarded_host = True
        parts.append(f"{key}: {value}\r\n")
    if client_ip:
        parts.append(f"X-Forwarded-For: {prior}, {client_ip}\r\n" if prior else f"X-Forwarded-For: {client_ip}\r\n")
    elif prior:
        parts.append(f"X-Forwarded-For: {prior}\r\n")
    if host is not None and not has_forwarded_host:
        parts.append(f"X-Forwarded-Host: {host}\r\n")
    parts.append("X-Forwarded-Proto: http\r\n")
    if chunked:
        parts.append("Transfer-Encoding: chunked\r\n")
    parts.append("\r\n")
    # surrogateescape: aiohttp decoded the request that way, so odd bytes go out unchanged
    return "".join(parts).encode("utf-8", "surrogateescape")


def response_headers(pairs: Iterable[tuple[str, str]], *, keep_length: bool) -> CIMultiDict[str]:
    """Upstream response headers minus hop-by-hop (and Content-Length when we re-frame the body)."""
    out: CIMultiDict[str] = CIMultiDict()
    extra: set[str] = set()
    for key, value in pairs:
        low = key.lower()
        if low == "connection":
            extra.update(t.strip().lower() for t in value.split(","))
            continue
        if low in _RESPONSE_DROP or (not keep_length and low == "content-length"):
            continue
        out.add(key, value)
    extra -= {"keep-alive", "close"}
    for name in extra:  # rare: headers the upstream marked hop-by-hop in Connection
        out.popall(name, None)
    return out


class _States:
    """The services' states as the bus reports them, plus futures woken on each change."""

    def __init__(self, backend: ProxyBackend) -> None:
        self._backend = backend
        self._states: dict[str, ServiceState] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    def get(self, name: str) -> ServiceState:
        state = self._states.get(name)
        return state if state is not None else self.refresh(name)

    def refresh(self, name: str) -> ServiceState:
        """Ask the backend; the bus may be late or a transition may have no event."""
        try:
            state = self._backend.status(name).state
        except KeyError:
            state = ServiceState.STOPPED
        self._states[name] = state
        return state

    def on_event(self, event: Event) -> None:
        if type(event) is StateChanged:
            self._states[event.service] = event.new
            for fut in self._waiters.pop(event.service, ()):
                if not fut.done():
                    fut.set_result(None)

    async def changed(self, name: str, timeout: float) -> None:
        """Return at the next state change of `name` or after `timeout` seconds."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(name, []).append(fut)
        try:
            with anyio.move_on_after(max(timeout, 0.0)):
                await fut
        finally:
            waiters = self._waiters.get(name)
            if waiters and fut in waiters:
                waiters.remove(fut)


class _Unavailable(Exception):
    """The request cannot be forwarded: answer with the service's error page."""

    def __init__(self, status_code: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


class ProxyServer:
    """The request handler and its shared state; `serve_proxy` runs it."""

    def __init__(
        self, backend: ProxyBackend, session: aiohttp.ClientSession, *, hold_timeout: float = HOLD_TIMEOUT
    ) -> None:
        self.backend = backend
        self.router = Router.from_config(backend.config)
        self.session = session  # WebSockets only; plain HTTP goes through `pool`
        self.pool = UpstreamPool()
        self.hold_timeout = hold_timeout
        self.states = _States(backend)
        self.port = 0
        self._base: dict[int, str] = {}

    # ------------------------------------------------------------------ dispatch

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        host = request.headers.get("Host")
        route = self.router.resolve(host)
        if route.kind is RouteKind.UPSTREAM:
            assert route.service is not None and route.port is not None
            try:
                return await self._proxy(request, route.service, route.port)
            except _Unavailable as exc:
                return self._unavailable(route.service, exc.status_code, exc.detail)
        if route.kind is RouteKind.INDEX:
            return self._html(200, render_index(self._statuses(), self.router.entries, self.port))
        if route.kind is RouteKind.NOT_ROUTABLE:
            assert route.service is not None
            return self._unavailable(route.service, 502, f"{route.service} has no port, so the proxy cannot reach it")
        return self._html(404, render_not_found(host, self.router.entries, self.port))

    def _statuses(self) -> list[ServiceStatus]:
        out = []
        for name in self.backend.config.names:
            try:
                out.append(self.backend.status(name))
            except KeyError:
                out.append(ServiceStatus(name, ServiceState.STOPPED))
        return out

    @staticmethod
    def _html(status: int, text: str, headers: Mapping[str, str] | None = None) -> web.Response:
        return web.Response(status=status, text=text, content_type="text/html", headers=headers)

    def _unavailable(self, name: str, status_code: int, detail: str | None) -> web.Response:
        try:
            status = self.backend.status(name)
        except KeyError:
            status = ServiceStatus(name, ServiceState.STOPPED)
        try:
            lines = self.backend.tail(name, 20)
        except KeyError:
            lines = []
        headers = {"Retry-After": "1"} if status_code == 503 else None
        return self._html(status_code, render_unavailable(status, lines[-20:], detail=detail), headers)

    # ------------------------------------------------------------------ hold until ready

    async def _ready(self, name: str, state: ServiceState, deadline: float) -> None:
        """Wait until `name` can take requests; raise `_Unavailable` when it will not in time."""
        loop = asyncio.get_running_loop()
        if state not in HOLD_STATES:
            raise _Unavailable(502)
        stopped_at: float | None = None
        while True:
            now = loop.time()
            if state in FORWARD_STATES:
                return
            if state in HOLD_STATES:
                stopped_at = None
                wait = deadline - now
                if wait <= 0:
                    raise _Unavailable(503, f"still {state.value} after {self.hold_timeout:g} s")
            else:
                # stopped/failed/completed after stopping: a restart starts again at once
                if stopped_at is None:
                    stopped_at = now
                wait = min(deadline - now, stopped_at + RESTART_GRACE - now)
                if wait <= 0:
                    raise _Unavailable(502)
            # the poll interval guards against a transition that published no event
            await self.states.changed(name, min(wait, 0.25))
            state = self.states.refresh(name)

    # ------------------------------------------------------------------ forwarding

    async def _proxy(self, request: web.BaseRequest, name: str, port: int) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        refused_since: float | None = None
        while True:
            state = self.states.get(name)
            if state not in FORWARD_STATES:
                if deadline is None:
                    deadline = loop.time() + self.hold_timeout
                await self._ready(name, state, deadline)
            try:
                if request.headers.get("Upgrade", "").lower() == "websocket":
                    return await self._websocket(request, port)
                return await self._forward(request, port)
            except (UpstreamConnectError, aiohttp.ClientConnectorError) as exc:
                # Nothing was sent: retrying is safe for any method. The supervisor may not
                # have noticed yet that the process died or is being replaced.
                now = loop.time()
                if deadline is None:
                    deadline = now + self.hold_timeout
                if refused_since is None:
                    refused_since = now
                state = self.states.refresh(name)
                if state in FORWARD_STATES and now - refused_since > REFUSED_GRACE or now > deadline:
                    why = exc.strerror if isinstance(exc, UpstreamConnectError) else exc.os_error.strerror
                    raise _Unavailable(502, f"127.0.0.1:{port}: {why or exc}") from None
                if state in FORWARD_STATES:
                    await self.states.changed(name, 0.05)
            except (UpstreamError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise _Unavailable(502, str(exc) or f"127.0.0.1:{port}: {type(exc).__name__}") from None

    def _url(self, port: int, request: web.BaseRequest) -> URL:
        base = self._base.get(port)
        if base is None:
            base = self._base[port] = f"http://127.0.0.1:{port}"
        # encoded=True: forward the path and query byte for byte, no re-quoting
        return URL(base + request.raw_path, encoded=True)

    async def _forward(self, request: web.BaseRequest, port: int) -> web.StreamResponse:
        method = request.method
        req_headers = request.headers
        has_body = request.body_exists
        chunked = has_body and "Content-Length" not in req_headers
        head = request_head(method, request.raw_path, req_headers, request.remote, chunked=chunked)
        if has_body and req_headers.get("Expect", "").lower() == "100-continue" and request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        conn = await self.pool.acquire(port)
        released = False
        try:
            conn.begin(head, no_body=method == "HEAD")
            if has_body:
                await self._send_body(conn, request, chunked)
            try:
                up = await conn.response_head()
            except UpstreamError:
                if not conn.reused or has_body:
                    raise
                # The upstream closed this idle connection just as we reused it (its keep-alive
                # timeout). Nothing was processed, so a bodyless request can go again, fresh.
                conn.close()
                conn = await self.pool.connect(port)
                conn.begin(head, no_body=method == "HEAD")
                up = await conn.response_head()
            length = up.content_length
            if method == "HEAD" or up.status in (204, 304) or length is not None and length <= SMALL_BODY:
                body = conn.take_all()
                if body is None:
                    pieces = []
                    while chunk := await conn.read_chunk():
                        pieces.append(chunk)
                    body = b"".join(pieces)
                self.pool.release(conn)
                released = True
                keep_length = method == "HEAD" or up.status == 304
                return web.Response(
                    status=up.status,
                    reason=up.reason,
                    headers=response_headers(up.headers, keep_length=keep_length),
                    body=body or None,
                )
            response = web.StreamResponse(
                status=up.status, reason=up.reason, headers=response_headers(up.headers, keep_length=True)
            )
            await response.prepare(request)
            try:
                # each piece is forwarded as it arrives: server-sent events must not wait
                while chunk := await conn.read_chunk():
                    await response.write(chunk)
            except UpstreamError:
                # Too late for an error page: cut the client's connection so it sees a
                # truncated body rather than a complete one.
                if request.transport is not None:
                    request.transport.close()
                return response
            self.pool.release(conn)
            released = True
            await response.write_eof()
            return response
        finally:
            if not released:  # an exchange cut short (error, client gone) leaves the connection unusable
                conn.close()

    @staticmethod
    async def _send_body(conn: UpstreamConnection, request: web.BaseRequest, chunked: bool) -> None:
        """Stream the request body upstream piece by piece (a 50 MB upload is never held whole)."""
        async for chunk in request.content.iter_any():
            if chunked:
                conn.write(b"%x\r\n" % len(chunk))
                conn.write(chunk)
                conn.write(b"\r\n")
            else:
                conn.write(chunk)
            await conn.drain()
        if chunked:
            conn.write(b"0\r\n\r\n")

    async def _websocket(self, request: web.BaseRequest, port: int) -> web.StreamResponse:
        headers = forward_headers(request.headers, _WS_DROP, request.remote, request.headers.get("Host"))
        protocols = tuple(
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
        )
        upstream = await self.session.ws_connect(
            self._url(port, request),
            headers=headers,
            protocols=protocols,
            autoclose=False,
            autoping=True,
            max_msg_size=0,
        )
        try:
            downstream = web.WebSocketResponse(
                protocols=(upstream.protocol,) if upstream.protocol else (),
                autoclose=False,
                max_msg_size=0,
            )
            await downstream.prepare(request)
            async with anyio.create_task_group() as tg:

                async def pump(src: Any, dst: Any) -> None:
                    async for msg in src:
                        if msg.type is aiohttp.WSMsgType.TEXT:
                            await dst.send_str(msg.data)
                        elif msg.type is aiohttp.WSMsgType.BINARY:
                            await dst.send_bytes(msg.data)
                        elif msg.type is aiohttp.WSMsgType.CLOSE:
                            await dst.close(code=msg.data, message=(msg.extra or "").encode())
                            await src.close(code=msg.data)
                            break
                        else:  # ERROR / CLOSED
                            break
                    if not dst.closed:
                        await dst.close(code=src.close_code or aiohttp.WSCloseCode.GOING_AWAY)
                    tg.cancel_scope.cancel()

                tg.start_soon(pump, downstream, upstream)
                tg.start_soon(pump, upstream, downstream)
            return downstream
        finally:
            if not upstream.closed:
                await upstream.close()


# --------------------------------------------------------------------------- listening


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _in_use(port: int) -> RuntimeFailure:
    return RuntimeFailure(
        f"proxy: port {port} is already in use; stop the other program, "
        "or set dev.proxy_port / A3S_PROXY_PORT (0 turns the proxy off)"
    )


async def _bind(runner: web.BaseRunner, port: int) -> int:
    """Listen on 127.0.0.1 and ::1 (when the host has it) on one port; return that port."""
    ipv6 = _has_ipv6_loopback()
    attempts = 5 if port == 0 else 1  # port 0: the v6 side may collide with the v4 pick
    for attempt in range(attempts):
        v4 = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
        try:
            await v4.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _in_use(port) from None
            raise RuntimeFailure(f"proxy: cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
        bound = v4._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        if not ipv6:
            return int(bound)
        v6 = web.TCPSite(runner, "::1", bound, backlog=1024)
        try:
            await v6.start()
            return int(bound)
        except OSError as exc:
            await v4.stop()
            if exc.errno == errno.EADDRINUSE and attempt + 1 < attempts:
                continue
            if exc.errno == errno.EADDRINUSE:
                raise _in_use(bound) from None
            raise RuntimeFailure(f"proxy: cannot listen on [::1]:{bound}: {exc.strerror}") from None
    raise _in_use(port)  # pragma: no cover - the loop returns or raises


async def serve_proxy(
    supervisor: ProxyBackend,
    port: int,
    *,
    hold_timeout: float = HOLD_TIMEOUT,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the proxy on 127.0.0.1 (and ::1) `port` until cancelled; `task_status.started(port)`
    reports the bound port (useful with port 0). A port in use raises `RuntimeFailure`."""
    connector = aiohttp.TCPConnector(
        limit=0,  # no pool cap: a dev proxy must never queue requests behind its own limit
        keepalive_timeout=30,
        ttl_dns_cache=None,
    )
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,  # bytes pass through; Content-Encoding stays true
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        max_field_size=65536,
        max_line_size=65536,
    )
    proxy = ProxyServer(supervisor, session, hold_timeout=hold_timeout)
    unsubscribe = supervisor.bus.subscribe(proxy.states.on_event)
    server = web.Server(
        proxy.handle,
        handler_cancellation=True,  # a client that goes away cancels its upstream request
        access_log=None,
        max_field_size=65536,
        max_line_size=65536,
    )
    runner = web.ServerRunner(server, shutdown_timeout=0.5)
    try:
        await runner.setup()
        proxy.port = await _bind(runner, port)
        task_status.started(proxy.port)
        await anyio.sleep_forever()
    finally:
        unsubscribe()
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
            proxy.pool.close()
            await session.close()
