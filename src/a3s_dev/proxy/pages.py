"""The proxy's HTML pages: unknown host, service unavailable (with its last log lines), the index.

Pure functions of what they show; everything shown is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from a3s_dev.core.state import ServiceState, ServiceStatus, exited
from a3s_dev.proxy.router import RouteEntry

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


def route_url(entry: RouteEntry, proxy_port: int) -> str:
    return f"http://{entry.subdomain}.localhost:{proxy_port}/"


def proxy_banner(entries: Iterable[RouteEntry], proxy_port: int) -> str:
    """The one line `a3s up` prints once the proxy listens: where each service can be reached."""
    urls = ", ".join(route_url(e, proxy_port).rstrip("/") for e in entries)
    return f"proxy on http://localhost:{proxy_port}" + (f": {urls}" if urls else " (no service has a port)")


def render_not_found(host: str | None, entries: Iterable[RouteEntry], proxy_port: int) -> str:
    """404 page: the host is unknown; list every route as a link."""
    items = "".join(
        f'<li><a href="{html.escape(route_url(e, proxy_port))}">{html.escape(route_url(e, proxy_port))}</a>'
        f" &rarr; {html.escape(e.service)} (127.0.0.1:{e.port})</li>"
        for e in entries
    )
    listing = f"<ul>{items}</ul>" if items else "<p>No service has a <code>port</code>, so nothing is routed.</p>"
    return _page(
        "a3s: unknown host",
        f"<h1>No service at {html.escape(host or '(no Host header)')}</h1><p>Known routes:</p>{listing}",
    )


def render_not_http(service: str, port: int | None) -> str:
    """404 page for a service that says `proxy = false`: it is not spoken to over HTTP."""
    where = f" It listens on <code>127.0.0.1:{port}</code>; connect to it there." if port else ""
    return _page(
        f"a3s: {service} is not an HTTP service",
        f"<h1>{html.escape(service)} is not an HTTP service</h1>"
        f"<p>Its A3sfile says <code>proxy = false</code>, so the proxy never sends it a request.{where}</p>",
    )


def render_unavailable(
    status: ServiceStatus, lines: Iterable[str], *, detail: str | None = None, refresh: int | None = 3
) -> str:
    """502/503 page: which service, in which state, why, and its last log lines (escaped)."""
    # the exit of a crash says something; that of a requested stop (SIGTERM) is noise
    crashed = status.state in (ServiceState.FAILED, ServiceState.BACKOFF)
    exit_text = exited(status.exit_code) if crashed and status.exit_code is not None else None
    exit_code = f" ({exit_text})" if exit_text else ""
    probe = f"last probe: {status.probe}" if status.probe else None
    reasons = [r for r in (status.reason, detail, probe) if r and r != exit_text]  # the heading has said it
    reason = "".join(f"<p>{html.escape(r)}</p>" for r in reasons)
    log = "\n".join(lines)
    log_html = (
        f"<h2>Last log lines</h2><pre>{html.escape(log)}</pre>" if log else "<p>(no output yet)</p>"
    )
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


def render_index(statuses: Iterable[ServiceStatus], entries: Iterable[RouteEntry], proxy_port: int) -> str:
    """The page at localhost / a3s.localhost: every service, its state, its link."""
    links: dict[str, str] = {e.service: route_url(e, proxy_port) for e in entries}
    rows = []
    for st in statuses:
        url = links.get(st.name)
        # A service that is not HTTP (`proxy = false`) gets its address, never a link.
        link = f'<a href="{html.escape(url)}">{html.escape(url)}</a>' if url else html.escape(st.url or "")
        rows.append(
            f"<tr><td>{html.escape(st.name)}</td><td>{html.escape(st.state.value)}</td>"
            f"<td>{html.escape(st.health or '')}</td><td>{link}</td></tr>"
        )
    return _page(
        "a3s services",
        "<h1>a3s services</h1><table><tr><th>service</th><th>state</th><th>health</th><th>url</th></tr>"
        + "".join(rows)
        + "</table>",
        refresh=5,
    )
