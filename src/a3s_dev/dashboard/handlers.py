"""The dashboard at `http://a3s.localhost:<port>/` and its JSON API under `/api/` (SPEC §7,
docs/dashboard.md), served by the shared proxy for every registered project.

The page is rendered here complete (`board.py`); the shipped script keeps it live from
`/api/events` (server-sent events fed by the supervisors' pushes). Logs come from the
projects' log files (history) and their control APIs (live lines); actions go to the
control APIs. An action must carry the page's token (header `X-A3S-Token`) and come from
the dashboard's own origin, else it is refused with 403 and nothing is done: a page from
another site must not be able to restart your services. A history read must carry the token
too (a page of another site could otherwise fire heavy reads at will), and reads at most
HISTORY_BYTES of files, off the proxy's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from importlib import resources
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from a3s_dev.config.model import parse_duration
from a3s_dev.control.api import parse_count
from a3s_dev.core import history
from a3s_dev.core.logs import probe_requests, service_colors
from a3s_dev.core.state import ServiceStatus, status_row
from a3s_dev.dashboard.board import Board, render_dashboard
from a3s_dev.link.addresses import dashboard_url
from a3s_dev.link.protocol import ProjectView

ACTIONS = ("restart", "stop", "start")
MAX_LINES = 10_000  # lines one history request may ask for
# Live log streams relayed at once: a page that does not read holds about 700 KB of buffers.
MAX_FOLLOWING = 64
# Bytes of log files one history request reads, shared among its services (each gets at least
# MIN_WINDOW), from the end: 40 MB of history took a second of the proxy's loop.
HISTORY_BYTES = 4 * 1024 * 1024
MIN_WINDOW = 256 * 1024
QUEUE = 1000  # events a slow dashboard may fall behind by before it is told to reload
BATCH = 0.05  # seconds: live log lines are sent in batches this often at most
KEEPALIVE = 15.0
ASSET_TYPES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Proxy(Protocol):
    """What the dashboard reads of the proxy (`server.ProxyServer`)."""

    port: int

    @property
    def projects(self) -> Mapping[str, ProjectView]: ...
    def status_of(self, project: str, name: str) -> ServiceStatus: ...
    def links(self) -> dict[tuple[str, str], str]: ...
    def https_ports(self) -> Iterable[int]: ...


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def sse(event: str, data: Any) -> bytes:
    """One server-sent event: its name and its data as compact JSON (the one framing of the page's streams)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=HEADERS)


class Dashboard:
    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.token = secrets.token_urlsafe(32)
        self.subscribers: set[asyncio.Queue[bytes | None]] = set()
        self.following = 0  # live log streams relayed now
        self._waves: dict[str, tuple[ProjectView, list[list[str]]]] = {}
        self._assets: dict[str, bytes] = {}

    async def close(self) -> None:
        for queue in list(self.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    # ------------------------------------------------------------------ events

    def _publish(self, event: str, data: Mapping[str, Any]) -> None:
        payload = sse(event, data)
        for queue in list(self.subscribers):
            try:
                queue.put_nowait(payload)
            except asyncio.QueueFull:  # a dashboard that cannot keep up: told to reload instead
                self.subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)

    def state_changed(self, project: str, name: str) -> None:
        if not self.subscribers:
            return
        status = self.proxy.status_of(project, name)
        row = status_row(status, time.time(), project)
        self._publish("state", {"project": project, "service": name, "state": status.state.value, "status": row})

    def projects_changed(self) -> None:
        if self.subscribers:
            self._publish("projects", {"projects": list(self.proxy.projects)})

    # ------------------------------------------------------------------ dispatch

    async def handle(self, request: web.BaseRequest, project: str = "") -> web.StreamResponse:
        """Serve one request for the dashboard; `project`: the host was `<project>.localhost`."""
        path = request.path
        try:
            if project:  # <project>.localhost: the dashboard lives at a3s.localhost only
                raise web.HTTPFound(f"{dashboard_url(self._port_of(request), request.scheme)}#{project}")
            if path.startswith("/api/"):
                return await self._api(request, [p for p in path.split("/")[2:] if p != ""])
            if request.method not in ("GET", "HEAD"):
                raise _Refused(405, "the dashboard takes GET; actions are POST /api/...")
            if path == "/":
                return await self._page()
            if path.startswith("/_a3s/"):
                return self._asset(path.removeprefix("/_a3s/"))
            raise _Refused(404, f"no dashboard page at {path}")
        except _Refused as exc:
            return _json({"error": exc.message}, exc.status)

    @staticmethod
    def _port_of(request: web.BaseRequest) -> int:
        """The port the request came in on (never the Host header's text: it is the client's)."""
        sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
        return int(sockname[1]) if sockname else 80

    async def _page(self) -> web.Response:
        links = self.proxy.links()
        boards = [await self._board(name, view, links) for name, view in list(self.proxy.projects.items())]
        text = render_dashboard(boards, token=self.token, now=time.time())
        return web.Response(text=text, content_type="text/html", charset="utf-8", headers=HEADERS)

    async def _board(self, name: str, view: ProjectView, links: Mapping[tuple[str, str], str]) -> Board:
        deps = {s.name: list(s.depends_on) for s in view.services}
        cached = self._waves.get(name)
        if cached is None or cached[0] is not view:
            from a3s_dev.config.graph import plan_of

            # networkx is imported once, in a worker thread, the first time a page is drawn
            waves = [list(w) for w in (await asyncio.to_thread(plan_of, deps)).waves]
            self._waves[name] = cached = (view, waves)
        return Board(
            name=name,
            a3sfile=str(view.a3sfile or ""),
            statuses=[self.proxy.status_of(name, s.name) for s in view.services],
            links={svc: url for (p, svc), url in links.items() if p == name},
            waves=cached[1],
            depends_on=deps,
            colors=service_colors(s.name for s in view.services),
        )

    def _asset(self, name: str) -> web.Response:
        kind = ASSET_TYPES.get(name)
        if kind is None:
            raise _Refused(404, f"no asset {name}")
        if name not in self._assets:
            self._assets[name] = resources.files("a3s_dev.dashboard").joinpath("static", name).read_bytes()
        return web.Response(body=self._assets[name], content_type=kind, charset="utf-8", headers=HEADERS)

    # ------------------------------------------------------------------ the API

    async def _api(self, request: web.BaseRequest, parts: list[str]) -> web.StreamResponse:
        if request.method == "POST":
            self._check_origin(request)
            return await self._action(parts)
        if request.method != "GET":
            raise _Refused(405, "GET to read, POST to act")
        if parts == ["services"]:
            now = time.time()
            return _json([
                status_row(self.proxy.status_of(p, s.name), now, p)
                for p, view in list(self.proxy.projects.items())
                for s in view.services
            ])
        if parts == ["projects"]:
            return _json(self._projects(request))
        if parts == ["events"]:
            return await self._events(request)
        if len(parts) in (2, 3) and parts[-1] == "logs":
            view = self._view(parts[0])
            service = parts[1] if len(parts) == 3 else None
            if service is not None:
                self._service(view, service)
            if request.query.get("follow") in ("1", "true"):
                return await self._follow(request, view, service)
            # History reads files: the page's token first (a page of another site can fire GETs,
            # but not with this header), then off the proxy's one loop, every project waits not
            self._check_token(request, "reading a log's history")
            return _json(await asyncio.to_thread(self._history, view, service, request.query))
        raise _Refused(404, f"no API at {request.path}")

    def _projects(self, request: web.BaseRequest) -> list[dict[str, Any]]:
        """`a3s ls` (SPEC §13): each registered project, its A3sfile, services running / total,
        failed ones, and its place on the dashboard."""
        out = []
        for name, view in list(self.proxy.projects.items()):
            states = [self.proxy.status_of(name, s.name).state.value for s in view.services]
            out.append({
                "name": name,
                "a3sfile": str(view.a3sfile) if view.a3sfile is not None else None,
                "running": states.count("running"),
                "total": len(states),
                "failed": states.count("failed"),
                "dashboard": f"{dashboard_url(self._port_of(request))}#{name}",
            })
        return out

    def _view(self, project: str) -> ProjectView:
        view = self.proxy.projects.get(project)
        if view is None:
            raise _Refused(404, f"project {project} is not running")
        return view

    @staticmethod
    def _service(view: ProjectView, name: str) -> None:
        if name not in {s.name for s in view.services}:
            raise _Refused(404, f"project {view.name} has no service {name}")

    def _check_origin(self, request: web.BaseRequest) -> None:
        """403 unless the request comes from the dashboard's own page: its Origin and its token."""
        origin = request.headers.get("Origin")
        own = {f"http://{h}:{self.proxy.port}" for h in ("a3s.localhost", "localhost", "127.0.0.1", "[::1]")}
        own |= {f"https://{h}:{p}" for p in self.proxy.https_ports() for h in ("a3s.localhost", "localhost")}
        if origin not in own:
            raise _Refused(403, f"refused: an action must come from the dashboard's own page (Origin {origin})")
        self._check_token(request, "an action")

    def _check_token(self, request: web.BaseRequest, what: str) -> None:
        token = request.headers.get("X-A3S-Token", "")
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            raise _Refused(403, f"refused: {what} must carry the dashboard's token (X-A3S-Token)")

    async def _action(self, parts: list[str]) -> web.Response:
        if len(parts) == 2 and parts[1] == "stop":
            view = self._view(parts[0])
            return await self._control(view, "POST", "/v1/down", None)
        if len(parts) == 3 and parts[2] in ACTIONS:
            view = self._view(parts[0])
            self._service(view, parts[1])
            body: dict[str, Any] = {"services": [parts[1]]}
            if parts[2] == "restart":
                body["wait"] = False
            return await self._control(view, "POST", f"/v1/{parts[2]}", body)
        raise _Refused(404, "actions: POST /api/<project>/<service>/<restart|stop|start>, POST /api/<project>/stop")

    @staticmethod
    @contextlib.asynccontextmanager
    async def _supervisor(view: ProjectView, timeout: float | None) -> AsyncIterator[aiohttp.ClientSession]:
        """A client of the project's control API, over its Unix socket."""
        if view.control is None:
            raise _Refused(501, f"project {view.name} has no control API the dashboard can reach")
        connector = aiohttp.UnixConnector(path=str(view.control))
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            yield session

    async def _control(self, view: ProjectView, method: str, path: str, body: dict[str, Any] | None) -> web.Response:
        try:
            async with self._supervisor(view, 60) as s, s.request(method, f"http://a3s{path}", json=body) as r:
                answer = await r.json(content_type=None)
                return _json(answer, r.status)
        except (aiohttp.ClientError, OSError, ValueError, TimeoutError) as exc:
            raise _Refused(502, f"project {view.name}'s supervisor did not answer: {exc}") from None

    def _history(self, view: ProjectView, service: str | None, query: Mapping[str, str]) -> list[dict[str, Any]]:
        n = _whole(query.get("n"), "n", 200, MAX_LINES)
        since = _since(query.get("since"))
        logs = view.logs
        if logs is None:
            return []
        names = [service] if service else [s.name for s in view.services]
        window = max(HISTORY_BYTES // max(len(names), 1), MIN_WINDOW)
        entries = history.read_history(logs, names, since=since, last=n, window=window)
        if query.get("probes") != "1":  # a3s's own probe requests are hidden unless asked for
            probes = {s.name: p for s in view.services if (p := probe_requests(s)) is not None}
            entries = [e for e in entries if e.service not in probes or not probes[e.service].search(e.text)]
        return [{"service": e.service, "at": e.at, "text": e.text} for e in entries[-n:]]

    # ------------------------------------------------------------------ streams

    async def _stream(self, request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={**HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        await response.write(b"retry: 1000\n\n")
        return response

    async def _events(self, request: web.BaseRequest) -> web.StreamResponse:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE)
        self.subscribers.add(queue)
        try:
            response = await self._stream(request)
            await response.write(sse("projects", {"projects": list(self.proxy.projects)}))
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    item = b": keep-alive\n\n"
                if item is None:
                    await response.write(sse("reload", {}))
                    break
                await response.write(item)
            return response
        finally:
            self.subscribers.discard(queue)

    async def _follow(self, request: web.BaseRequest, view: ProjectView, service: str | None) -> web.StreamResponse:
        """Live lines from the project's control API, relayed as `lines` events in batches."""
        if self.following >= MAX_FOLLOWING:
            raise _Refused(503, f"{MAX_FOLLOWING} log streams are open already; close a log view (each holds memory)")
        query = "follow=1&n=0" + (f"&service={service}" if service else "")
        self.following += 1
        try:
            async with self._supervisor(view, None) as s, s.get(f"http://a3s/v1/logs?{query}") as upstream:
                if upstream.status != 200:
                    raise _Refused(502, f"project {view.name}'s log stream answered {upstream.status}")
                response = await self._stream(request)
                shown_probes = request.query.get("probes") == "1"
                hidden = {} if shown_probes else {s.name: p for s in view.services if (p := probe_requests(s)) is not None}
                await self._relay(upstream.content, response.write, hidden)
                return response
        except (aiohttp.ClientError, OSError) as exc:
            raise _Refused(502, f"project {view.name}'s supervisor did not answer: {exc}") from None
        finally:
            self.following -= 1

    @staticmethod
    async def _relay(
        content: aiohttp.StreamReader, write: Callable[[bytes], Any], hidden: Mapping[str, re.Pattern[str]] | None = None
    ) -> None:
        """NDJSON log lines in, `lines` events out: one per BATCH seconds at most, so a service
        printing 10,000 lines a second costs the page 20 messages a second, not 10,000. A line
        of a service in `hidden` that its pattern matches (a3s's probe requests) is left out."""
        hidden = hidden or {}
        loop = asyncio.get_running_loop()
        await content.readline()  # the stream's first line says since when it follows
        batch: list[dict[str, Any]] = []
        flush_at = loop.time() + BATCH
        while True:
            try:
                line = await asyncio.wait_for(content.readline(), max(flush_at - loop.time(), 0.001))
            except TimeoutError:
                line = None
            if line:
                with contextlib.suppress(ValueError, AttributeError):
                    item = json.loads(line)
                    pattern = hidden.get(item.get("service"))
                    if pattern is None or not pattern.search(str(item.get("text"))):
                        batch.append({"service": item.get("service"), "at": item.get("at"), "text": item.get("text")})
            ended, due = line == b"", loop.time() >= flush_at
            if batch and (due or ended):
                await write(sse("lines", batch))
                batch = []
            if ended:
                return  # the supervisor ended the stream
            if due:
                flush_at = loop.time() + BATCH


def _whole(raw: str | None, name: str, default: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    number = parse_count(raw)
    if number is None:
        raise _Refused(400, f"{name} must be a whole number, got {json.dumps(raw[:40])}")
    return min(number, high)


def _since(raw: str | None) -> float | None:
    """`since`: a duration back from now ("30s", "5m") or epoch seconds."""
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            return time.time() - parse_duration(raw)
        except ValueError:
            raise _Refused(400, f'since must be a duration like "30s" or epoch seconds, got {json.dumps(raw)}') from None
    return value
