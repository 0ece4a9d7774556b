"""The reverse proxy: `http://<subdomain>.localhost:<proxy_port>` -> `127.0.0.1:<service port>`.

This module is the pure half: the `Router` (Host header -> route), the hold-until-ready
`verdict`, header rewriting and the HTML pages, tested without sockets; plus `serve_proxy`,
the entry the session starts, which loads the aiohttp half (`proxy_server.py`) only when a
proxy actually runs. Nothing here imports asyncio or aiohttp.
"""

from __future__ import annotations

import enum
import errno
import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from multidict import CIMultiDict

from a3s_dev.config import DevConfig, ServiceDef
from a3s_dev.errors import RuntimeFailure
from a3s_dev.events import EventBus
from a3s_dev.state import ServiceState, ServiceStatus, exited

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from a3s_dev.process import ListenFailure

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
# Everything else (stopped, failed, completed) answers 502 at once, with two exceptions below.
# The reason Supervisor.restart() gives the `stopped` in the middle of a restart.
RESTARTING_REASON = "restarting"


class Verdict(str, enum.Enum):
    FORWARD = "forward"
    HOLD = "hold"  # the service will be ready on its own: wait for it
    FAIL = "fail"  # it will not: answer with its error page


def verdict(
    state: ServiceState, reason: str | None = None, dependency_states: Iterable[ServiceState] = ()
) -> Verdict:
    """What to do with a request for a service in `state` (pure; the hold-until-ready policy)."""
    if state in FORWARD_STATES:
        return Verdict.FORWARD
    if state is ServiceState.PENDING and any(s is ServiceState.FAILED for s in dependency_states):
        return Verdict.FAIL  # it waits for a dependency that will not come up
    if state in HOLD_STATES:
        return Verdict.HOLD
    if state is ServiceState.STOPPED and reason == RESTARTING_REASON:
        return Verdict.HOLD  # between the old process's exit and the new one's spawn
    return Verdict.FAIL


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


def proxy_banner(entries: Iterable[RouteEntry], proxy_port: int) -> str:
    """The one line `a3s up` prints once the proxy listens: where each service can be reached."""
    urls = ", ".join(route_url(e, proxy_port).rstrip("/") for e in entries)
    return f"proxy on http://localhost:{proxy_port}" + (f": {urls}" if urls else " (no service has a port)")


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
    # the exit of a crash says something; that of a requested stop (SIGTERM) is noise
    crashed = status.state in (ServiceState.FAILED, ServiceState.BACKOFF)
    exit_text = exited(status.exit_code) if crashed and status.exit_code is not None else None
    exit_code = f" ({exit_text})" if exit_text else ""
    reasons = [r for r in (status.reason, detail) if r and r != exit_text]  # the heading has said it
    reason = "".join(f"<p>{html.escape(r)}</p>" for r in reasons)
    log = "\n".join(lines)
    log_html = (
        f"<h2>Last log lines</h2><pre>{html.escape(log)}</pre>" if log else "<p>(no output yet)</p>"
    )
    heading = f"<h1>{html.escape(status.name)} is {html.escape(status.state.value)}{exit_code}</h1>"
    hint = _HINTS.get(status.state)
    hint_html = f"<p>{hint.format(name=html.escape(status.name))}</p>" if hint else ""
    footer = f"<p>This page reloads every {refresh} s.</p>" if refresh else ""
    return _page(
        f"a3s: {status.name} is {status.state.value}",
        heading + reason + hint_html + log_html + footer,
        refresh=refresh,
    )


# What the developer can do about it, by state (the page is read in a browser, the fix is in a terminal).
_HINTS = {
    ServiceState.STOPPED: "Start it with <code>a3s up {name}</code>.",
    ServiceState.FAILED: "Fix the error shown below, then <code>a3s restart {name}</code>.",
    ServiceState.COMPLETED: "It is a task (<code>oneshot</code>): it ran and exited; tasks serve no requests.",
    ServiceState.PENDING: "It waits for a dependency that failed; see <code>a3s status</code>.",
}


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


