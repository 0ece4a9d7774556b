"""The proxy's server: the full request handler (aiohttp), hold-until-ready, listening.

The listening sockets belong to the direct path (`direct.py`), which forwards plain
requests to ready services itself and hands every other connection to a low-level
`aiohttp.web.Server` here (no Application router: one catch-all handler is all a proxy
needs). Plain HTTP goes upstream through `upstream.py` (keep-alive connections of our own);
WebSocket upgrades through one aiohttp `ClientSession`. Bodies stream both ways. Imported
only when a proxy runs, so aiohttp stays out of every other command.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import signal
import socket
import sys
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import anyio
from aiohttp import web
from anyio.abc import TaskStatus
from yarl import URL

from a3s_dev.config.model import DevConfig, ServiceDef
from a3s_dev.core.events import Event, EventBus, ProbeChanged, StateChanged
from a3s_dev.core.logs import without_probe_requests
from a3s_dev.core.state import ServiceState, ServiceStatus
from a3s_dev.dashboard.handlers import Dashboard
from a3s_dev.errors import A3sError, RuntimeFailure
from a3s_dev.link.addresses import proxy_banner, route_url
from a3s_dev.link.protocol import ProjectView
from a3s_dev.link.proxy_process import listen_tcp
from a3s_dev.proxy.direct import IDLE_TIMEOUT, DirectPath, ProxyCounts
from a3s_dev.proxy.headers import (
    HOPS,
    IDEMPOTENT,
    LAST_CHUNK,
    MAX_HOPS,
    WS_DROP,
    chunk,
    forward_headers,
    hops_of,
    origin_form,
    request_head,
    response_headers,
)
from a3s_dev.proxy.logins import COOKIE, LOGIN_PARAMETER, LOGIN_SETTING, Logins
from a3s_dev.proxy.pages import (
    render_ambiguous,
    render_login_needed,
    render_loop,
    render_not_found,
    render_not_http,
    render_project_gone,
    render_proxy_metrics,
    render_unavailable,
)
from a3s_dev.proxy.registry import Registry
from a3s_dev.proxy.router import FORWARD_STATES, Route, RouteKind, Router, Verdict, verdict
from a3s_dev.proxy.tally import Tally
from a3s_dev.proxy.upstream import (
    UpstreamConnectError,
    UpstreamConnection,
    UpstreamError,
    UpstreamPool,
)
from a3s_dev.system.limits import open_files_limit, raise_open_files
from a3s_dev.system.peers import kernel_names_peers
from a3s_dev.system.places import ca_folder
from a3s_dev.system.ports import LISTEN_BACKLOG
from a3s_dev.tls.ca import LocalCA, ServerContexts, quiet_undecodable_server_names

# How long a request for a (re)starting service is held before the 503 page.
HOLD_TIMEOUT = 30.0

# A restart passes through `stopped` on its way to `starting`; a held request waits this long
# for the next state before it gives up on a service that was stopping.
RESTART_GRACE = 1.0
TRAFFIC_EVERY = 1.0  # seconds: how often at most a supervisor hears that a service is used
# Connection refused while the supervisor still says running: the process just died or is
# being replaced and the event has not arrived yet. Retry this long before answering 502.
REFUSED_GRACE = 1.0
# Upstream bodies up to this size are read whole and sent in one write (one syscall).
SMALL_BODY = 64 * 1024
# The shared proxy exits this long after the last project left.
LINGER = 3.0


class ProxyBackend(Protocol):
    """The slice of a Supervisor an in-process proxy uses (tests, benchmarks): one project."""

    config: DevConfig
    bus: EventBus

    def status(self, name: str) -> ServiceStatus: ...

    def tail(self, name: str, n: int = 20) -> list[str]: ...

    def announce(self, text: str) -> None: ...

    def wake_up(self, name: str) -> None: ...

    def traffic(self, name: str, open_sockets: int | None = None) -> None: ...


class LocalProject:
    """A Supervisor in this process, as a `ProjectView`."""

    def __init__(self, backend: ProxyBackend) -> None:
        self.backend = backend
        self.name = backend.config.project
        self.services = backend.config.services
        settings = backend.config.settings
        self.https_port = settings.https_port if settings.https else None
        self.a3sfile: Path | None = backend.config.path
        self.logs: Path | None = None  # in-process: tails come from the supervisor itself
        self.control: Path | None = None

    def status(self, name: str) -> ServiceStatus:
        return self.backend.status(name)

    def tail(self, name: str, n: int = 20) -> list[str]:
        return self.backend.tail(name, n)

    def wake(self, name: str) -> None:
        self.backend.wake_up(name)

    def traffic(self, name: str, open_sockets: int | None = None) -> None:
        self.backend.traffic(name, open_sockets)


Key = tuple[str, str]  # (project, service)


class _States:
    """Each service's state as its supervisor last reported it, plus futures woken on each change."""

    def __init__(self, projects: Mapping[str, ProjectView]) -> None:
        self._projects = projects
        self._states: dict[Key, ServiceState] = {}
        self._waiters: dict[Key, list[asyncio.Future[None]]] = {}

    def get(self, project: str, name: str) -> ServiceState:
        state = self._states.get((project, name))
        return state if state is not None else self.refresh(project, name)

    def status(self, project: str, name: str) -> ServiceStatus:
        """Ask the project (the bus may be late or a transition may have no event)."""
        view = self._projects.get(project)
        try:
            status = view.status(name) if view is not None else ServiceStatus(name, ServiceState.STOPPED)
        except KeyError:
            status = ServiceStatus(name, ServiceState.STOPPED)
        self._states[(project, name)] = status.state
        return status

    def refresh(self, project: str, name: str) -> ServiceState:
        return self.status(project, name).state

    def changed_to(self, project: str, name: str, state: ServiceState) -> None:
        self._states[(project, name)] = state
        self._wake((project, name))

    def forget(self, project: str) -> None:
        """The project left: drop its states and wake whoever waits for one of its services."""
        for key in [k for k in self._states if k[0] == project]:
            del self._states[key]
        for key in [k for k in self._waiters if k[0] == project]:
            self._wake(key)

    def _wake(self, key: Key) -> None:
        for fut in self._waiters.pop(key, ()):
            if not fut.done():
                fut.set_result(None)

    async def changed(self, project: str, name: str, timeout: float) -> None:
        """Return at the next state change of the service or after `timeout` seconds."""
        key = (project, name)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(fut)
        try:
            with anyio.move_on_after(max(timeout, 0.0)):
                await fut
        finally:
            waiters = self._waiters.get(key)
            if waiters and fut in waiters:
                waiters.remove(fut)


