"""The control API: an aiohttp application on the supervisor's Unix socket, and its stdlib client.

The server half imports aiohttp and anyio inside its functions; the client half is stdlib
only, so that `a3s status` against a running supervisor stays a cold command of a few
tens of milliseconds. The wire format is documented in docs/api.md.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode

from a3s_dev.errors import A3sError, UsageError, unknown_service
from a3s_dev.fast import SPEC_KEYS as SPEC_KEYS  # noqa: PLC0414 - re-exported: the API status keys
from a3s_dev.state import ServiceState, ServiceStatus

if TYPE_CHECKING:
    import anyio.abc
    from aiohttp import web

    from a3s_dev.config import DevConfig
    from a3s_dev.events import Event, EventBus, LogLine
    from a3s_dev.proxy import ProxyCounts

API_VERSION = "v1"
LOG_RING = 1000  # lines per service kept in memory for the log endpoint's history
READY_STATES = frozenset({ServiceState.RUNNING.value, ServiceState.COMPLETED.value})
# `backoff` means the service exited under a restart policy: for a waiting client that is a failure.
FAILED_STATES = frozenset({ServiceState.FAILED.value, ServiceState.BACKOFF.value})
LIVE_STATES = frozenset(
    {ServiceState.STARTING, ServiceState.RUNNING, ServiceState.UNHEALTHY, ServiceState.STOPPING}
)


class SupervisorLike(Protocol):
    """The part of the Supervisor API (docs/architecture.md) the control server uses."""

    config: DevConfig
    bus: EventBus

    async def start(self, names: Iterable[str] | None = None, *, deps: bool = True) -> None: ...
    async def stop(self, names: Iterable[str] | None = None) -> None: ...
    async def restart(self, name: str) -> None: ...
    async def shutdown(self) -> None: ...
    def status(self, name: str) -> ServiceStatus: ...
    def snapshot(self) -> list[ServiceStatus]: ...
    def tail(self, name: str, n: int = 20) -> list[str]: ...


# ---------------------------------------------------------------------------- pure helpers


def status_dict(st: ServiceStatus, now: float) -> dict[str, Any]:
    """One service as the API and `status --json` show it (SPEC §2 keys, plus `reason`)."""
    live = st.state in LIVE_STATES and st.started_at is not None
    return {
        "name": st.name,
        "state": st.state.value,
        "pid": st.pid if st.state in LIVE_STATES else None,
        "port": st.port,
        # A stopped service's last probe result is history, not health.
        "health": st.health if st.state in LIVE_STATES else None,
        "uptime_s": round(max(0.0, now - st.started_at), 1)
        if live and st.started_at is not None
        else None,
        "restarts": st.restarts,
        "exit_code": st.exit_code,
        "url": st.url,
        "reason": st.reason,
        "started_at": st.started_at,
    }


def dependency_closure(config: DevConfig, names: Iterable[str]) -> list[str]:
    """`names` plus everything they depend on, transitively, in declaration order."""
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        todo.extend(config.service(name).depends_on)
    return [n for n in config.names if n in wanted]


def unknown_service_error(config: DevConfig, names: Iterable[str]) -> str | None:
    """A one-line message naming the first unknown service (with a suggestion), or None."""
    error = unknown_service(names, config.names)
    return error.message if error is not None else None


@dataclass(frozen=True)
class Readiness:
    """Where waiting for a set of services stands."""

    done: bool
    failed: str | None = None  # the first service that failed, when one did
    reason: str | None = None
    waiting: tuple[tuple[str, str], ...] = ()  # (name, state) not ready yet, in order


def readiness(
    services: Sequence[dict[str, Any]], names: Sequence[str], since: float | None = None
) -> Readiness:
    """Decide from status dicts whether `names` are all ready (running or completed), or one failed.

    With `since` (when the start was requested), a service that was spawned after it and is
    `stopped` again has exited on its own (exit 0 under on-failure): that is a failure too.
    """
    by_name = {s["name"]: s for s in services}
    waiting = []
    for name in names:
        svc = by_name.get(name)
        if svc is None:
            continue
        exited = (
            since is not None
            and svc["state"] == ServiceState.STOPPED.value
            and (svc.get("started_at") or 0.0) >= since
        )
        if svc["state"] in FAILED_STATES or exited:
            reason = svc.get("reason") or (
                f"exit code {svc['exit_code']}"
                if svc.get("exit_code") is not None
                else svc["state"]
            )
            return Readiness(False, name, reason)
        if svc["state"] not in READY_STATES or svc.get("health") == "unhealthy":
            waiting.append((name, svc["state"]))
    return Readiness(not waiting, waiting=tuple(waiting))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(
    statuses: Sequence[ServiceStatus], health_failures: dict[str, int], proxy: ProxyCounts | None = None
) -> str:
    """The Prometheus text exposition (format 0.0.4) of the supervisor's services, and of its
    proxy while one runs."""
    out = [
        "# HELP a3s_service_up 1 when the service is running, else 0.",
        "# TYPE a3s_service_up gauge",
    ]
    out += [
        f'a3s_service_up{{service="{_label(s.name)}"}} {int(s.state == ServiceState.RUNNING)}'
        for s in statuses
    ]
    out += [
        "# HELP a3s_service_restarts_total Restarts of the service since the supervisor started.",
        "# TYPE a3s_service_restarts_total counter",
    ]
    out += [
        f'a3s_service_restarts_total{{service="{_label(s.name)}"}} {s.restarts}' for s in statuses
    ]
    out += [
        "# HELP a3s_health_check_failures_total Failed health checks reported for the service.",
        "# TYPE a3s_health_check_failures_total counter",
    ]
    out += [
        f'a3s_health_check_failures_total{{service="{_label(s.name)}"}} {health_failures.get(s.name, 0)}'
        for s in statuses
    ]
    if proxy is not None:
        out += [
            "# HELP a3s_proxy_direct_requests_total Requests the proxy forwarded on its direct path.",
            "# TYPE a3s_proxy_direct_requests_total counter",
            f"a3s_proxy_direct_requests_total {proxy.direct}",
            "# HELP a3s_proxy_handed_over_connections_total Client connections the proxy handed to"
            + " its full (aiohttp) path: bodies, WebSockets, held requests, pages.",
            "# TYPE a3s_proxy_handed_over_connections_total counter",
            f"a3s_proxy_handed_over_connections_total {proxy.handed_over}",
        ]
    return "\n".join(out) + "\n"


def log_dict(line: LogLine) -> dict[str, Any]:
    return {"service": line.service, "text": line.text, "at": line.at, "stream": line.stream}


# ---------------------------------------------------------------------------- server


class _LogHub:
    """Keeps the last lines of each service and fans new ones out to streaming clients.

    Bus callbacks must never block, so followers get a bounded queue each; a follower
    that falls 10 000 lines behind loses lines rather than stalling the supervisor.
    """

    def __init__(self) -> None:
        import asyncio

        self._asyncio = asyncio
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        self.ring: dict[str, deque[LogLine]] = {}
        self.followers: set[Any] = set()  # asyncio.Queue[LogLine | None]
        self.health_failures: dict[str, int] = {}
        self.seq = 0  # counts state and health changes, for long-polling `status?after=`
        self.changed = asyncio.Event()

    def on_event(self, event: Event) -> None:
        if threading.get_ident() != self.thread:
            self.loop.call_soon_threadsafe(self.on_event, event)
            return
        from a3s_dev.events import HealthChanged, LogBatch, LogLine

        if isinstance(event, LogBatch):
            # One call per pipe read: only the lines the ring keeps (and followers get) are built.
            ring = self.ring.setdefault(event.service, deque(maxlen=LOG_RING))
            texts = event.lines if self.followers else event.lines[-LOG_RING:]
            lines = [LogLine(event.service, text, event.at, event.stream) for text in texts]
            ring.extend(lines[-LOG_RING:])
            for queue in tuple(self.followers):
                room = 10_000 - queue.qsize()
                for line in lines[: max(0, room)]:
                    queue.put_nowait(line)
        elif isinstance(event, LogLine):
            self.ring.setdefault(event.service, deque(maxlen=LOG_RING)).append(event)
            for queue in tuple(self.followers):
                if queue.qsize() < 10_000:
                    queue.put_nowait(event)
            return
        if isinstance(event, HealthChanged) and not event.healthy:
            self.health_failures[event.service] = self.health_failures.get(event.service, 0) + 1
        # A state or health change: wake the long-polling status requests.
        self.seq += 1
        self.changed.set()
        self.changed = self._asyncio.Event()

    def history(self, services: set[str] | None, n: int | None) -> list[LogLine]:
        lines: list[LogLine] = []
        for name, ring in self.ring.items():
            if services is None or name in services:
                kept = list(ring)
                lines += kept if n is None else kept[-n:] if n > 0 else []
        lines.sort(key=lambda ln: ln.at)
        return lines

    def close(self) -> None:
        for queue in tuple(self.followers):
            queue.put_nowait(None)


def build_app(
    supervisor: SupervisorLike, hub: _LogHub, on_down: Callable[[], None]
) -> web.Application:
    """The aiohttp application of the control API (routes in docs/api.md)."""
    from aiohttp import web

    config = supervisor.config
    started_at = time.time()

    def error(status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    def services_json() -> list[dict[str, Any]]:
        now = time.time()
        return [status_dict(s, now) for s in supervisor.snapshot()]

    async def body_of(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            data = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(
                text='{"error": "body is not JSON"}', content_type="application/json"
            )
        return data if isinstance(data, dict) else {}

    def names_of(data: dict[str, Any]) -> list[str] | None:
        names = data.get("services")
        if names is None or names == []:
            return None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise web.HTTPBadRequest(
                text='{"error": "services must be a list of names"}',
                content_type="application/json",
            )
        bad = unknown_service_error(config, names)
        if bad:
            raise web.HTTPNotFound(text=json.dumps({"error": bad}), content_type="application/json")
        return names

    async def wait_ready(
        names: list[str], timeout: float, since: float | None = None
    ) -> dict[str, Any]:
        """Until `names` are all ready or one failed; woken by state events, not by polling."""
        import anyio

        from a3s_dev.events import HealthChanged, StateChanged

        changed = anyio.Event()

        def wake(event: Event) -> None:
            nonlocal changed
            if isinstance(event, (StateChanged, HealthChanged)):
                changed.set()

        unsubscribe = supervisor.bus.subscribe(wake)
        try:
            with anyio.move_on_after(timeout):
                while True:
                    changed = anyio.Event()
                    result = readiness(services_json(), names, since)
                    if result.done or result.failed:
                        break
                    # A periodic look as well, in case a change comes without an event.
                    with anyio.move_on_after(0.5):
                        await changed.wait()
        finally:
            unsubscribe()
        result = readiness(services_json(), names, since)
        payload: dict[str, Any] = {
            "ok": result.done,
            "failed": result.failed,
            "reason": result.reason,
        }
        if not result.done and not result.failed:
            first = result.waiting[0] if result.waiting else (names[0], "unknown")
            payload.update(
                failed=first[0], reason=f"not ready after {timeout:g}s (state {first[1]})"
            )
        if payload["failed"]:
            payload["tail"] = supervisor.tail(payload["failed"], 20)
        payload["services"] = services_json()
        return payload

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def status(request: web.Request) -> web.Response:
        # `after=N&wait=S`: answer once something changed since change N (or after S seconds),
        # so a waiting client sees each change at once without polling.
        after = request.query.get("after")
        if after is not None and after.lstrip("-").isdigit() and hub.seq <= int(after):
            import asyncio

            wait = min(max(float(request.query.get("wait", "10") or 0), 0.0), 60.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hub.changed.wait(), wait)
        return web.json_response(
            {
                "pid": os.getpid(),
                "file": str(config.path),
                "started_at": started_at,
                "seq": hub.seq,
                "services": services_json(),
            }
        )

    async def start(request: web.Request) -> web.Response:
        data = await body_of(request)
        names = names_of(data)
        deps = bool(data.get("deps", True))
        requested_at = time.time()
        wanted = (
            list(config.names)
            if names is None
            else dependency_closure(config, names)
            if deps
            else names
        )
        # A oneshot that completed is never run again (SPEC §1); everything else that is not
        # running is started. The closure is ours, so the supervisor gets deps=False.
        to_start = [n for n in wanted if supervisor.status(n).state is not ServiceState.COMPLETED]
        if to_start:
            await supervisor.start(to_start, deps=False)
        if data.get("wait"):
            result = await wait_ready(wanted, float(data.get("timeout", 300)), requested_at)
            return web.json_response(
                {"waiting_for": wanted, "requested_at": requested_at, **result}
            )
        return web.json_response(
            {"waiting_for": wanted, "requested_at": requested_at, "services": services_json()}
        )

    async def stop(request: web.Request) -> web.Response:
        names = names_of(await body_of(request))
        await supervisor.stop(names)
        return web.json_response({"services": services_json()})

    async def restart(request: web.Request) -> web.Response:
        data = await body_of(request)
        names = names_of(data)
        if names is None:
            return error(400, "restart needs at least one service")
        requested_at = time.time()
        for name in names:
            await supervisor.restart(name)
        if not data.get("wait", True):
            return web.json_response({"services": services_json()})
        return web.json_response(
            await wait_ready(names, float(data.get("timeout", 60)), requested_at)
        )

    async def down(request: web.Request) -> web.Response:
        on_down()
        return web.json_response({"status": "stopping", "pid": os.getpid()}, status=202)

    async def tail(request: web.Request) -> web.Response:
        # From the supervisor, which keeps every service's last lines from its first spawn
        # (the log stream's history starts only when this API was attached).
        name = request.query.get("service", "")
        bad = unknown_service_error(config, [name]) if name != "a3s" else None
        if bad:
            return error(404, bad)
        try:
            n = int(request.query.get("n", "20"))
        except ValueError:
            return error(400, "n must be a number")
        return web.json_response({"service": name, "lines": supervisor.tail(name, n)})

    async def metrics(request: web.Request) -> web.Response:
        snapshot = supervisor.snapshot()
        failures = hub.health_failures
        counter = getattr(supervisor, "health_failures", None)
        if callable(counter):  # the supervisor counts every failed check, not only transitions
            failures = {s.name: int(counter(s.name)) for s in snapshot}
        return web.Response(
            text=render_metrics(snapshot, failures, getattr(supervisor, "proxy_counts", None)),
            content_type="text/plain",
            headers={"X-Content-Type-Options": "nosniff"},
            charset="utf-8",
        )

    async def logs(request: web.Request) -> web.StreamResponse:
        import asyncio

        wanted = request.query.getall("service", [])
        bad = unknown_service_error(config, [w for w in wanted if w != "a3s"])
        if bad:
            return error(404, bad)
        only = set(wanted) or None
        n_raw = request.query.get("n")
        n = int(n_raw) if n_raw not in (None, "") else None
        follow = request.query.get("follow", "0") in ("1", "true", "yes")
        queue: asyncio.Queue[LogLine | None] = asyncio.Queue()
        # Subscribe before taking the history so no line falls between the two.
        since = time.time()
        if follow:
            hub.followers.add(queue)
        try:
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await response.prepare(request)
            await response.write(json.dumps({"since": since}).encode() + b"\n")
            for line in hub.history(only, n):
                await response.write(json.dumps(log_dict(line)).encode() + b"\n")
            while follow:
                new = await queue.get()
                if new is None:
                    break
                if only is None or new.service in only:
                    await response.write(json.dumps(log_dict(new)).encode() + b"\n")
            await response.write_eof()
            return response
        finally:
            hub.followers.discard(queue)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get(f"/{API_VERSION}/status", status)
    app.router.add_post(f"/{API_VERSION}/start", start)
    app.router.add_post(f"/{API_VERSION}/stop", stop)
    app.router.add_post(f"/{API_VERSION}/restart", restart)
    app.router.add_post(f"/{API_VERSION}/down", down)
    app.router.add_get(f"/{API_VERSION}/logs", logs)
    app.router.add_get(f"/{API_VERSION}/tail", tail)
    return app


async def serve_control(
    supervisor: SupervisorLike,
    state_dir: Path,
    *,
    task_status: anyio.abc.TaskStatus[None] | None = None,
) -> None:
    """Serve the control API on the A3sfile's control socket until cancelled; then remove the socket.

    The caller holds the supervisor lock (runtime.SupervisorLock). `down` calls
    `supervisor.shutdown()`; the session ends this task once the supervisor has stopped.
    `state_dir` is the `.a3s/` folder; the socket path is derived from the A3sfile.
    """
    import anyio
    from aiohttp import web

    from a3s_dev import runtime

    paths = runtime.paths_for(supervisor.config.path, state_dir)
    hub = _LogHub()
    from a3s_dev.events import HealthChanged, LogBatch, LogLine, StateChanged

    # LogBatch rather than LogLine: a service printing 500k lines costs a few calls, not 500k.
    kinds = (StateChanged, HealthChanged, LogBatch, LogLine)
    unsubscribe = supervisor.bus.subscribe(hub.on_event, kinds)
    async with anyio.create_task_group() as tg:

        def on_down() -> None:
            tg.start_soon(supervisor.shutdown)

        app = build_app(supervisor, hub, on_down)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        sock = runtime.bind_control_socket(paths)
        # A socket fd's own inode is sockfs's, so remember the file's to recognise it later.
        bound_ino = os.stat(paths.socket).st_ino
        try:
            site = web.SockSite(runner, sock)
            await site.start()
            if task_status is not None:
                task_status.started()
            await anyio.sleep_forever()
        finally:
            unsubscribe()
            with anyio.CancelScope(shield=True):
                # Remove the socket first: from here on, clients see "not running".
                try:
                    if os.stat(paths.socket).st_ino == bound_ino:
                        os.unlink(paths.socket)
                except OSError:
                    pass
                hub.close()
                await runner.cleanup()
                sock.close()


# ---------------------------------------------------------------------------- client


class NotRunning(A3sError):
    """No supervisor answers on the control socket."""


class ControlError(A3sError):
    """The supervisor answered with an error."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("a3s", timeout=timeout)
        self._unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class ControlClient:
    """Talks to a running supervisor over its control socket. Stdlib only."""

    def __init__(self, socket_path: Path, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def _open(
        self, method: str, path: str, body: dict[str, Any] | None, timeout: float | None
    ) -> tuple[_UnixConnection, http.client.HTTPResponse]:
        conn = _UnixConnection(str(self.socket_path), self.timeout if timeout is None else timeout)
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        try:
            conn.request(method, path, body=payload, headers=headers)
            return conn, conn.getresponse()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            conn.close()
            raise NotRunning(f"no supervisor is running ({exc.strerror})") from None
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
            conn.close()
            raise NotRunning("the supervisor went away") from None
        except TimeoutError:
            conn.close()
            raise ControlError(f"the supervisor did not answer {method} {path} in time") from None

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """One request; the decoded JSON answer. NotRunning when nobody listens, ControlError on 4xx/5xx."""
        conn, response = self._open(method, path, body, timeout)
        try:
            raw = response.read()
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw.decode("utf-8", "replace")
        if response.status >= 400:
            message = data.get("error") if isinstance(data, dict) else str(data)
            exc: A3sError = (
                UsageError(message or "") if response.status == 404 else ControlError(message or "")
            )
            raise exc
        return data

    def healthz(self) -> bool:
        try:
            return bool(self.request("GET", "/healthz", timeout=2.0) == {"status": "ok"})
        except (NotRunning, ControlError):
            return False

    def status(self, after: int | None = None, wait: float = 10.0) -> dict[str, Any]:
        """The supervisor's status; with `after` (a `seq` it answered before), once something
        changed since then or after `wait` seconds."""
        if after is None:
            return dict(self.request("GET", f"/{API_VERSION}/status"))
        query = urlencode({"after": after, "wait": wait})
        return dict(self.request("GET", f"/{API_VERSION}/status?{query}", timeout=wait + 10))

    def start(
        self,
        services: Sequence[str] | None,
        *,
        deps: bool = True,
        wait: bool = False,
        timeout: float = 300,
    ) -> dict[str, Any]:
        body = {"services": list(services or []), "deps": deps, "wait": wait, "timeout": timeout}
        return dict(
            self.request(
                "POST", f"/{API_VERSION}/start", body, timeout=(timeout + 10) if wait else None
            )
        )

    def stop(self, services: Sequence[str] | None) -> dict[str, Any]:
        return dict(
            self.request(
                "POST", f"/{API_VERSION}/stop", {"services": list(services or [])}, timeout=600
            )
        )

    def restart(self, services: Sequence[str], *, timeout: float = 60) -> dict[str, Any]:
        body = {"services": list(services), "wait": True, "timeout": timeout}
        return dict(self.request("POST", f"/{API_VERSION}/restart", body, timeout=timeout + 600))

    def down(self) -> dict[str, Any]:
        return dict(self.request("POST", f"/{API_VERSION}/down", {}))

    def tail(self, service: str, n: int = 20) -> list[str]:
        """The last `n` lines of `service` the supervisor keeps (its last words when it failed)."""
        query = urlencode({"service": service, "n": n})
        return list(self.request("GET", f"/{API_VERSION}/tail?{query}")["lines"])

    def metrics(self) -> str:
        conn, response = self._open("GET", "/metrics", None, None)
        try:
            return response.read().decode()
        finally:
            conn.close()

    def logs(
        self, services: Sequence[str] = (), *, n: int | None = None, follow: bool = False
    ) -> Iterator[dict[str, Any]]:
        """The log stream: first `{"since": t}`, then lines `{"service","text","at","stream"}`.

        Ends when the supervisor stops (or after the history, without `follow`).
        """
        query: list[tuple[str, str]] = [("service", s) for s in services]
        if n is not None:
            query.append(("n", str(n)))
        if follow:
            query.append(("follow", "1"))
        conn, response = self._open("GET", f"/{API_VERSION}/logs?{urlencode(query)}", None, None)
        try:
            if response.status >= 400:
                data = json.loads(response.read() or b"{}")
                message = data.get("error", f"HTTP {response.status}")
                raise UsageError(message) if response.status == 404 else ControlError(message)
            # No read timeout while following: lines may be minutes apart.
            if conn.sock is not None:
                conn.sock.settimeout(None)
            while True:
                try:
                    raw = response.readline()
                except (ConnectionResetError, http.client.IncompleteRead):
                    return
                if not raw:
                    return
                yield json.loads(raw)
        finally:
            conn.close()
