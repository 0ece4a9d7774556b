"""The dashboard's server-rendered page (SPEC §7, §16): buttons that follow the state, a graph
whose edges never pass under a box. Pure: the HTML as served, read back."""

from __future__ import annotations

import itertools
import re

import pytest

from a3s_dev.core.state import ServiceState, ServiceStatus
from a3s_dev.dashboard.board import ACTIONS, NODE_H, NODE_W, Board, render_dashboard, render_graph

S = ServiceState


def board(statuses: list[ServiceStatus], depends_on: dict[str, list[str]], waves: list[list[str]]) -> Board:
    return Board("shop", "/shop/A3sfile.hcl", statuses, {}, waves, depends_on)


@pytest.mark.parametrize(
    ("state", "shown"),
    [
        (S.RUNNING, {"restart", "stop"}),
        (S.STARTING, {"restart", "stop"}),
        (S.STOPPED, {"start"}),
        (S.FAILED, {"start"}),
        (S.COMPLETED, {"start"}),  # a task that is done: run it again, never "stop"
        (S.PENDING, {"stop"}),
        (S.STOPPING, set()),
    ],
)
def test_a_services_buttons_follow_its_state(state: ServiceState, shown: set[str]) -> None:
    page = render_dashboard([board([ServiceStatus("api", state)], {"api": []}, [["api"]])], token="t", now=0.0)
    assert set(re.findall(r'data-act="(\w+)"', page)) == shown
    assert set(ACTIONS[state.value]) == shown


def test_the_page_carries_the_actions_table_and_asks_for_no_favicon() -> None:
    page = render_dashboard([], token="t", now=0.0)
    assert 'data-actions="{&quot;pending&quot;: [&quot;stop&quot;]' in page
    assert '<link rel="icon" href="data:,">' in page


Point = tuple[float, float]


def _segments(svg: str) -> list[tuple[Point, Point]]:
    segments: list[tuple[Point, Point]] = []
    for x1, y1, x2, y2 in re.findall(r'<line x1="([\d.]+)" y1="([\d.]+)" x2="([\d.]+)" y2="([\d.]+)"', svg):
        segments.append(((float(x1), float(y1)), (float(x2), float(y2))))
    for points in re.findall(r'<polyline points="([^"]+)"', svg):
        xy: list[Point] = [(float(p.split(",")[0]), float(p.split(",")[1])) for p in points.split()]
        segments += list(itertools.pairwise(xy))
    return segments


def _boxes(svg: str) -> dict[str, tuple[float, float]]:
    return {
        name: (float(x), float(y))
        for name, x, y in re.findall(r'data-service="([^"]+)"><rect x="([\d.]+)" y="([\d.]+)"', svg)
    }


def _crosses(segment: tuple[tuple[float, float], tuple[float, float]], box: tuple[float, float]) -> bool:
    """Whether an axis-parallel or sloped segment enters the box's interior (sampled finely)."""
    (x1, y1), (x2, y2) = segment
    bx, by = box
    for k in range(201):
        t = k / 200
        x, y = x1 + (x2 - x1) * t, y1 + (y2 - y1) * t
        if bx + 0.5 < x < bx + NODE_W - 0.5 and by + 0.5 < y < by + NODE_H - 0.5:
            return True
    return False


def test_no_edge_passes_under_a_box_other_than_its_ends() -> None:
    """SPEC §16: postgres -> api ran under migrate's box, redis -> api crossed worker."""
    deps = {
        "postgres": [], "redis": [], "migrate": ["postgres"], "worker": ["redis", "migrate"],
        "api": ["postgres", "redis", "migrate"], "web": ["api"], "admin": ["postgres", "api"],
    }
    waves = [["postgres", "redis"], ["migrate"], ["worker", "api"], ["web", "admin"]]
    svg = render_graph(board([ServiceStatus(n, S.RUNNING) for n in deps], deps, waves))
    boxes = _boxes(svg)
    edges = [(dep, name) for name, ds in deps.items() for dep in ds]
    routes = re.findall(r"<(?:line|polyline)[^>]*>", svg)
    assert len(routes) == len(edges)
    for route, (dep, name) in zip(routes, edges):
        for segment in _segments(route):
            for other, box in boxes.items():
                if other not in (dep, name):
                    assert not _crosses(segment, box), f"{dep} -> {name} passes under {other}"