class _Unavailable(Exception):
    """The request cannot be forwarded: answer with the service's error page."""

    def __init__(self, status_code: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


class _Gone(Exception):
    """The project left while its request waited: answer with its "not running" page."""


DEPARTED_KEPT = 64  # projects that left whose hosts still say "not running" (not "unknown")
ARRIVAL_WAIT = 2.0  # seconds a request for an unknown host waits at most for a registration on its way


class ProxyServer:
    """The request handler and its shared state, for every registered project; `serve_proxy` runs it."""

    def __init__(self, session: aiohttp.ClientSession, *, hold_timeout: float = HOLD_TIMEOUT) -> None:
        self.projects: dict[str, ProjectView] = {}
        self.departed: OrderedDict[str, frozenset[str]] = OrderedDict()
        self.router = Router({})
        self.session = session  # WebSockets only; plain HTTP goes through `pool`
        self.pool = UpstreamPool()
        self.hold_timeout = hold_timeout
        self.states = _States(self.projects)
        self.counts = ProxyCounts()
        self.registry: Registry | None = None  # the shared proxy's: projects register there
        self.port = 0
        self.full: web.Server | None = None  # aiohttp's server, set by serve_proxy
        self.idle_timeout = IDLE_TIMEOUT
        self.tls: dict[int, tuple[DirectPath, list[asyncio.Server]]] = {}  # https port -> its listeners
        self._tls_contexts: ServerContexts | None = None
        self._tls_lock = asyncio.Lock()
        self.dashboard = Dashboard(self)
        self._base: dict[int, str] = {}
        # Client connections whose request in flight must not be sent again (the direct path
        # saw the upstream close unanswered, and it never answered HTTP): the 502 page instead.
        self._no_resend: weakref.WeakKeyDictionary[asyncio.BaseTransport, str] = weakref.WeakKeyDictionary()
        self.answering: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()  # handed over, in `handle`
        # None: the kernel names each connection's user, and other users are refused by uid
        # (`DirectPath.own_user`); else the dashboard asks for a login (`logins.py`)
        self.logins: Logins | None = None
        self._used_at: dict[Key, float] = {}  # when each service's supervisor last heard it is used
        self._sockets: dict[Key, int] = {}  # open WebSockets per service

    def refuse_resend(self, transport: asyncio.BaseTransport | None, detail: str) -> None:
        if transport is not None:
            self._no_resend[transport] = detail

    # ------------------------------------------------------------------ projects (Members)

    def add(self, view: ProjectView) -> None:
        self.projects[view.name] = view
        self.departed.pop(view.name, None)
        self._reroute()
        self.dashboard.projects_changed()

    def remove(self, view: ProjectView) -> None:
        if self.projects.get(view.name) is not view:
            return  # replaced meanwhile by a new registration under that name
        del self.projects[view.name]
        self.departed[view.name] = frozenset(e.subdomain for e in self.router.entries if e.project == view.name)
        while len(self.departed) > DEPARTED_KEPT:
            self.departed.popitem(last=False)
        self.states.forget(view.name)
        # its supervisor is gone: the next one of that name hears of its first request at once
        self._used_at = {key: at for key, at in self._used_at.items() if key[0] != view.name}
        self._reroute()
        self.dashboard.projects_changed()
        self._release_tls()

    def _release_tls(self) -> None:
        """Stop listening on each TLS port no project asks for any more (one that asked for
        port 0, any port, keeps them all)."""
        wanted = {v.https_port for v in self.projects.values() if v.https_port is not None}
        if 0 in wanted:
            return
        for port in [p for p in self.tls if p not in wanted]:
            self._close_tls(port)

    def changed(self, project: str, name: str, state: ServiceState) -> None:
        self.states.changed_to(project, name, state)
        self.dashboard.state_changed(project, name)

    def status_of(self, project: str, name: str) -> ServiceStatus:
        return self.states.status(project, name)

    def https_ports(self) -> list[int]:
        return list(self.tls)

    async def serve_https(self, port: int) -> str | None:
        """Serve TLS on 127.0.0.1 (and ::1) `port` too, once, with certificates from the local
        CA; None, or the one line saying why it cannot. Port 0: one the OS picks."""
        async with self._tls_lock:  # two registrations at once must not both listen
            return await self._serve_https(port)

    async def _serve_https(self, port: int) -> str | None:
        if port in self.tls or (port == 0 and self.tls):
            return None
        assert self.full is not None
        try:
            if self._tls_contexts is None:
                self._tls_contexts = ServerContexts(LocalCA())
                quiet_undecodable_server_names()
        except (OSError, A3sError) as exc:
            return f"https: the local CA at {ca_folder()} cannot be used: {exc}"
        try:
            sockets = listen_tcp(port, what="https", setting="dev.https_port")
        except RuntimeFailure as exc:
            return exc.message
        direct = DirectPath(self, self.full, counts=self.counts, idle_timeout=self.idle_timeout, proto="https")
        loop = asyncio.get_running_loop()
        ssl_context = self._tls_contexts.context
        servers = [
            await loop.create_server(direct, sock=sock, backlog=LISTEN_BACKLOG, ssl=ssl_context,
                                     ssl_handshake_timeout=10)
            for sock in sockets
        ]
        self.tls[int(sockets[0].getsockname()[1])] = (direct, servers)
        return None

    def close_tls(self) -> None:
        for port in list(self.tls):
            self._close_tls(port)

    def _close_tls(self, port: int) -> None:
        direct, servers = self.tls.pop(port)
        for server in servers:
            server.close()
        direct.close()

    def _reroute(self) -> None:
        self.router = Router({n: v.services for n, v in self.projects.items()}, self.departed)

    # ------------------------------------------------------------------ dispatch

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """aiohttp's handler: `answer`, its connection counted meanwhile among those answering,
        which are never closed to make room (`DirectPath.make_room`)."""
        transport = request.transport
        if transport is not None:
            self.answering.add(transport)
        try:
            return await self.answer(request)
        finally:
            if transport is not None:
                self.answering.discard(transport)

    async def answer(self, request: web.BaseRequest) -> web.StreamResponse:
        host = request.headers.get("Host")
        route = self.router.resolve(host)
        if route.kind in (RouteKind.UNKNOWN, RouteKind.PROJECT_GONE) and self.registry is not None:
            route = await self._arrival(host, route)
        kind = route.kind
        if kind is RouteKind.UPSTREAM:
            assert route.service is not None and route.port is not None
            try:
                return await self._proxy(request, route.project, route.service, route.port)
            except _Unavailable as exc:
                return self._unavailable(route.project, route.service, exc.status_code, exc.detail)
            except _Gone:
                return self._gone(route.project)
        if kind is RouteKind.INDEX:
            refusal = self._login(request)
            if refusal is not None:
                return refusal
            if request.path == "/metrics" and not route.project:
                return web.Response(text=render_proxy_metrics(self.counts, len(self.projects)),
                                    content_type="text/plain", charset="utf-8")
            return await self.dashboard.handle(request, route.project)
        if kind is RouteKind.NOT_HTTP:
            assert route.service is not None
            return self._html(404, render_not_http(route.service, route.port))
        if kind is RouteKind.NOT_ROUTABLE:
            assert route.service is not None
            detail = f"{route.service} has no port, so the proxy cannot reach it"
            return self._unavailable(route.project, route.service, 502, detail)
        if kind is RouteKind.AMBIGUOUS:
            return self._html(409, render_ambiguous(route.subdomain or "", route.choices, self.port))
        if kind is RouteKind.PROJECT_GONE:
            return self._gone(route.project)
        if kind is RouteKind.FOREIGN:
            return web.Response(status=421, text="a3s: this proxy answers *.localhost and loopback hosts only\n")
        # the routes are this user's business: listed only where other users are refused
        return self._html(404, render_not_found(host, self.router.entries if self.logins is None else None, self.port))

    def login(self) -> str | None:
        """A one-time login token for the dashboard, where it asks for one (else None)."""
        return self.logins.issue() if self.logins is not None else None

    def _login(self, request: web.BaseRequest) -> web.StreamResponse | None:
        """Where the dashboard asks for a login: None for a browser that has logged in (its
        cookie); a redirect that sets the cookie for a login token, to the same address without
        it; else 403, saying how to log in."""
        if self.logins is None or self.logins.admits(request.cookies.get(COOKIE)):
            return None
        login = request.query.get(LOGIN_PARAMETER)
        if login is not None and self.logins.redeem(login):
            query = request.url.query.copy()
            query.popall(LOGIN_PARAMETER)
            # never `//host`, which a browser takes for another site
            here = URL.build(path="/" + request.path.lstrip("/\\"), query=query)
            return web.Response(status=303, headers={"Location": str(here), "Set-Cookie": self.logins.set_cookie(),
                                                     "Cache-Control": "no-store"})
        return self._html(403, render_login_needed(used=login is not None), {"Cache-Control": "no-store"})

    async def _arrival(self, host: str | None, route: Route) -> Route:
        """The route once the registrations on their way have arrived (a proxy just started by
        an `a3s up` may read a browser's request before that `up`'s registration)."""
        assert self.registry is not None
        loop = asyncio.get_running_loop()
        # bounded whatever the registry expects: a connection that never says who it is must
        # not hold every unknown host's answer until it is closed
        deadline = loop.time() + ARRIVAL_WAIT
        while (wait := min(self.registry.expecting(), deadline - loop.time())) > 0:
            await self.registry.news(wait)
            route = self.router.resolve(host)
            if route.kind not in (RouteKind.UNKNOWN, RouteKind.PROJECT_GONE):
                break
        return route

    def links(self) -> dict[tuple[str, str], str]:
        """Each routed service's address: https on the projects that asked for it."""
        links = {}
        for entry in self.router.entries:
            view = self.projects.get(entry.project)
            https = view.https_port if view is not None else None
            links[(entry.project, entry.service)] = (
                route_url(entry, https, "https") if https else route_url(entry, self.port)
            )
        return links

    @staticmethod
    def _html(status: int, text: str, headers: Mapping[str, str] | None = None) -> web.Response:
        return web.Response(status=status, text=text, content_type="text/html", headers=headers)

    def _gone(self, project: str) -> web.Response:
        return self._html(502, render_project_gone(project, list(self.projects), self.port), {"Retry-After": "1"})

    def _unavailable(self, project: str, name: str, status_code: int, detail: str | None) -> web.Response:
        status = self.states.status(project, name)
        view = self.projects.get(project)
        try:
            # a service's log is its user's: on this page only where other users are refused
            lines = view.tail(name, 40) if view is not None and self.logins is None else []
        except KeyError:
            lines = []
        service = self._service(project, name)
        if service is not None:
            lines = without_probe_requests(lines, service)  # the user's requests, not a3s's probes
        headers = {"Retry-After": "1"} if status_code == 503 else None
        page = render_unavailable(status, lines[-20:], detail=detail, log_shown=self.logins is None)
        return self._html(status_code, page, headers)

    def _service(self, project: str, name: str) -> ServiceDef | None:
        """The definition of `name` in `project`, as its supervisor registered it."""
        view = self.projects.get(project)
        return next((s for s in view.services if s.name == name), None) if view is not None else None

    # ------------------------------------------------------------------ hold until ready

    def _verdict(self, project: str, name: str) -> tuple[Verdict, ServiceStatus]:
        """Ask the project (the bus may be late, or a transition may have published nothing)."""
        view = self.projects.get(project)
        if view is None:
            raise _Gone
        status = self.states.status(project, name)
        deps: list[ServiceState] = []
        if status.state is ServiceState.PENDING and (svc := self._service(project, name)) is not None:
            deps = [self.states.status(project, dep).state for dep in svc.depends_on]
        return verdict(status.state, status.reason, deps), status

    async def _ready(self, project: str, name: str, deadline: float) -> None:
        """Wait until the service can take requests; raise `_Unavailable` when it will not in time.
        An idle one is started first, and waited for up to its start_timeout (SPEC §13)."""
        loop = asyncio.get_running_loop()
        held = False
        woken = False
        stopped_at: float | None = None
        while True:
            now = loop.time()
            decision, status = self._verdict(project, name)
            if decision is Verdict.FORWARD:
                return
            if decision is Verdict.START and not woken:
                woken = True
                deadline = max(deadline, now + self._start_timeout(project, name))
                view = self.projects.get(project)
                if view is not None:
                    view.wake(name)
            if decision in (Verdict.HOLD, Verdict.START):
                held = True
                stopped_at = None
                wait = deadline - now
                if wait <= 0:
                    raise _Unavailable(503, f"still {status.state.value} after {self.hold_timeout:g} s")
            elif held and status.state is ServiceState.STOPPED:
                # stopped after we started holding: a restart may spawn the new process any moment
                if stopped_at is None:
                    stopped_at = now
                wait = min(deadline - now, stopped_at + RESTART_GRACE - now)
                if wait <= 0:
                    raise _Unavailable(502)
            else:
                raise _Unavailable(502)
            # the poll interval guards against a transition that published no event
            await self.states.changed(project, name, min(wait, 0.25))

    def _start_timeout(self, project: str, name: str) -> float:
        svc = self._service(project, name)
        probe = svc.probe if svc is not None else None
        return probe.start_timeout if probe is not None else self.hold_timeout

    def used(self, project: str, name: str, open_sockets: int | None = None) -> None:
        """A request for the service is being forwarded: its supervisor hears of it at most once
        a TRAFFIC_EVERY seconds (and at once when its open WebSockets change), which is what
        keeps an `idle_stop` service up."""
        key = (project, name)
        now = time.monotonic()
        if open_sockets is None and now - self._used_at.get(key, -TRAFFIC_EVERY) < TRAFFIC_EVERY:
            return
        self._used_at[key] = now
        view = self.projects.get(project)
        if view is not None:
            view.traffic(name, open_sockets)

    # ------------------------------------------------------------------ forwarding

    async def _proxy(self, request: web.BaseRequest, project: str, name: str, port: int) -> web.StreamResponse:
        if self._no_resend and request.transport is not None and request.transport in self._no_resend:
            raise _Unavailable(502, self._no_resend.pop(request.transport))
        hops = hops_of(request.headers.get(HOPS))
        if hops >= MAX_HOPS:
            return self._html(508, render_loop(project, name, request.headers.get("Host") or "", hops))
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        refused_since: float | None = None
        while True:
            if self.states.get(project, name) not in FORWARD_STATES:
                if deadline is None:
                    deadline = loop.time() + self.hold_timeout
                await self._ready(project, name, deadline)
            self.used(project, name)
            try:
                if request.headers.get("Upgrade", "").lower() == "websocket":
                    key = (project, name)
                    self._sockets[key] = self._sockets.get(key, 0) + 1
                    self.used(project, name, self._sockets[key])
                    try:
                        return await self._websocket(request, port, hops + 1)
                    finally:
                        left = self._sockets.pop(key) - 1
                        if left:
                            self._sockets[key] = left
                        self.used(project, name, left)
                return await self._forward(request, port, hops + 1)
            except (UpstreamConnectError, aiohttp.ClientConnectorError) as exc:
                # Nothing was sent: retrying is safe for any method. The supervisor may not
                # have noticed yet that the process died or is being replaced.
                now = loop.time()
                if deadline is None:
                    deadline = now + self.hold_timeout
                if refused_since is None:
                    refused_since = now
                if project not in self.projects:
                    raise _Gone from None
                state = self.states.refresh(project, name)
                if state in FORWARD_STATES and now - refused_since > REFUSED_GRACE or now > deadline:
                    why = exc.strerror if isinstance(exc, UpstreamConnectError) else exc.os_error.strerror
                    raise _Unavailable(502, f"127.0.0.1:{port}: {why or exc}") from None
                if state in FORWARD_STATES:
                    await self.states.changed(project, name, 0.05)
            except (TimeoutError, UpstreamError, aiohttp.ClientError) as exc:
                raise _Unavailable(502, str(exc) or f"127.0.0.1:{port}: {type(exc).__name__}") from None

    def _url(self, port: int, request: web.BaseRequest) -> URL:
        host = self.pool.host(port)
        base = self._base.get(port) if host == "127.0.0.1" else f"http://[{host}]:{port}"
        if base is None:
            base = self._base[port] = f"http://127.0.0.1:{port}"
        # encoded=True: forward the path and query byte for byte, no re-quoting
        return URL(base + origin_form(request.raw_path), encoded=True)

    async def _forward(self, request: web.BaseRequest, port: int, hops: int) -> web.StreamResponse:
        method = request.method
        req_headers = request.headers
        has_body = request.body_exists
        chunked = has_body and "Content-Length" not in req_headers
        head = request_head(
            method, request.raw_path, req_headers.items(), request.remote, chunked=chunked,
            connection=", ".join(req_headers.getall("Connection", [])) or None, proto=request.scheme, hops=hops,
        )
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
                if (not conn.reused or conn.replied or has_body or method not in IDEMPOTENT
                        or port not in self.pool.answered):
                    raise
                # The upstream closed this idle connection just as we reused it (its keep-alive
                # timeout), without a byte, most likely before reading the request: an
                # idempotent one without a body can go again, fresh (RFC 9110 §9.2.2).
                conn.close()
                conn = await self.pool.connect(port)
                conn.begin(head, no_body=method == "HEAD")
                up = await conn.response_head()
            self.pool.answered.add(port)
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
                    headers=response_headers(up.headers, keep_length=keep_length, connection=up.connection),
                    body=body or None,
                )
            response = web.StreamResponse(
                status=up.status,
                reason=up.reason,
                headers=response_headers(up.headers, keep_length=True, connection=up.connection),
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
        async for piece in request.content.iter_any():
            for part in chunk(piece) if chunked else (piece,):
                conn.write(part)
            await conn.drain()
        if chunked:
            conn.write(LAST_CHUNK)

    async def _websocket(self, request: web.BaseRequest, port: int, hops: int) -> web.StreamResponse:
        await self.pool.locate(port)  # 127.0.0.1 or ::1: _url then names the one that answers
        headers = forward_headers(
            request.headers, WS_DROP, request.remote, request.headers.get("Host"), proto=request.scheme, hops=hops
        )
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
                    # receive() rather than `async for`, which ends at a close frame unseen:
                    # the close's code and reason must reach the other side.
                    while True:
                        msg = await src.receive()
                        if msg.type is aiohttp.WSMsgType.TEXT:
                            await dst.send_str(msg.data)
                        elif msg.type is aiohttp.WSMsgType.BINARY:
                            await dst.send_bytes(msg.data)
                        elif msg.type is aiohttp.WSMsgType.CLOSE:
                            code, reason = close_to_forward(msg.data), (msg.extra or "").encode()
                            if not dst.closed:
                                await dst.close(code=code, message=reason)
                            await src.close(code=code, message=reason)
                            break
                        elif msg.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
                            continue
                        else:  # the peer vanished without a close frame (a tab killed, a crash)
                            if not dst.closed:
                                await dst.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"")
                            break
                    tg.cancel_scope.cancel()

                tg.start_soon(pump, downstream, upstream)
                tg.start_soon(pump, upstream, downstream)
            return downstream
        finally:
            if not upstream.closed:
                await upstream.close()


