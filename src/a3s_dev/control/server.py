"""The control API's server: an aiohttp application on the supervisor's Unix socket.

One `ControlServer` holds the routes as methods; `serve_control` is the attachment the run
starts beside the supervisor. Every parameter is checked before anything is done, and a bad
one is a 400 with a message. The wire format is documented in docs/api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.abc
from aiohttp import WSMsgType, web

from a3s_dev.config.graph import Plan
from a3s_dev.config.model import DevConfig
from a3s_dev.control.api import log_dict, parse_count, readiness, render_metrics
from a3s_dev.control.client import API_VERSION
from a3s_dev.core.events import (
    Event,
    EventBus,
    HealthChanged,
    LogBatch,
    LogLine,
    ProbeChanged,
    StateChanged,
)
from a3s_dev.core.logs import A3S
from a3s_dev.core.process import ServiceProcess
from a3s_dev.core.service_env import service_env
from a3s_dev.core.state import ServiceState, ServiceStatus, status_row
from a3s_dev.errors import RuntimeFailure, unknown_service

LOG_RING = 1000  # lines per service kept in memory for the log endpoint's history
ATTACH_BACKLOG = 4096  # output chunks an attached terminal may fall behind before it loses some
FOLLOWER_BACKLOG = 1000  # lines a streaming client may fall behind before it loses some
MAX_FOLLOWERS = 64  # log streams at once: each may hold FOLLOWER_BACKLOG lines and socket buffers


class Follower:
    """One streaming log client: its bounded queue (None ends it), and how many lines it lost
    since it last read, said to it as one line of a3s's own before the next."""

    def __init__(self, backlog: int = FOLLOWER_BACKLOG) -> None:
        self.queue: asyncio.Queue[LogLine | None] = asyncio.Queue()
        self.backlog = backlog
        self.dropped = 0

    def offer(self, lines: list[LogLine]) -> None:
        room = max(0, self.backlog - self.queue.qsize())
        for line in lines[:room]:
            self.queue.put_nowait(line)
        self.dropped += max(0, len(lines) - room)

    async def next(self) -> tuple[LogLine | None, LogLine] | None:
        """The next line, with a line saying how many were lost before it if any (else None);
        None at the end."""
        line = await self.queue.get()
        if line is None:
            return None
        if not self.dropped:
            return None, line
        lost, self.dropped = self.dropped, 0
        return LogLine(A3S, f"{lost} log lines dropped here: this client read too slowly", line.at, "a3s"), line


class SupervisorLike(Protocol):
    """The part of the Supervisor API (docs/architecture.md) the control server uses."""

    config: DevConfig
    bus: EventBus

    async def start(self, names: Iterable[str] | None = None, *, deps: bool = True) -> None: ...
    async def stop(self, names: Iterable[str] | None = None, *, cause: str | None = None) -> None: ...
    async def restart(self, name: str, *, cause: str = "a3s restart") -> None: ...
    async def shutdown(self, cause: str | None = None) -> None: ...
    async def wait_until(self, done: Callable[[], bool], timeout: float | None = None) -> bool: ...
    async def plan(self) -> Plan: ...
    def status(self, name: str) -> ServiceStatus: ...
    def snapshot(self) -> list[ServiceStatus]: ...
    def tail(self, name: str, n: int = 20) -> list[str]: ...
    def health_failures(self, name: str) -> int: ...
    def standing_warnings(self) -> dict[str, str]: ...
    def terminal(self, name: str) -> ServiceProcess: ...