@dataclass
class ProxyCounts:
    """What the proxy did since it started (`a3s_proxy_*` in /metrics)."""

    direct: int = 0  # requests answered on the direct path
    handed_over: int = 0  # client connections handed to aiohttp's path


class ProxyBackend(Protocol):
    """The slice of the Supervisor the proxy uses (docs/architecture.md)."""

    config: DevConfig
    bus: EventBus
    proxy_port: int | None  # the proxy sets it while it listens (status shows proxy URLs)
    proxy_counts: ProxyCounts | None  # likewise, for /metrics

    def status(self, name: str) -> ServiceStatus: ...

    def tail(self, name: str, n: int = 20) -> list[str]: ...

    def announce(self, text: str) -> None: ...


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


def header_tokens(value: str | None) -> set[str]:
    """The comma-separated tokens of a header such as Connection, trimmed and lower-cased."""
    if not value:
        return set()
    return {t.strip().lower() for t in value.split(",")} - {""}


def forward_headers(
    headers: Mapping[str, str] | Any, drop: frozenset[str], client_ip: str | None, host: str | None
) -> CIMultiDict[str]:
    """Copy request headers minus `drop` and those named in Connection; add X-Forwarded-*."""
    out: CIMultiDict[str] = CIMultiDict()
    extra = header_tokens(headers.get("Connection"))
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
    method: str,
    path: str,
    headers: Iterable[tuple[str, str]],
    client_ip: str | None,
    *,
    chunked: bool,
    connection: str | None,
) -> bytes:
    """The upstream request head in one string: original headers (`(name, value)` pairs)
    minus hop-by-hop ones and those `connection` (the Connection header) names, the original
    Host kept, X-Forwarded-For/-Host/-Proto added, and our own body framing."""
    extra = header_tokens(connection)
    parts = [f"{method} {path} HTTP/1.1\r\n"]
    prior: str | None = None
    has_forwarded_host = False
    host: str | None = None
    for key, value in headers:
        low = key.lower()
        if low in _REQUEST_DROP or low in extra or (chunked and low == "content-length"):
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


def response_headers(
    pairs: Iterable[tuple[str, str]], *, keep_length: bool, connection: str | None = None
) -> CIMultiDict[str]:
    """Upstream response headers minus hop-by-hop ones, those the Connection header (in `pairs`
    or given as `connection`) names, and Content-Length when we re-frame the body."""
    out: CIMultiDict[str] = CIMultiDict()
    extra = header_tokens(connection)
    for key, value in pairs:
        low = key.lower()
        if low == "connection":
            extra |= header_tokens(value)
            continue
        if low in _RESPONSE_DROP or (not keep_length and low == "content-length"):
            continue
        out.add(key, value)
    extra -= {"keep-alive", "close"}
    for name in extra:  # rare: headers the upstream marked hop-by-hop in Connection
        out.popall(name, None)
    return out

def response_head(
    status: int, reason: str, lines: bytes, *, connection: str | None, chunked: bool, close: bool
) -> bytes:
    """A response head for the client in one block, for the direct path: the upstream's header
    `lines` (each led by CRLF, hop-by-hop ones already cut by the pool) minus any header the
    upstream's `connection` names, then our own framing and connection headers."""
    if connection and connection.lower() not in ("keep-alive", "close"):
        named = header_tokens(connection) - {"keep-alive", "close"}
        if named:  # rare: headers the upstream marked hop-by-hop in Connection
            names = b"|".join(re.escape(n.encode("latin-1")) for n in sorted(named))
            lines = re.sub(rb"\r\n(?:" + names + rb")[ \t]*:[^\r\n]*", b"", lines, flags=re.IGNORECASE)
    return b"HTTP/1.1 %d %s%s%s%s\r\n\r\n" % (
        status,
        reason.encode("utf-8"),
        lines,
        b"\r\nTransfer-Encoding: chunked" if chunked else b"",
        b"\r\nConnection: close" if close else b"",
    )


