"""The dashboard's HTML as served (SPEC §7): every project, each service's row, the dependency
graph as SVG. Pure: the page is complete without any script (curl can read it); the shipped
script (`static/dashboard.js`) then keeps it live. Everything shown is HTML-escaped.
"""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from a3s_dev.config.model import format_duration
from a3s_dev.core.state import ACTIVE_STATES, ServiceState, ServiceStatus

ASSETS = "/_a3s"  # where the page's script and style are served

# What a user may ask of a service in each state (SPEC §16: no start on a running service,
# no stop on a completed task). The page carries it for the script (`data-actions`).
ACTIONS: dict[str, tuple[str, ...]] = {
    "pending": ("stop",),
    "starting": ("restart", "stop"),
    "running": ("restart", "stop"),
    "unhealthy": ("restart", "stop"),
    "backoff": ("restart", "stop"),
    "stopping": (),
    "stopped": ("start",),
    "idle": ("start", "stop"),  # lazy or idle-stopped: started by a request, or by hand
    "failed": ("start",),
    "completed": ("start",),
}


@dataclass(frozen=True)
class Board:
    """One project on the dashboard."""

    name: str
    a3sfile: str
    statuses: Sequence[ServiceStatus]
    links: Mapping[str, str]  # service -> its URL through the proxy
    waves: Sequence[Sequence[str]]  # topological generations of depends_on (networkx)
    depends_on: Mapping[str, Sequence[str]]
    colors: Mapping[str, str] = dataclasses.field(default_factory=dict)  # service -> its SGR color, as in the terminal


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def title(boards: Sequence[Board]) -> str:
    """The tab's title: says when something failed."""
    failed = sum(1 for b in boards for s in b.statuses if s.state is ServiceState.FAILED)
    return f"✖ {failed} failed · a3s" if failed else "a3s"


def render_dashboard(boards: Sequence[Board], *, token: str, now: float) -> str:
    sections = "".join(_project(b, now) for b in boards)
    if not sections:
        sections = '<p class="empty">No project is running. Run <code>a3s up</code> in a project\'s folder.</p>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="a3s-token" content="{esc(token)}">'
        f"<title>{esc(title(boards))}</title>"
        '<link rel="icon" href="data:,">'  # no icon: browsers then never ask for /favicon.ico
        f'<link rel="stylesheet" href="{ASSETS}/dashboard.css">'
        f'<script type="module" src="{ASSETS}/dashboard.js"></script>'
        "</head><body>"
        '<header class="top"><h1>a3s</h1><span id="live" class="live" title="live updates">offline</span></header>'
        f'<main id="projects" data-actions="{esc(json.dumps(ACTIONS))}">{sections}</main>'
        '<section id="logs" hidden><div id="log-resize" title="drag to resize"></div>'
        '<div class="logbar"><strong id="log-title"></strong>'
        '<input id="log-filter" type="search" placeholder="filter" aria-label="filter the log">'
        '<label><input id="log-probes" type="checkbox"> a3s probes</label>'
        '<button id="log-pause" type="button">pause</button>'
        '<button id="log-clear" type="button">clear</button>'
        '<button id="log-close" type="button">close</button><span id="log-count"></span></div>'
        '<div id="log" class="log" tabindex="0"></div></section>'
        "</body></html>\n"
    )


