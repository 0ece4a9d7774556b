"""Health probes behind one small Protocol, and the registry that maps a probe kind to its factory.

Adding a kind is one class plus one `register_probe` call; the supervisor only ever asks
`make_probe(service, resources)` and calls `check()`.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from a3s_dev.config.model import HealthConfig, ProbeKind, ServiceDef

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str = ""  # why it failed ("connection refused", "HTTP 500")


class HealthProbe(Protocol):
    """Answers one question, once per call: is the service healthy right now?"""

    async def check(self) -> ProbeResult: ...


class ProbeResources:
    """What probes share for the supervisor's lifetime: one httpx client, created on first use.

    httpx is imported only here, so a stack with only TCP probes never pays for it.
    """

    def __init__(self) -> None:
        self._http: httpx.AsyncClient | None = None

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
    """Healthy when a TCP connection to 127.0.0.1:port is accepted within `timeout`.

    A raw non-blocking connect awaited with anyio: no resolver thread for an IP literal,
    so the fast start-up cadence (every few ms) stays cheap.
    """

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout

    @classmethod
    def create(cls, service: ServiceDef, cfg: HealthConfig, resources: ProbeResources) -> TcpProbe:
        if service.port is None:
            raise ValueError(f"service {service.name}: a tcp probe needs a port")
        return cls(service.port, cfg.timeout)

    async def check(self) -> ProbeResult:
        import anyio

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            err = sock.connect_ex(("127.0.0.1", self.port))
            if err in (errno.EINPROGRESS, errno.EAGAIN):
                with anyio.move_on_after(self.timeout):
                    await anyio.wait_writable(sock)
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err == 0:
                        return ProbeResult(True)
                if err in (errno.EINPROGRESS, errno.EAGAIN):
                    return ProbeResult(False, f"tcp connect timed out after {self.timeout:g}s")
            if err == 0:
                return ProbeResult(True)
            return ProbeResult(
                False, f"tcp port {self.port}: {errno.errorcode.get(err, err)} ({_strerror(err)})"
            )
        finally:
            sock.close()


def _strerror(err: int) -> str:
    import os

    return os.strerror(err).lower()


class HttpProbe:
    """Healthy on a 2xx or 3xx answer to GET http://127.0.0.1:port/path within `timeout`."""

    def __init__(
        self, url: str, timeout: float, resources: ProbeResources, port: int | None = None
    ) -> None:
        self.url = url
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
        return cls(f"http://127.0.0.1:{service.port}{path}", cfg.timeout, resources, service.port)

    async def check(self) -> ProbeResult:
        if self._gate is not None:
            gate = await self._gate.check()
            if not gate.ok:
                return ProbeResult(False, f"GET {self.url}: {gate.detail}")
        import httpx

        client = self._resources.http_client()
        try:
            response = await client.get(self.url, timeout=self.timeout)
        except httpx.TimeoutException:
            return ProbeResult(False, f"GET {self.url} timed out after {self.timeout:g}s")
        except httpx.HTTPError as exc:
            return ProbeResult(False, f"GET {self.url}: {type(exc).__name__} {exc}".rstrip())
        if 200 <= response.status_code < 400:
            return ProbeResult(True)
        return ProbeResult(False, f"GET {self.url}: HTTP {response.status_code}")


register_probe(ProbeKind.TCP, TcpProbe.create)
register_probe(ProbeKind.HTTP, HttpProbe.create)