class LogHub:
    """Keeps the last lines of each service and fans new ones out to streaming clients.

    Bus callbacks must never block, so followers get a bounded queue each; a follower
    that falls FOLLOWER_BACKLOG lines behind loses lines rather than stalling the supervisor.
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        self.ring: dict[str, deque[LogLine]] = {}
        self.followers: set[Follower] = set()
        self.seq = 0  # counts state and health changes, for long-polling `status?after=`
        self.changed = asyncio.Event()

    def on_event(self, event: Event) -> None:
        if threading.get_ident() != self.thread:
            self.loop.call_soon_threadsafe(self.on_event, event)
            return
        if isinstance(event, LogBatch):
            # One call per pipe read: only the lines the ring keeps (and followers get) are built.
            ring = self.ring.setdefault(event.service, deque(maxlen=LOG_RING))
            texts = event.lines if self.followers else event.lines[-LOG_RING:]
            lines = [LogLine(event.service, text, event.at, event.stream) for text in texts]
            ring.extend(lines[-LOG_RING:])
            for follower in tuple(self.followers):
                follower.offer(lines)
            return
        # A state or health change: wake the long-polling status requests.
        self.seq += 1
        self.changed.set()
        self.changed = asyncio.Event()

    def history(self, services: set[str] | None, n: int | None) -> list[LogLine]:
        lines: list[LogLine] = []
        for name, ring in self.ring.items():
            if services is None or name in services:
                kept = list(ring)
                lines += kept if n is None else kept[-n:] if n > 0 else []
        lines.sort(key=lambda ln: ln.at)
        return lines

    def close(self) -> None:
        for follower in tuple(self.followers):
            follower.queue.put_nowait(None)


# ---------------------------------------------------------------------------- parameters


class _BadRequest(web.HTTPBadRequest):
    def __init__(self, message: str) -> None:
        super().__init__(text=json.dumps({"error": message}), content_type="application/json")


class _Conflict(web.HTTPConflict):
    def __init__(self, message: str) -> None:
        super().__init__(text=json.dumps({"error": message}), content_type="application/json")


class _Busy(web.HTTPServiceUnavailable):
    def __init__(self, message: str) -> None:
        super().__init__(text=json.dumps({"error": message}), content_type="application/json")


class _NotFound(web.HTTPNotFound):
    def __init__(self, message: str) -> None:
        super().__init__(text=json.dumps({"error": message}), content_type="application/json")


def _number(value: Any, name: str, *, default: float, low: float = 0.0, high: float | None = None) -> float:
    """A JSON or query value that must be a number in [low, high]; 400 otherwise."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise _BadRequest(f"{name} must be a number, got {json.dumps(value)}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _BadRequest(f"{name} must be a number, got {json.dumps(value)}") from None
    if not (number >= low and (high is None or number <= high)):  # NaN fails both
        bound = f"from {low:g} to {high:g}" if high is not None else f"{low:g} or more"
        raise _BadRequest(f"{name} must be {bound}, got {json.dumps(value)}")
    return number


def _count(value: str | None, name: str, *, default: int | None) -> int | None:
    """A query value that must be a whole number of 0 or more; 400 otherwise."""
    if value is None or value == "":
        return default
    number = parse_count(value)
    if number is None:
        raise _BadRequest(f"{name} must be a whole number of 0 or more, got {json.dumps(value[:40])}")
    return number


def _flag(value: Any, name: str, *, default: bool) -> bool:
    """A JSON boolean (or a query `1`/`0`, `true`/`false`); 400 otherwise."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no", ""):
        return value.lower() in ("1", "true", "yes")
    raise _BadRequest(f"{name} must be true or false, got {json.dumps(value)}")


class Applier(Protocol):
    """What applies the A3sfile on disk to the running stack (the run: it loads, validates and
    chooses ports); `digest` names the file's text the stack runs now."""

    digest: str

    async def apply(self) -> dict[str, Any]: ...