def _project(board: Board, now: float) -> str:
    p = esc(board.name)
    rows = "".join(_row(board, st, now) for st in board.statuses)
    return (
        f'<section class="project" data-project="{p}" data-colors="{esc(json.dumps(dict(board.colors)))}">'
        f'<h2>{p} <small>{esc(board.a3sfile)}</small> '
        f'<button type="button" class="logs-all" data-project="{p}">logs</button> '
        f'<button type="button" class="stop-project" data-project="{p}">stop project</button></h2>'
        f'<div class="graph">{render_graph(board)}</div>'
        '<table class="services"><thead><tr><th>service</th><th>state</th><th>probe</th><th>pid</th>'
        "<th>port</th><th>cpu</th><th>mem</th><th>uptime</th><th>restarts</th><th>link</th><th></th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _row(board: Board, st: ServiceStatus, now: float) -> str:
    live = st.state in ACTIVE_STATES
    started = st.started_at if live and st.started_at is not None else ""
    uptime = format_duration(max(0.0, now - st.started_at)) if live and st.started_at is not None else ""
    url = board.links.get(st.name)
    # A service that is not HTTP (`proxy = false`) gets its address, never a link.
    link = f'<a href="{esc(url)}">{esc(url)}</a>' if url else esc(st.url)
    s, p = esc(st.name), esc(board.name)
    buttons = "".join(
        f'<button type="button" data-act="{a}" data-project="{p}" data-service="{s}">{a}</button>'
        for a in ACTIONS.get(st.state.value, ())
    )
    return (
        f'<tr class="service" data-project="{p}" data-service="{s}" data-started="{esc(started)}">'
        f'<td class="name"><button type="button" class="logs" data-project="{p}" data-service="{s}">{s}</button></td>'
        f'<td class="state"><span class="state state-{esc(st.state.value)}">{esc(st.state.value)}</span></td>'
        f'<td class="probe">{esc(st.probe if live else st.reason)}</td>'
        f'<td class="pid">{esc(st.pid if live else "")}</td>'
        f'<td class="port">{esc(st.port)}</td>'
        f'<td class="cpu">{esc(cpu_text(st.cpu) if live else "")}</td>'
        f'<td class="mem">{esc(mem_text(st.rss) if live else "")}</td>'
        f'<td class="uptime">{esc(uptime)}</td>'
        f'<td class="restarts">{esc(st.restarts)}</td>'
        f'<td class="link">{link}</td>'
        f'<td class="actions">{buttons}</td></tr>'
    )


def cpu_text(cpu: float | None) -> str:
    return "" if cpu is None else f"{cpu:.1f}%"


def mem_text(rss: int | None) -> str:
    """Resident memory in MB, as the terminal's MEM column rounds it."""
    return "" if rss is None else f"{rss / (1 << 20):.0f} MB"


NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 140, 30, 50, 14, 8


def edge_route(start: tuple[float, float], end: tuple[float, float]) -> list[tuple[float, float]]:
    """The points of an arrow from the box at `start` (a dependency) to the box at `end` (its
    dependent, in a later column), both top-left corners. Between neighbouring columns it is
    straight; across columns it turns into the gap after the first, runs along the gap between
    two rows nearest the middle of its ends (no box is ever there: rows share one grid), and
    turns down or up again in the gap before the last, so it never passes under a box."""
    (x1, y1), (x2, y2) = start, end
    a, b = (x1 + NODE_W, y1 + NODE_H / 2), (x2, y2 + NODE_H / 2)
    if x2 - x1 <= NODE_W + GAP_X:
        return [a, b]
    middle = (a[1] + b[1]) / 2
    # row gaps: the space above row r, centred, for r = 0 (above the first row) and onwards
    rows = int(max(y1, y2) // (NODE_H + GAP_Y)) + 2
    lane = min((PAD + r * (NODE_H + GAP_Y) - GAP_Y / 2 for r in range(rows)), key=lambda y: (abs(y - middle), y))
    gx1, gx2 = a[0] + GAP_X / 2, b[0] - GAP_X / 2
    return [a, (gx1, a[1]), (gx1, lane), (gx2, lane), (gx2, b[1]), b]


def render_graph(board: Board) -> str:
    """The dependency graph, one column per topological generation, an arrow from each
    dependency to its dependent, each node colored by its service's state."""
    where: dict[str, tuple[float, float]] = {}
    for col, wave in enumerate(board.waves):
        for row, name in enumerate(wave):
            where[name] = (PAD + col * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y))
    if not where:
        return ""
    width = PAD * 2 + len(board.waves) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max(len(w) for w in board.waves) * (NODE_H + GAP_Y) - GAP_Y
    states = {s.name: s.state.value for s in board.statuses}
    edges = []
    for name, deps in board.depends_on.items():
        for dep in deps:
            if dep in where and name in where:
                points = edge_route(where[dep], where[name])
                if len(points) == 2:
                    (x1, y1), (x2, y2) = points
                    edges.append(f'<line x1="{x1:g}" y1="{y1:g}" x2="{x2:g}" y2="{y2:g}" marker-end="url(#arrow)"/>')
                else:
                    path = " ".join(f"{x:g},{y:g}" for x, y in points)
                    edges.append(f'<polyline points="{path}" marker-end="url(#arrow)"/>')
    nodes = []
    for name, (x, y) in where.items():
        label = name if len(name) <= 18 else name[:17] + "…"
        nodes.append(
            f'<g class="node state-{esc(states.get(name, "stopped"))}" data-service="{esc(name)}">'
            f'<rect x="{x:g}" y="{y:g}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<text x="{x + NODE_W / 2:g}" y="{y + NODE_H / 2 + 4:g}">{esc(label)}</text><title>{esc(name)}</title></g>'
        )
    return (
        f'<svg class="deps" role="img" aria-label="dependency graph of {esc(board.name)}" '
        f'width="{width:g}" height="{height:g}" viewBox="0 0 {width:g} {height:g}">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>'
        f'<g class="edges">{"".join(edges)}</g>{"".join(nodes)}</svg>'
    )
