"""Health probes behind one small Protocol, and the registry that maps a probe kind to its factory.

Adding a kind is one class plus one `register_probe` call; the supervisor only ever asks
`make_probe(service, resources)` and calls `check()`.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from a3s_dev.config.model import HealthConfig, ProbeKind, ServiceDef
from a3s_dev.core.process import signal_group

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str = ""  # what it saw, for status and the error page: "GET /health → 500", "connection refused"
    # The service itself answered (an HTTP status, a command that ran): probing it again at
    # once would only fill its log, so the start-up cadence slows down (supervisor.Cadence).
    reached: bool = False


class HealthProbe(Protocol):
    """Answers one question, once per call: is the service healthy right now?"""

    async def check(self) -> ProbeResult: ...


class ProbeResources:
    """What probes share for the supervisor's lifetime: one httpx client, created on first use.

    httpx is imported only here, so a stack with only TCP probes never pays for it.
    """

    def __init__(
        self,
        env_for: Callable[[ServiceDef], dict[str, str]] | None = None,
        inside: Callable[[ServiceDef, str], list[str]] | None = None,
    ) -> None:
        self._http: httpx.AsyncClient | None = None
        self.env_for = env_for  # a service's environment (cmd probes run with it)
        self.inside = inside  # the command line that runs a command in a service's container

    def http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx

            # No redirects followed: a 3xx answer already means the server is up.
            self._http = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


ProbeFactory = Callable[[ServiceDef, HealthConfig, ProbeResources], HealthProbe]
_REGISTRY: dict[Any, ProbeFactory] = {}


def register_probe(kind: ProbeKind | str, factory: ProbeFactory) -> None:
    """Make `kind` (a ProbeKind or its string value) build probes with `factory`."""
    _REGISTRY[kind.value if isinstance(kind, ProbeKind) else kind] = factory


def make_probe(service: ServiceDef, resources: ProbeResources) -> HealthProbe | None:
    """The probe that gates `service`'s readiness, or None when it is ready once spawned."""
    cfg = service.probe
    if cfg is None:
        return None
    kind = cfg.type.value if isinstance(cfg.type, ProbeKind) else str(cfg.type)
    try:
        factory = _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"no health probe registered for type {kind!r}") from None
    return factory(service, cfg, resources)


class TcpProbe:
    """Healthy when a TCP connection to the service's port on the loopback is accepted within
    `timeout`: 127.0.0.1, else ::1 (a Node dev server binds `localhost`, which is ::1 first on
    macOS); the address that answered is remembered (`host`) and tried first next time.

    A raw non-blocking connect awaited with anyio: no resolver thread for an IP literal,
    so the fast start-up cadence (every few ms) stays cheap.
    """

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self.host = "127.0.0.1"

    @classmethod
    def create(cls, service: ServiceDef, cfg: HealthConfig, resources: ProbeResources) -> TcpProbe:
        if service.port is None:
            raise ValueError(f"service {service.name}: a tcp probe needs a port")
        return cls(service.port, cfg.timeout)

    async def check(self) -> ProbeResult:
        first = await self._connect(self.host)
        if first.ok or first.detail != "connection refused":
            return first
        other = "::1" if self.host == "127.0.0.1" else "127.0.0.1"
        second = await self._connect(other)
        if second.ok:
            self.host = other
            return second
        return first

    async def _connect(self, host: str) -> ProbeResult:
        import anyio

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:  # no IPv6 on this host
            return ProbeResult(False, _strerror(exc.errno or errno.EAFNOSUPPORT))
        try:
            sock.setblocking(False)
            err = sock.connect_ex((host, self.port))
            if err in (errno.EINPROGRESS, errno.EAGAIN):
                with anyio.move_on_after(self.timeout):
                    await anyio.wait_writable(sock)
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err == 0:
                        return ProbeResult(True, "connected")
                if err in (errno.EINPROGRESS, errno.EAGAIN):
                    return ProbeResult(False, f"connect timed out after {self.timeout:g}s")
            if err == 0:
                return ProbeResult(True, "connected")
            if err in (errno.EADDRNOTAVAIL, errno.ENETUNREACH, errno.EAFNOSUPPORT):
                return ProbeResult(False, "connection refused")  # no ::1 here: as good as nobody
            return ProbeResult(False, _strerror(err))
        finally:
            sock.close()


def _strerror(err: int) -> str:
    return os.strerror(err).lower()


def _user_agent() -> str:
    from a3s_dev import __version__

    return f"a3s-health/{__version__}"


# Sent by every HTTP probe, so that a service's access log can leave its probes out.
USER_AGENT = _user_agent()