def close_to_forward(code: int | None) -> int:
    """The close code to send on: the peer's own, except those RFC 6455 §7.4.1 reserves for
    reporting (1005 no code: 1000; 1006 and 1015, a broken connection: 1001, going away)."""
    if code is None or code == 1005:
        return int(aiohttp.WSCloseCode.OK)
    if code in (1006, 1015) or not 1000 <= code <= 4999:
        return int(aiohttp.WSCloseCode.GOING_AWAY)
    return code


def _not_a_client_mistake(record: logging.LogRecord) -> bool:
    """aiohttp logs a traceback for every malformed request it answers with a 4xx; the client
    got its answer, and the developer's log stream is no place for it. Real errors still log."""
    exc = record.exc_info[1] if record.exc_info else None
    return not (isinstance(exc, aiohttp.http_exceptions.HttpProcessingError) and 400 <= (exc.code or 0) < 500)


logging.getLogger("aiohttp.server").addFilter(_not_a_client_mistake)


# --------------------------------------------------------------------------- listening


async def _listen(
    factory: Callable[[], asyncio.BaseProtocol], port: int, sockets: Sequence[socket.socket] | None
) -> tuple[list[asyncio.Server], int]:
    """Serve on `sockets` (those `a3s up` listened on before spawning anything), else on
    127.0.0.1 and ::1 (when the host has it) `port`; return the servers and the port."""
    if not sockets:
        sockets = listen_tcp(port)
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(factory, sock=sock, backlog=LISTEN_BACKLOG) for sock in sockets]
    return servers, int(sockets[0].getsockname()[1])


