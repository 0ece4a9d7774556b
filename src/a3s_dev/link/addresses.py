"""The addresses a supervisor announces and the shared proxy routes: `<subdomain>.<project>.localhost`
for every service with a port that is not `proxy = false` (SPEC §6). Pure: both sides of the link
import it, so the banner `a3s up` prints and the proxy's routing table cannot disagree."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from a3s_dev.config.model import ServiceDef


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One line of the routing table: `subdomain.project.localhost` -> service on port."""

    subdomain: str
    service: str
    port: int
    project: str = ""


def routed(project: str, services: Iterable[ServiceDef]) -> list[RouteEntry]:
    """One project's routing table, in declaration order: each service the proxy forwards to."""
    return [
        RouteEntry((svc.subdomain or svc.name).lower(), svc.name, svc.port, project)
        for svc in services
        if svc.port is not None and svc.proxy is not False
    ]


def route_url(entry: RouteEntry, proxy_port: int, scheme: str = "http") -> str:
    """`http://<subdomain>.<project>.localhost:<port>/`: the address that names one service
    whatever else runs (SPEC §6)."""
    project = f".{entry.project}" if entry.project else ""
    return f"{scheme}://{entry.subdomain}{project}.localhost:{proxy_port}/"


def proxy_banner(entries: Iterable[RouteEntry], proxy_port: int, https_port: int | None = None) -> str:
    """The one line `a3s up` prints once registered with the proxy: where each service is."""
    if https_port is not None:
        urls = ", ".join(route_url(e, https_port, "https").rstrip("/") for e in entries)
        where = f"proxy on http://localhost:{proxy_port} and https://localhost:{https_port}"
    else:
        urls = ", ".join(route_url(e, proxy_port).rstrip("/") for e in entries)
        where = f"proxy on http://localhost:{proxy_port}"
    return where + (f": {urls}" if urls else " (no service has a port)")


def dashboard_url(proxy_port: int, scheme: str = "http") -> str:
    """The dashboard's address on the proxy on `proxy_port`."""
    return f"{scheme}://a3s.localhost:{proxy_port}/"


def login_link(proxy_port: int, token: str) -> str:
    """The dashboard's address with a one-time login token (where the dashboard asks for one)."""
    return f"{dashboard_url(proxy_port)}?login={token}"
