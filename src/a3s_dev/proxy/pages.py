"""The proxy's HTML pages: unknown host, service unavailable (with its last log lines), the index.

Pure functions of what they show; everything shown is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Protocol

from a3s_dev.core.state import ServiceState, ServiceStatus, exited
from a3s_dev.link.addresses import RouteEntry, route_url


class ProxyStats(Protocol):
    """What a running proxy counts (`a3s_proxy_*` in its /metrics)."""

    direct: int
    handed_over: int

_STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}"
    "pre{background:#f4f4f4;padding:1em;overflow:auto;font:13px/1.4 monospace}"
    "table{border-collapse:collapse}td,th{padding:.2em 1em .2em 0;text-align:left}"
    "code{background:#f4f4f4;padding:0 .3em}"
)


def _page(title: str, body: str, *, refresh: int | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        f'<!doctype html><html><head><meta charset="utf-8">{meta}<title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )


def _route_link(entry: RouteEntry, proxy_port: int) -> str:
    url = html.escape(route_url(entry, proxy_port))
    return f'<a href="{url}">{url}</a>'


def render_not_found(host: str | None, entries: Iterable[RouteEntry] | None, proxy_port: int) -> str:
    """404 page: the host is unknown; list every route as a link (None: not to be listed here,
    where the proxy cannot tell its user from others)."""
    heading = f"<h1>No service at {html.escape(host or '(no Host header)')}</h1>"
    if entries is None:
        return _page(
            "a3s: unknown host",
            heading + "<p>The routes are listed by <code>a3s status</code> and on the dashboard.</p>",
        )
    items = "".join(
        f"<li>{_route_link(e, proxy_port)}"
        f" &rarr; {html.escape(e.service)} (127.0.0.1:{e.port})</li>"
        for e in entries
    )
    listing = f"<ul>{items}</ul>" if items else "<p>No service has a <code>port</code>, so nothing is routed.</p>"
    return _page(
        "a3s: unknown host",
        f"{heading}<p>Known routes:</p>{listing}",
    )


def render_not_http(service: str, port: int | None) -> str:
    """404 page for a service that says `proxy = false`: it is not spoken to over HTTP."""
    where = f" It listens on <code>127.0.0.1:{port}</code>; connect to it there." if port else ""
    return _page(
        f"a3s: {service} is not an HTTP service",
        f"<h1>{html.escape(service)} is not an HTTP service</h1>"
        f"<p>Its A3sfile says <code>proxy = false</code>, so the proxy never sends it a request.{where}</p>",
    )


def render_loop(project: str, service: str, host: str, hops: int) -> str:
    """508 page: a request that came back through the proxy `hops` times; the service sends
    requests for its own address on to itself."""
    name = html.escape(service)
    return _page(
        f"a3s: {service} loops back to itself",
        f"<h1>{name} loops back to itself</h1>"
        f"<p>This request came through the proxy {hops} times for <code>{html.escape(host)}</code>: "
        f"<b>{name}</b> (project <code>{html.escape(project)}</code>) sends it on to an address the "
        f"proxy routes back to {name}. A dev server's proxy pointed at its own subdomain does this; "
        f"point it at the service it means instead.</p>",
    )


def render_unavailable(
    status: ServiceStatus,
    lines: Iterable[str],
    *,
    detail: str | None = None,
    refresh: int | None = 3,
    log_shown: bool = True,
) -> str:
    """502/503 page: which service, in which state, why, and its last log lines (escaped);
    `log_shown=False`: where to read them instead, where the proxy cannot tell its user from others."""
    # the exit of a crash says something; that of a requested stop (SIGTERM) is noise
    crashed = status.state in (ServiceState.FAILED, ServiceState.BACKOFF)
    exit_text = exited(status.exit_code) if crashed and status.exit_code is not None else None
    exit_code = f" ({exit_text})" if exit_text else ""
    probe = f"last probe: {status.probe}" if status.probe else None
    reasons = [r for r in (status.reason, detail, probe) if r and r != exit_text]  # the heading has said it
    reason = "".join(f"<p>{html.escape(r)}</p>" for r in reasons)
    log = "\n".join(lines)
    if not log_shown:
        log_html = f"<p>Its log: <code>a3s logs {html.escape(status.name)}</code>, or the dashboard.</p>"
    elif log:
        log_html = f"<h2>Last log lines</h2><pre>{html.escape(log)}</pre>"
    else:
        log_html = "<p>(no output yet)</p>"
    heading = f"<h1>{html.escape(status.name)} is {html.escape(status.state.value)}{exit_code}</h1>"
    hint = _HINTS.get(status.state)
    hint_html = f"<p>{hint.format(name=html.escape(status.name))}</p>" if hint else ""
    footer = f"<p>This page reloads every {refresh} s.</p>" if refresh else ""
    return _page(
        f"a3s: {status.name} is {status.state.value}",
        heading + reason + hint_html + log_html + footer,
        refresh=refresh,
    )


# What the developer can do about it, by state (the page is read in a browser, the fix is in a terminal).
_HINTS = {
    ServiceState.STOPPED: "Start it with <code>a3s up {name}</code>.",
    ServiceState.FAILED: "Fix the error shown below, then <code>a3s restart {name}</code>.",
    ServiceState.COMPLETED: "It is a task (<code>oneshot</code>): it ran and exited; tasks serve no requests.",
    ServiceState.PENDING: "It waits for a dependency that failed; see <code>a3s status</code>.",
}


def render_login_needed(*, used: bool) -> str:
    """403 page of a dashboard that asks for a login: how to get one (`used`: the link was
    opened already, or is not one this proxy handed out)."""
    why = (
        "<p>This login link was used already, or is not one this proxy handed out.</p>"
        if used
        else "<p>This proxy cannot tell which user is on the other end of a connection here, so its "
        "dashboard asks for a login.</p>"
    )
    return _page(
        "a3s: log in to the dashboard",
        "<h1>Log in to the dashboard</h1>" + why
        + "<p>Open the dashboard link that <code>a3s up</code> printed, or run <code>a3s ls</code> "
        "for a new one. Each link works once; this browser then stays logged in until the proxy stops.</p>",
    )


def render_ambiguous(subdomain: str, choices: Iterable[RouteEntry], proxy_port: int) -> str:
    """409 page: several running projects have this subdomain; link each one's own address."""
    items = "".join(
        f"<li>{_route_link(e, proxy_port)}"
        f" &rarr; {html.escape(e.service)} of project {html.escape(e.project)}</li>"
        for e in choices
    )
    return _page(
        f"a3s: {subdomain} is in several projects",
        f"<h1>{html.escape(subdomain)}.localhost is in several projects</h1>"
        f"<p>Pick one; its own address works whatever else runs:</p><ul>{items}</ul>",
    )