async def serve_proxy(
    backend: ProxyBackend | None = None,
    port: int = 0,
    *,
    sockets: Sequence[socket.socket] | None = None,
    registration: Registry | None = None,
    registration_socket: socket.socket | None = None,
    counts: ProxyCounts | None = None,
    hold_timeout: float = HOLD_TIMEOUT,
    idle_timeout: float = IDLE_TIMEOUT,
    logins: Logins | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the proxy until cancelled, on `sockets` when given, else on 127.0.0.1 (and ::1)
    `port`; `task_status.started(port)` reports the bound port (useful with port 0). A port in
    use raises `RuntimeFailure`. `counts` receives what the proxy did (for /metrics).

    The projects it serves: `backend` (a supervisor in this process: tests, benchmarks), and
    whoever registers on `registration_socket` when given (the shared proxy: `serve_shared`).
    With `logins`, the dashboard asks for a login instead of refusing other users by uid."""
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
    proxy = ProxyServer(session, hold_timeout=hold_timeout)
    if counts is not None:
        proxy.counts = counts
    unsubscribe: Callable[[], None] = lambda: None
    if backend is not None:
        local = LocalProject(backend)
        proxy.add(local)

        def on_event(event: Event) -> None:
            assert isinstance(event, (StateChanged, ProbeChanged))
            proxy.changed(local.name, event.service, backend.status(event.service).state)

        # state and probe changes only: a subscriber to every kind would make the supervisor
        # build one LogLine event per output line for nobody
        unsubscribe = backend.bus.subscribe(on_event, (StateChanged, ProbeChanged))
    server = web.Server(
        proxy.handle,
        handler_cancellation=True,  # a client that goes away cancels its upstream request
        access_log=None,
        max_field_size=65536,
        max_line_size=65536,
    )
    proxy.full, proxy.idle_timeout, proxy.logins = server, idle_timeout, logins
    direct = DirectPath(proxy, server, counts=proxy.counts, idle_timeout=idle_timeout)
    listeners: list[asyncio.Server] = []
    try:
        listeners, proxy.port = await _listen(direct, port, sockets)
        if registration is not None:
            proxy.registry = registration
            assert registration_socket is not None
            await registration.serve(registration_socket, proxy)
        if backend is not None:
            backend.announce(proxy_banner(proxy.router.entries, proxy.port))
        task_status.started(proxy.port)
        await anyio.sleep_forever()
    finally:
        unsubscribe()
        with anyio.CancelScope(shield=True):
            if registration is not None:
                registration.close()
            for listener in listeners:
                listener.close()
            direct.close()
            proxy.close_tls()
            await proxy.dashboard.close()
            await server.shutdown(0.5)  # the connections handed to aiohttp
            proxy.pool.close()
            await session.close()


OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
SAY_FAILED_ACCEPTS_EVERY = 60.0  # seconds


class FailedAccepts:
    """The shared proxy's loop exception handler. When accept() fails for want of descriptors,
    asyncio reports each try, once per connection waiting in the backlog and again each second,
    with its traceback (about 1.8 MB a second here); say it once a minute, with how many tries
    failed since, and leave everything else to asyncio's own handler."""

    def __init__(self, log: Callable[[str], None], clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.failed = Tally(SAY_FAILED_ACCEPTS_EVERY, clock)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (isinstance(exc, OSError) and exc.errno in OUT_OF_RESOURCES
                and "accept" in str(context.get("message", ""))):
            loop.default_exception_handler(context)
            return
        failed = self.failed.due()
        if failed is None:
            return
        self.log(
            f"cannot accept connections: {exc.strerror} (open files limit {open_files_limit()}; "
            f"{failed} failed accepts since last said): a local process holds many connections "
            f"open; said again in {SAY_FAILED_ACCEPTS_EVERY:.0f} s at most"
        )


def serve_shared(port: int, fds: Sequence[int], *, linger: float | None = LINGER) -> int:
    """The shared proxy's process (`python -m a3s_dev.proxy`, `a3s proxy`): serve on the
    listening sockets `fds` (TCP ones, then the Unix one) until `a3s proxy stop`, a signal, or
    `linger` seconds without any project (None: never). Its exit code."""
    from a3s_dev.link import proxy_process

    tcp = [socket.socket(fileno=fd) for fd in fds[:-1]]
    unix = socket.socket(fileno=fds[-1])
    raise_open_files()
    asked = os.environ.get(LOGIN_SETTING, "") not in ("", "0")
    logins = Logins() if asked or not kernel_names_peers() else None

    def log(text: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} a3s proxy: {text}", flush=True)

    said = logging.StreamHandler(sys.stdout)  # what the proxy's modules log: the same lines
    said.setFormatter(logging.Formatter("%(asctime)s a3s proxy: %(message)s", "%Y-%m-%d %H:%M:%S"))
    logging.getLogger("a3s_dev").addHandler(said)

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(FailedAccepts(log))
        async with anyio.create_task_group() as tg:
            registry = Registry(
                log=log,
                on_stop=tg.cancel_scope.cancel,
                linger=linger,
                socket_file=proxy_process.socket_path(port),
                exit_lock=lambda: proxy_process.spawn_lock(port),
            )

            async def signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as received:
                    async for signum in received:
                        log(f"stopping: {signal.Signals(signum).name}")
                        tg.cancel_scope.cancel()

            tg.start_soon(signals)
            await tg.start(functools.partial(serve_proxy, sockets=tcp, registration=registry,
                                             registration_socket=unix, logins=logins))
            proxy_process.write_pid(port)
            log(f"serving http://localhost:{port} (pid {os.getpid()})")
            if logins is not None:
                why = "A3S_PROXY_LOGIN is set" if asked else "this kernel does not say who is on a connection"
                log(f"the dashboard asks for a login ({why}); other users are not refused by uid")

    try:
        anyio.run(main)
    finally:
        proxy_process.remove_pid(port)
    return 0
