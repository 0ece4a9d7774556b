"""Helpers for the proxy tests: an aiohttp upstream run as a child process and a fake backend."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from support import kill_group, port_open, wait_until

from a3s_dev.config.model import DevConfig, ServiceDef
from a3s_dev.core.events import EventBus, StateChanged
from a3s_dev.core.state import ServiceState, ServiceStatus
from a3s_dev.proxy.direct import ProxyCounts
from a3s_dev.proxy.server import serve_proxy

# Endpoints: /headers (JSON of the request), /hash (sha256 of a streamed body), /sse (a
# never-ending event stream), /ws (echo; "close:<code>" closes with that code and "bye"),
# /ws-closes (the close frames /ws received), /big (1 MB),
# anything else: "hello from NAME pid PID".
UPSTREAM = textwrap.dedent(
    """
    import asyncio, hashlib, json, os
    from aiohttp import web, WSMsgType

    NAME = os.environ.get("NAME", "svc")

    async def headers(request):
        return web.json_response({"headers": [[k, v] for k, v in request.headers.items()],
                                  "path": request.path_qs, "method": request.method,
                                  "peer": request.transport.get_extra_info("peername")[1]})

    async def nocontent(request):
        return web.Response(status=204)

    async def hashed(request):
        h = hashlib.sha256(); n = 0
        async for chunk in request.content.iter_any():
            h.update(chunk); n += len(chunk)
        return web.json_response({"sha256": h.hexdigest(), "size": n})

    async def sse(request):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        i = 0
        while True:
            await resp.write(f"data: event {i}\\n\\n".encode())
            i += 1
            await asyncio.sleep(30)

    CLOSES = []  # (code, reason) of every close frame the proxy sent us

    async def ws(request):
        sock = web.WebSocketResponse(protocols=("chat",), autoclose=False)
        await sock.prepare(request)
        while True:
            msg = await sock.receive()
            if msg.type == WSMsgType.TEXT and msg.data.startswith("close:"):
                await sock.close(code=int(msg.data[6:]), message=b"bye")
            elif msg.type == WSMsgType.TEXT:
                await sock.send_str("echo " + msg.data)
            elif msg.type == WSMsgType.BINARY:
                await sock.send_bytes(b"echo " + msg.data)
            elif msg.type == WSMsgType.CLOSE:
                CLOSES.append([msg.data, msg.extra])
                await sock.close()
                break
            else:
                CLOSES.append(["no close frame", str(msg.type)])
                break
        return sock

    async def closes(request):
        return web.json_response(CLOSES)

    async def big(request):
        return web.Response(body=b"x" * (1024 * 1024))

    async def hello(request):
        return web.Response(text=f"hello from {NAME} pid {os.getpid()}\\n")

    app = web.Application(client_max_size=1024 ** 3)
    app.router.add_get("/headers", headers)
    app.router.add_post("/hash", hashed)
    app.router.add_get("/sse", sse)
    app.router.add_get("/ws", ws)
    app.router.add_get("/ws-closes", closes)
    app.router.add_get("/big", big)
    app.router.add_get("/nocontent", nocontent)
    app.router.add_route("*", "/{tail:.*}", hello)
    print(f"{NAME} listening", flush=True)
    web.run_app(app, host="127.0.0.1", port=int(os.environ["PORT"]), print=None, access_log=None)
    """
)


@dataclass
class Upstream:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        kill_group(self.proc.pid)
        self.proc.wait(timeout=10)


@contextmanager
def upstream(folder: Path, name: str, port: int) -> Iterator[Upstream]:
    """Run the aiohttp upstream as a child in its own process group; always killed on exit."""
    script = folder / "upstream.py"
    if not script.exists():
        script.write_text(UPSTREAM)
    up = start_upstream(script, name, port)
    try:
        yield up
    finally:
        up.stop()


def start_upstream(script: Path, name: str, port: int) -> Upstream:
    env = {**os.environ, "PORT": str(port), "NAME": name}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open(port) or proc.poll() is not None, timeout=20, message=f"{name} on {port}")
        assert proc.poll() is None, f"upstream {name} exited with {proc.returncode}"
    except BaseException:
        kill_group(proc.pid)
        raise
    return Upstream(name, port, proc)


def svc(name: str, port: int | None, subdomain: str | None = None) -> ServiceDef:
    return ServiceDef(name=name, cmd="true", dir=Path("."), port=port, subdomain=subdomain)


@dataclass
class FakeBackend:
    """What the proxy needs of the Supervisor: config, bus, status(), tail()."""

    config: DevConfig
    bus: EventBus = field(default_factory=EventBus)
    states: dict[str, ServiceState] = field(default_factory=dict)
    logs: dict[str, list[str]] = field(default_factory=dict)
    announced: list[str] = field(default_factory=list)
    proxy_counts: ProxyCounts = field(default_factory=ProxyCounts)  # handed to the proxy by running_proxy
    asked: list[tuple[str, ServiceState]] = field(default_factory=list)  # each status() answer, in order
    woken: list[str] = field(default_factory=list)  # the idle services the proxy asked to start
    used: list[tuple[str, int | None]] = field(default_factory=list)  # what the proxy said it forwarded

    def status(self, name: str) -> ServiceStatus:
        svc = self.config.service(name)
        state = self.states.get(name, ServiceState.RUNNING)
        self.asked.append((name, state))
        return ServiceStatus(name, state, port=svc.port, url=svc.url)

    def tail(self, name: str, n: int = 20) -> list[str]:
        return self.logs.get(name, [])[-n:]

    def wake_up(self, name: str) -> None:
        self.woken.append(name)

    def traffic(self, name: str, open_sockets: int | None = None) -> None:
        self.used.append((name, open_sockets))

    def announce(self, text: str) -> None:
        self.announced.append(text)

    def set_state(self, name: str, new: ServiceState) -> None:
        old = self.states.get(name, ServiceState.RUNNING)
        self.states[name] = new
        self.bus.publish(StateChanged(name, old, new, None, time.time()))


def backend_for(*services: ServiceDef) -> FakeBackend:
    return FakeBackend(DevConfig(path=Path("/tmp/shop/A3sfile.hcl"), services=services))


@asynccontextmanager
async def running_proxy(
    backend: object, *, hold_timeout: float = 30.0, idle_timeout: float = 75.0
) -> AsyncIterator[int]:
    """Serve the proxy on an OS-assigned port for the duration of the block; yields the port."""
    async with anyio.create_task_group() as tg:
        counts = getattr(backend, "proxy_counts", None)
        port = await tg.start(lambda task_status: serve_proxy(backend, 0, counts=counts, hold_timeout=hold_timeout,  # type: ignore[arg-type]
                                                              idle_timeout=idle_timeout, task_status=task_status))
        try:
            yield port
        finally:
            tg.cancel_scope.cancel()
