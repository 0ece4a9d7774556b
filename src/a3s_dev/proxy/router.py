"""Where a request goes: the `Router` (Host header -> route) and the hold-until-ready `verdict`.

Pure: no sockets, no event loop; tested in microseconds.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from a3s_dev.config.model import DevConfig, ServiceDef
from a3s_dev.core.state import ServiceState

INDEX_HOSTS = frozenset({"localhost", "a3s.localhost", "127.0.0.1", "::1"})
LOCALHOST_SUFFIX = ".localhost"


class RouteKind(str, enum.Enum):
    UPSTREAM = "upstream"  # forward to 127.0.0.1:port
    INDEX = "index"  # localhost / a3s.localhost: the list of services
    UNKNOWN = "unknown"  # no service answers to this host: 404 with the routes
    NOT_ROUTABLE = "not-routable"  # the service exists but has no port to forward to
    NOT_HTTP = "not-http"  # the service says `proxy = false` (a database): never sent HTTP


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

    def __init__(self, services: Iterable[ServiceDef], project: str | None = None) -> None:
        """`project`: the project's name; then `<subdomain>.<project>.localhost` routes too."""
        self.project = project
        table: dict[str, RouteEntry] = {}
        by_name: dict[str, ServiceDef] = {}
        for svc in services:
            by_name[svc.name.lower()] = svc
            if svc.proxy is False and svc.subdomain:
                by_name[svc.subdomain.lower()] = svc
            if svc.port is None or svc.proxy is False:
                continue
            sub = (svc.subdomain or svc.name).lower()
            table[sub] = RouteEntry(sub, svc.name, svc.port)
        self._table = table
        self._by_name = by_name
        self._cache: dict[str | None, Route] = {}

    @classmethod
    def from_config(cls, config: DevConfig) -> Router:
        return cls(config.services, config.project)

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
        if self.project and sub.endswith(f".{self.project}"):
            sub = sub[: -len(self.project) - 1]  # <subdomain>.<project>.localhost
        elif self.project and sub == self.project:
            return Route(RouteKind.INDEX)  # <project>.localhost: this project's page
        entry = self._table.get(sub)
        if entry is not None:
            return Route(RouteKind.UPSTREAM, entry.service, entry.port, entry.subdomain)
        svc = self._by_name.get(sub)
        if svc is not None and svc.proxy is False:
            return Route(RouteKind.NOT_HTTP, svc.name, svc.port, sub)
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