def render_project_gone(project: str, running: Iterable[str], proxy_port: int) -> str:
    """The page for a host of a project whose supervisor is not running (any more)."""
    others = "".join(
        f'<li><a href="http://{html.escape(p)}.localhost:{proxy_port}/">{html.escape(p)}</a></li>' for p in running
    )
    listing = f"<p>Running projects:</p><ul>{others}</ul>" if others else "<p>No project is running.</p>"
    return _page(
        f"a3s: project {project} is not running",
        f"<h1>project {html.escape(project)} is not running</h1>"
        f"<p>Start it with <code>a3s up</code> in its folder.</p>{listing}",
    )


def render_proxy_metrics(counts: ProxyStats, projects: int) -> str:
    """The shared proxy's own Prometheus text (`http://a3s.localhost:<port>/metrics`)."""
    return "\n".join([
        "# HELP a3s_proxy_projects Projects registered with the proxy.",
        "# TYPE a3s_proxy_projects gauge",
        f"a3s_proxy_projects {projects}",
        "# HELP a3s_proxy_direct_requests_total Requests the proxy forwarded on its direct path.",
        "# TYPE a3s_proxy_direct_requests_total counter",
        f"a3s_proxy_direct_requests_total {counts.direct}",
        "# HELP a3s_proxy_handed_over_connections_total Client connections the proxy handed to its full"
        + " (aiohttp) path: bodies, WebSockets, held requests, pages.",
        "# TYPE a3s_proxy_handed_over_connections_total counter",
        f"a3s_proxy_handed_over_connections_total {counts.handed_over}",
    ]) + "\n"