class HttpProbe:
    """Healthy on a 2xx or 3xx answer to GET http://127.0.0.1:port/path within `timeout`."""

    def __init__(
        self, url: str, timeout: float, resources: ProbeResources, port: int | None = None, path: str = "/"
    ) -> None:
        self.url = url
        self.path = path
        self.timeout = timeout
        self._resources = resources
        # A raw connect first: while the service starts it is polled every few ms, and a
        # refused connect costs microseconds where an httpx request costs a millisecond.
        self._gate = TcpProbe(port, timeout) if port is not None else None

    @classmethod
    def create(cls, service: ServiceDef, cfg: HealthConfig, resources: ProbeResources) -> HttpProbe:
        if service.port is None:
            raise ValueError(f"service {service.name}: an http probe needs a port")
        path = cfg.path if cfg.path.startswith("/") else "/" + cfg.path
        return cls(f"http://127.0.0.1:{service.port}{path}", cfg.timeout, resources, service.port, path)

    async def check(self) -> ProbeResult:
        url = self.url
        if self._gate is not None:
            gate = await self._gate.check()
            if not gate.ok:
                return gate  # "connection refused": nothing listens yet
            if self._gate.host != "127.0.0.1":  # it listens on ::1 only
                url = url.replace("://127.0.0.1:", f"://[{self._gate.host}]:", 1)
        import httpx

        client = self._resources.http_client()
        try:
            response = await client.get(url, timeout=self.timeout, headers={"User-Agent": USER_AGENT})
        except httpx.TimeoutException:
            return ProbeResult(False, f"GET {self.path} timed out after {self.timeout:g}s")
        except httpx.HTTPError as exc:
            return ProbeResult(False, f"GET {self.path}: {type(exc).__name__} {exc}".rstrip())
        return ProbeResult(200 <= response.status_code < 400, f"GET {self.path} → {response.status_code}", True)


class CmdProbe:
    """Healthy when `command` (run by /bin/sh -c in the service's dir, with its environment)
    exits 0 within `timeout`. Its output is the probe result, never the service's log; its
    process group is killed once it is done or over time."""

    def __init__(self, command: str, cwd: str, env: dict[str, str] | None, timeout: float,
                 argv: list[str] | None = None) -> None:
        self.command = command
        self.argv = argv or ["/bin/sh", "-c", command]
        self.cwd = cwd
        self.env = env
        self.timeout = timeout
        self.name = command.split()[0] if command.split() else command

    @classmethod
    def create(cls, service: ServiceDef, cfg: HealthConfig, resources: ProbeResources) -> CmdProbe:
        assert cfg.command is not None  # validation requires it
        env = resources.env_for(service) if resources.env_for is not None else None
        if cfg.in_container and resources.inside is not None:  # `runtime exec` in its container
            return cls(cfg.command, str(service.dir), None, cfg.timeout, resources.inside(service, cfg.command))
        return cls(cfg.command, str(service.dir), env, cfg.timeout)

    async def check(self) -> ProbeResult:
        import signal
        import subprocess

        import anyio

        try:
            proc = await anyio.open_process(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: killed whole, grandchildren included
            )
        except OSError as exc:
            return ProbeResult(False, f"{self.name} could not start ({exc.strerror or exc})")
        output = b""
        try:
            with anyio.move_on_after(self.timeout) as scope:
                assert proc.stdout is not None
                async for chunk in proc.stdout:
                    output = (output + chunk)[-4096:]
                await proc.wait()
            if scope.cancelled_caught:
                return ProbeResult(False, f"{self.name} did not finish within {self.timeout:g}s", True)
        finally:
            with anyio.CancelScope(shield=True):
                signal_group(proc.pid, signal.SIGKILL)  # what it started, too
                await proc.wait()
                await proc.aclose()
        last = output.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        said = f": {last[0][:200]}" if last[0] else ""
        code = proc.returncode
        if code == 0:
            return ProbeResult(True, f"{self.name} exited 0{said}", True)
        return ProbeResult(False, f"{self.name} exited {code}{said}", True)


class LogProbe:
    """Healthy from the first output line of the current run that matches `pattern`; it says
    nothing after that (no liveness). The supervisor feeds it every line (`feed`)."""

    WAIT = 0.25  # one check waits this long for the line, so readiness is seen when it comes

    def __init__(self, pattern: str) -> None:
        import re

        self.pattern = pattern
        self._regex = re.compile(pattern)
        self._seen: Any = None  # anyio.Event, made in the loop's thread on first use
        self.matched = False

    @classmethod
    def create(cls, service: ServiceDef, cfg: HealthConfig, resources: ProbeResources) -> LogProbe:
        assert cfg.pattern is not None  # validation requires it
        return cls(cfg.pattern)

    def feed(self, lines: list[str]) -> None:
        if self.matched:
            return
        if any(self._regex.search(line) for line in lines):
            self.matched = True
            if self._seen is not None:
                self._seen.set()

    async def check(self) -> ProbeResult:
        import anyio

        if not self.matched:
            if self._seen is None:
                self._seen = anyio.Event()
            with anyio.move_on_after(self.WAIT):
                await self._seen.wait()
        if self.matched:
            return ProbeResult(True, f"saw /{self.pattern}/", True)
        return ProbeResult(False, f"waiting for /{self.pattern}/")


register_probe(ProbeKind.TCP, TcpProbe.create)
register_probe(ProbeKind.HTTP, HttpProbe.create)
register_probe(ProbeKind.CMD, CmdProbe.create)
register_probe(ProbeKind.LOG, LogProbe.create)