class PlainRequest(NamedTuple):
    """A request head the direct path forwards itself (see `plain_request`)."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    host: str | None
    connection: str | None  # the Connection header, whose tokens name more hop-by-hop headers
    close: bool  # the client asked to close the connection after this exchange


# Requests with these methods and no body may be sent upstream again when the upstream closed
# the connection without answering (RFC 9110 §9.2.2); no other request is ever sent twice.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "PUT", "TRACE"})

# One pass over the whole head: an origin-form HTTP/1.1 request line with an idempotent method
# (RFC 9110 §9.2.2: one the direct path may hand to aiohttp's path to send again when the
# upstream dropped it unanswered), then header lines whose names are tokens and whose values
# hold no control characters (no obs-fold, no bare CR/LF). Anything else is for aiohttp's
# parser, which accepts or rejects it by the book.
_PLAIN_HEAD = re.compile(
    r"(?:GET|HEAD|OPTIONS|DELETE) /[!-~]* HTTP/1\.1"
    r"(?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*)*"
)
# Headers that mean more than "forward me": a body to stream, an interim response to send,
# a protocol switch. Requests carrying them take aiohttp's path.
_NOT_PLAIN = frozenset({"transfer-encoding", "upgrade", "expect", "http2-settings"})


def plain_request(raw: bytes) -> PlainRequest | None:
    """Parse a request head (without its final blank line) for the proxy's direct path, or
    return None to leave the request to aiohttp.

    The direct path takes the common case only: HTTP/1.1, GET/HEAD/OPTIONS/DELETE, origin-form
    target, no body (no Transfer-Encoding, Content-Length absent or 0), no Expect, no Upgrade,
    exactly one Host.
    Everything else, including every malformed head, is None: aiohttp's parser handles it."""
    text = raw.decode("utf-8", "surrogateescape")
    if _PLAIN_HEAD.fullmatch(text) is None:
        return None
    lines = text.split("\r\n")
    method, target, _ = lines[0].split(" ")
    headers: list[tuple[str, str]] = []
    host: str | None = None
    hosts = 0
    connection: str | None = None
    for line in lines[1:]:
        key, _, value = line.partition(":")
        value = value.strip(" \t")
        low = key.lower()
        if low == "host":
            host = value
            hosts += 1
        elif low == "content-length":
            if value != "0":
                return None
        elif low == "connection":
            connection = f"{connection}, {value}" if connection else value
        elif low in _NOT_PLAIN:
            return None
        headers.append((key, value))
    if hosts != 1:
        return None
    close = "close" in header_tokens(connection)
    return PlainRequest(method, target, headers, host, connection, close)


# --------------------------------------------------------------------------- the entry

# How long a request for a (re)starting service is held before the 503 page.
HOLD_TIMEOUT = 30.0
# A client connection idle this long is closed (aiohttp's keep-alive default).
IDLE_TIMEOUT = 75.0


def listen_error(exc: ListenFailure) -> RuntimeFailure:
    """The one line for a proxy port that cannot be listened on."""
    if exc.errno == errno.EADDRINUSE:
        return port_in_use(exc.port)
    host = f"[{exc.host}]" if ":" in exc.host else exc.host
    return RuntimeFailure(f"proxy: cannot listen on {host}:{exc.port}: {exc.strerror}")


def port_in_use(port: int) -> RuntimeFailure:
    """The one-line error for a proxy port someone else holds."""
    return RuntimeFailure(
        f"proxy: port {port} is already in use; stop the other program, "
        "or set dev.proxy_port / A3S_PROXY_PORT (0 turns the proxy off)"
    )


async def serve_proxy(
    supervisor: ProxyBackend,
    port: int,
    *,
    hold_timeout: float = HOLD_TIMEOUT,
    idle_timeout: float = IDLE_TIMEOUT,
    task_status: TaskStatus[int] | None = None,
) -> None:
    """Serve the proxy on 127.0.0.1 (and ::1) `port` until cancelled; `task_status.started(port)`
    reports the bound port (useful with port 0). A port in use raises `RuntimeFailure`."""
    from a3s_dev.proxy_server import serve  # aiohttp is loaded here, when a proxy runs

    await serve(supervisor, port, hold_timeout=hold_timeout, idle_timeout=idle_timeout, task_status=task_status)