class ControlServer:
    """The routes of the control API over one supervisor (docs/api.md)."""

    def __init__(
        self,
        supervisor: SupervisorLike,
        hub: LogHub,
        on_down: Callable[[], None],
        applier: Applier | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.hub = hub
        self.on_down = on_down
        self.applier = applier
        self.started_at = time.time()

    @property
    def config(self) -> DevConfig:
        return self.supervisor.config

    def app(self) -> web.Application:
        app = web.Application()
        v = API_VERSION
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get(f"/{v}/status", self.status)
        app.router.add_get(f"/{v}/plan", self.plan)
        app.router.add_post(f"/{v}/start", self.start)
        app.router.add_post(f"/{v}/stop", self.stop)
        app.router.add_post(f"/{v}/restart", self.restart)
        app.router.add_post(f"/{v}/down", self.down)
        app.router.add_post(f"/{v}/apply", self.apply)
        app.router.add_get(f"/{v}/logs", self.logs)
        app.router.add_get(f"/{v}/tail", self.tail)
        app.router.add_get(f"/{v}/env", self.env)
        app.router.add_get(f"/{v}/attach", self.attach)
        return app

    # ------------------------------------------------------------------ helpers

    def services_json(self) -> list[dict[str, Any]]:
        now = time.time()
        project = self.config.project
        return [status_row(s, now, project) for s in self.supervisor.snapshot()]

    @staticmethod
    async def body_of(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            data = await request.json()
        except ValueError:
            raise _BadRequest("body is not JSON") from None
        if not isinstance(data, dict):
            raise _BadRequest("body must be a JSON object")
        return data

    def known(self, names: Iterable[str], *, own: bool = False) -> list[str]:
        """`names`, or 404 naming the first unknown one (`a3s`, a3s's own log, with `own`)."""
        found = list(names)
        error = unknown_service((n for n in found if not (own and n == "a3s")), self.config.names)
        if error is not None:
            raise _NotFound(error.message)
        return found

    def names_of(self, data: dict[str, Any]) -> list[str] | None:
        names = data.get("services")
        if names is None or names == []:
            return None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _BadRequest("services must be a list of names")
        return self.known(names)

    async def wanted(self, names: list[str] | None, deps: bool) -> list[str]:
        """What `start` with these names asks for: everything, the names, or them and their dependencies."""
        if names is None:
            return self.config.eager  # a lazy service waits for its first request
        return (await self.supervisor.plan()).closure(names) if deps else names

    async def wait_ready(self, names: list[str], timeout: float, since: float | None = None) -> dict[str, Any]:
        """Until `names` are all ready or one failed (woken by the supervisor's changes); the outcome."""

        def settled() -> bool:
            result = readiness(self.services_json(), names, since)
            return result.done or result.failed is not None

        await self.supervisor.wait_until(settled, timeout)
        result = readiness(self.services_json(), names, since)
        payload: dict[str, Any] = {"ok": result.done, "failed": result.failed, "reason": result.reason}
        if not result.done and not result.failed:
            first = result.waiting[0] if result.waiting else (names[0], "unknown")
            payload.update(failed=first[0], reason=f"not ready after {timeout:g}s (state {first[1]})")
        if payload["failed"]:
            payload["tail"] = self.supervisor.tail(payload["failed"], 20)
        payload["services"] = self.services_json()
        return payload

    # ------------------------------------------------------------------ routes

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def status(self, request: web.Request) -> web.Response:
        # `after=N&wait=S`: answer once something changed since change N (or after S seconds),
        # so a waiting client sees each change at once without polling.
        after = request.query.get("after")
        if after is not None and parse_count(after.removeprefix("-")) is None:
            raise _BadRequest(f"after must be a whole number, got {json.dumps(after)}")
        wait = _number(request.query.get("wait"), "wait", default=10.0, high=60.0)
        if after is not None and self.hub.seq <= int(after):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.hub.changed.wait(), wait)
        return web.json_response(
            {
                "pid": os.getpid(),
                "file": str(self.config.path),
                "project": self.config.project,
                "started_at": self.started_at,
                "seq": self.hub.seq,
                "applied": self.applier.digest if self.applier is not None else None,
                "services": self.services_json(),
                "warnings": self.supervisor.standing_warnings(),
            }
        )

    async def apply(self, request: web.Request) -> web.Response:
        """Apply the A3sfile on disk (SPEC §16): `{"ok", "errors", "changes"}`; invalid: nothing touched."""
        if self.applier is None:
            raise _NotFound("this supervisor cannot apply a changed A3sfile")
        return web.json_response(await self.applier.apply())

    async def plan(self, request: web.Request) -> web.Response:
        """What `start` with these services would wait for, starting nothing (`up -d` waits on it)."""
        names = self.known(request.query.getall("service", [])) or None
        deps = _flag(request.query.get("deps"), "deps", default=True)
        return web.json_response({"waiting_for": await self.wanted(names, deps), "services": self.services_json()})

    async def start(self, request: web.Request) -> web.Response:
        data = await self.body_of(request)
        names = self.names_of(data)
        deps = _flag(data.get("deps"), "deps", default=True)
        wait = _flag(data.get("wait"), "wait", default=False)
        timeout = _number(data.get("timeout"), "timeout", default=300.0)
        requested_at = time.time()
        wanted = await self.wanted(names, deps)
        named = set(names or ())
        # SPEC §8: what is `stopped` starts; a failed task (oneshot) only when it is named, so a
        # migration that is not idempotent never runs twice; a completed task never again.
        to_start = []
        for name in wanted:
            status = self.supervisor.status(name)
            if status.state is ServiceState.COMPLETED:
                continue
            if status.state is ServiceState.FAILED and self.config.service(name).oneshot and name not in named:
                continue
            to_start.append(name)
        if to_start:
            await self.supervisor.start(to_start, deps=False)  # the closure is ours already
        answer: dict[str, Any] = {"waiting_for": wanted, "requested_at": requested_at}
        if wait:
            answer.update(await self.wait_ready(wanted, timeout, requested_at))
        else:
            answer["services"] = self.services_json()
        return web.json_response(answer)

    async def stop(self, request: web.Request) -> web.Response:
        names = self.names_of(await self.body_of(request))
        cause = f"a3s down {' '.join(names)}" if names else "a3s down"
        await self.supervisor.stop(names, cause=cause)
        return web.json_response({"services": self.services_json()})

    async def restart(self, request: web.Request) -> web.Response:
        data = await self.body_of(request)
        names = self.names_of(data)
        if names is None:
            raise _BadRequest("restart needs at least one service")
        wait = _flag(data.get("wait"), "wait", default=True)
        timeout = _number(data.get("timeout"), "timeout", default=60.0)
        requested_at = time.time()
        for name in names:
            await self.supervisor.restart(name)
        if not wait:
            return web.json_response({"services": self.services_json()})
        return web.json_response(await self.wait_ready(names, timeout, requested_at))

    async def down(self, request: web.Request) -> web.Response:
        self.on_down()
        return web.json_response({"status": "stopping", "pid": os.getpid()}, status=202)

    async def attach(self, request: web.Request) -> web.StreamResponse:
        """A terminal for an interactive service (docs/api.md): a WebSocket whose binary messages
        are keys in and the service's raw output out (its last 4 KB first, so the prompt shows),
        and whose text messages `{"resize": [rows, columns]}` follow the window. It ends when
        the client goes or the service's process exits."""
        name = self.known([request.query.get("service", "")])[0]
        try:
            proc = self.supervisor.terminal(name)
        except RuntimeFailure as exc:
            raise _Conflict(exc.message) from None
        if request.query.get("check"):  # the client asks before it makes its terminal raw
            return web.json_response({"ok": True})
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        output: asyncio.Queue[bytes] = asyncio.Queue(ATTACH_BACKLOG)

        def tap(data: bytes) -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a stalled terminal loses output, never the service
                output.put_nowait(data)

        async def relay() -> None:
            await ws.send_bytes(bytes(proc.recent))
            while True:
                await ws.send_bytes(await output.get())

        async def until_exit() -> None:
            await proc.wait()
            while not output.empty():
                await ws.send_bytes(output.get_nowait())
            await ws.close(message=f"{name} exited".encode())

        proc.taps.append(tap)
        tasks = [asyncio.ensure_future(relay()), asyncio.ensure_future(until_exit())]
        try:
            async for message in ws:
                if message.type == WSMsgType.BINARY:
                    proc.write_input(message.data)
                elif message.type == WSMsgType.TEXT:
                    with contextlib.suppress(ValueError, TypeError, KeyError):
                        rows, columns = json.loads(message.data)["resize"]
                        proc.resize(int(rows), int(columns))
        finally:
            with contextlib.suppress(ValueError):
                proc.taps.remove(tap)
            for task in tasks:
                task.cancel()
        return ws

    async def env(self, request: web.Request) -> web.Response:
        """A service's environment and folder exactly as the supervisor gives them to it (its
        automatic ports included): what `a3s run SVC` runs a command with."""
        name = self.known([request.query.get("service", "")])[0]
        defn = self.config.service(name)
        try:
            env = await asyncio.to_thread(service_env, defn, self.config)
        except RuntimeFailure as exc:  # an env_file that cannot be read
            raise _BadRequest(exc.message) from None
        return web.json_response({"service": name, "dir": str(defn.dir), "depends_on": list(defn.depends_on), "env": env,
                                  "image": defn.image})

    async def tail(self, request: web.Request) -> web.Response:
        # From the supervisor, which keeps every service's last lines from its first spawn
        # (the log stream's history starts only when this API was attached).
        name = self.known([request.query.get("service", "")], own=True)[0]
        n = _count(request.query.get("n"), "n", default=20)
        assert n is not None
        return web.json_response({"service": name, "lines": self.supervisor.tail(name, n)})

    async def metrics(self, request: web.Request) -> web.Response:
        snapshot = self.supervisor.snapshot()
        failures = {s.name: self.supervisor.health_failures(s.name) for s in snapshot}
        return web.Response(
            text=render_metrics(snapshot, failures),
            content_type="text/plain",
            headers={"X-Content-Type-Options": "nosniff"},
            charset="utf-8",
        )

    async def logs(self, request: web.Request) -> web.StreamResponse:
        wanted = self.known(request.query.getall("service", []), own=True)
        n = _count(request.query.get("n"), "n", default=None)
        follow = _flag(request.query.get("follow"), "follow", default=False)
        only = set(wanted) or None
        follower = Follower()
        if follow and len(self.hub.followers) >= MAX_FOLLOWERS:
            raise _Busy(f"{MAX_FOLLOWERS} log streams are open already; close one (each holds memory)")
        # Subscribe before taking the history so no line falls between the two.
        since = time.time()
        if follow:
            self.hub.followers.add(follower)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        try:
            await response.prepare(request)
            await response.write(json.dumps({"since": since}).encode() + b"\n")
            for line in self.hub.history(only, n):
                await response.write(json.dumps(log_dict(line)).encode() + b"\n")
            while follow:
                got = await follower.next()
                if got is None:
                    break
                note, new = got
                if note is not None:
                    await response.write(json.dumps(log_dict(note)).encode() + b"\n")
                if only is None or new.service in only:
                    await response.write(json.dumps(log_dict(new)).encode() + b"\n")
            await response.write_eof()
            return response
        except ConnectionResetError:  # the client left (Ctrl-C on `a3s logs -f`): nothing to say
            return response
        finally:
            self.hub.followers.discard(follower)


async def serve_control(
    supervisor: SupervisorLike,
    *,
    bind: Callable[[], socket.socket],
    path: Path,
    applier: Applier | None = None,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control API on the Unix socket `bind()` gives (listening at `path`) until
    cancelled; then remove the socket file.

    The caller holds the supervisor lock (run.workspace.SupervisorLock), so `bind` may replace
    a stale file. `down` calls `supervisor.shutdown()`; the run ends this task once the
    supervisor has stopped.
    """
    hub = LogHub()
    # LogBatch rather than LogLine: a service printing 500k lines costs a few calls, not 500k.
    unsubscribe = supervisor.bus.subscribe(hub.on_event, (StateChanged, HealthChanged, ProbeChanged, LogBatch))
    async with anyio.create_task_group() as tg:

        def on_down() -> None:
            tg.start_soon(supervisor.shutdown, "a3s down")

        app = ControlServer(supervisor, hub, on_down, applier).app()
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        sock = bind()
        # A socket fd's own inode is sockfs's, so remember the file's to recognise it later.
        bound_ino = os.stat(path).st_ino
        try:
            await web.SockSite(runner, sock).start()
            task_status.started()
            await anyio.sleep_forever()
        finally:
            unsubscribe()
            with anyio.CancelScope(shield=True):
                # Remove the socket first: from here on, clients see "not running".
                with contextlib.suppress(OSError):
                    if os.stat(path).st_ino == bound_ino:
                        os.unlink(path)
                hub.close()
                await runner.cleanup()
                sock.close()

