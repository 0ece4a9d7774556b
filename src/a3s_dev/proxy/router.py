"""Where a request goes: the `Router` (Host header -> route) and the hold-until-ready `verdict`.

Pure: no sockets, no event loop; tested in microseconds.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from a3s_dev.config.model import ServiceDef
from a3s_dev.core.state import ServiceState
from a3s_dev.link.addresses import RouteEntry, routed

INDEX_HOSTS = frozenset({"localhost", "a3s.localhost", "127.0.0.1", "::1"})
LOCALHOST_SUFFIX = ".localhost"


class RouteKind(str, enum.Enum):
    UPSTREAM = "upstream"  # forward to 127.0.0.1:port
    INDEX = "index"  # localhost / a3s.localhost: every project and its services
    UNKNOWN = "unknown"  # no service answers to this host: 404 with the routes
    NOT_ROUTABLE = "not-routable"  # the service exists but has no port to forward to
    NOT_HTTP = "not-http"  # the service says `proxy = false` (a database): never sent HTTP
    AMBIGUOUS = "ambiguous"  # <subdomain>.localhost while several projects have it: 409, choices
    PROJECT_GONE = "project-gone"  # the host belongs to a project whose supervisor ended
    FOREIGN = "foreign"  # not *.localhost nor loopback, or not a host at all: no page, no routes (421)


@dataclass(frozen=True, slots=True)
class Route:
    """Where one Host header leads."""

    kind: RouteKind
    service: str | None = None
    port: int | None = None
    subdomain: str | None = None
    project: str = ""
    choices: tuple[RouteEntry, ...] = ()  # AMBIGUOUS: every project's entry for the subdomain


HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")  # a service name may hold "_"
FOREIGN_HOST = "-"  # what a Host header that is not `name[:port]` normalizes to


def normalize_host(host: str | None) -> str:
    """The host part of a Host header, lower-cased, without port, brackets or trailing dot;
    FOREIGN_HOST when it is not `name[:port]` with a numeric port."""
    if not host:
        return ""
    host = host.strip().lower()
    if host.startswith("["):  # IPv6 literal, maybe with a port: [::1]:7080
        end = host.find("]")
        rest = host[end + 1 :] if end != -1 else ""
        if end == -1 or (rest and not (rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit())):
            return FOREIGN_HOST
        return host[1:end]
    if host.count(":") == 1:
        host, port = host.split(":", 1)
        if not (port.isascii() and port.isdigit()):
            return FOREIGN_HOST
    return host.rstrip(".")


class _Table:
    """One project's routes: subdomain -> entry, and every name a host may use for a service."""

    def __init__(self, project: str, services: Iterable[ServiceDef]) -> None:
        services = list(services)
        self.routes = {entry.subdomain: entry for entry in routed(project, services)}
        self.by_name: dict[str, ServiceDef] = {}
        for svc in services:
            self.by_name[svc.name.lower()] = svc
            if svc.proxy is False and svc.subdomain:
                self.by_name[svc.subdomain.lower()] = svc

    def route(self, sub: str, project: str) -> Route | None:
        entry = self.routes.get(sub)
        if entry is not None:
            return Route(RouteKind.UPSTREAM, entry.service, entry.port, entry.subdomain, project)
        svc = self.by_name.get(sub)
        if svc is not None and svc.proxy is False:
            return Route(RouteKind.NOT_HTTP, svc.name, svc.port, sub, project)
        if svc is not None and svc.port is None:
            return Route(RouteKind.NOT_ROUTABLE, svc.name, None, sub, project)
        return None


class Router:
    """Host header -> `Route`, for every running project (SPEC §6). Built anew whenever a
    project comes or goes; results are cached per raw header value.

    `<subdomain>.<project>.localhost` always names one service; `<subdomain>.localhost` does
    while exactly one project has that subdomain (else AMBIGUOUS, with the choices);
    `departed` maps projects whose supervisor ended to their subdomains, so their hosts say
    so instead of "unknown host".
    """

    _CACHE_LIMIT = 4096

    def __init__(
        self,
        projects: Mapping[str, Iterable[ServiceDef]],
        departed: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self._tables = {name: _Table(name, services) for name, services in projects.items()}
        self._departed = {name: frozenset(subs) for name, subs in (departed or {}).items() if name not in projects}
        self._cache: dict[str | None, Route] = {}

    @property
    def projects(self) -> list[str]:
        return list(self._tables)

    @property
    def entries(self) -> list[RouteEntry]:
        """The routing table: projects in registration order, services in declaration order."""
        return [e for table in self._tables.values() for e in table.routes.values()]

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
        if not host:
            return Route(RouteKind.UNKNOWN)  # no Host header at all (HTTP/1.0)
        if not host.endswith(LOCALHOST_SUFFIX) or not HOST_NAME.match(host):
            # A DNS-rebinding page, or a Host made to smuggle another (`x.localhost:1@evil`):
            # nothing to learn here, not even the routes.
            return Route(RouteKind.FOREIGN)
        name = host[: -len(LOCALHOST_SUFFIX)]
        sub, dot, project = name.rpartition(".")
        if dot:  # <subdomain>.<project>.localhost
            table = self._tables.get(project)
            if table is not None:
                return table.route(sub, project) or Route(RouteKind.UNKNOWN, project=project)
            if project in self._departed:
                return Route(RouteKind.PROJECT_GONE, subdomain=sub, project=project)
            return Route(RouteKind.UNKNOWN)
        found = [r for p, t in self._tables.items() if (r := t.route(name, p)) is not None]
        upstream = [r for r in found if r.kind is RouteKind.UPSTREAM]
        if len(upstream) > 1:
            choices = tuple(RouteEntry(name, r.service or "", r.port or 0, r.project) for r in upstream)
            return Route(RouteKind.AMBIGUOUS, subdomain=name, choices=choices)
        if upstream or len(found) == 1:
            return (upstream or found)[0]
        if name in self._tables:
            return Route(RouteKind.INDEX, project=name)  # <project>.localhost: its services
        gone = [p for p, subs in self._departed.items() if name in subs or name == p]
        if gone:
            return Route(RouteKind.PROJECT_GONE, subdomain=name, project=gone[-1])
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
    START = "start"  # it is idle (SPEC §13): have its supervisor start it, then wait for it
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
    if state is ServiceState.IDLE:
        return Verdict.START
    if state is ServiceState.STOPPED and reason == RESTARTING_REASON:
        return Verdict.HOLD  # between the old process's exit and the new one's spawn
    return Verdict.FAIL
