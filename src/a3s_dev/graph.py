"""The dependency graph of a DevConfig: start order, stop order, waves, closures, cycles.

The graph is a networkx DiGraph with an edge dependency -> dependent (`to_networkx`).
The start order, cycles and closures are needed by `a3s validate` and by the first spawn
of `a3s up`, where importing networkx (~150 ms) would cost more than the whole command may
take; those are written here over plain dicts (Kahn's algorithm, one DFS, a reachability
walk), and the tests check them against networkx's own algorithms on random graphs.
`waves` and `to_networkx` use networkx, imported on first use.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from a3s_dev.errors import UsageError, unknown_service

if TYPE_CHECKING:
    import networkx as nx  # type: ignore[import-untyped]

    from a3s_dev.config import DevConfig


def dependencies(config: DevConfig) -> dict[str, tuple[str, ...]]:
    """Each service's known dependencies, in declaration order (unknown names dropped)."""
    names = set(config.names)
    return {s.name: tuple(d for d in s.depends_on if d in names and d != s.name) for s in config.services}


def _order_from(deps: Mapping[str, Sequence[str]]) -> list[str]:
    """Topological order; among services ready at the same time, declaration order first."""
    index = {name: i for i, name in enumerate(deps)}
    waiting = {name: len(set(ds)) for name, ds in deps.items()}
    dependents: dict[str, list[str]] = {name: [] for name in deps}
    for name, ds in deps.items():
        for d in set(ds):
            dependents[d].append(name)
    ready = [index[n] for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    names = list(deps)
    order: list[str] = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for dep in dependents[name]:
            waiting[dep] -= 1
            if waiting[dep] == 0:
                heapq.heappush(ready, index[dep])
    return order


def find_cycle_in(deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One dependency cycle as a closed path [a, b, c, a] (a depends on b ...), or None."""
    # Iterative DFS (a 10 000-service chain must not hit the recursion limit).
    color: dict[str, int] = {}
    for root in deps:
        if root in color:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = []
        while stack:
            node, i = stack.pop()
            if i == 0:
                color[node] = 1
                path.append(node)
            children = deps.get(node, ())
            if i < len(children):
                stack.append((node, i + 1))
                child = children[i]
                if color.get(child) == 1:
                    return path[path.index(child) :] + [child]
                if child not in color:
                    stack.append((child, 0))
            else:
                color[node] = 2
                path.pop()
    return None


def start_order(config: DevConfig) -> list[str]:
    """Every service, dependencies before dependents, declaration order breaking ties.

    Raises UsageError when the services form a cycle (a validated config never does).
    """
    deps = dependencies(config)
    order = _order_from(deps)
    if len(order) != len(deps):
        cycle = find_cycle_in(deps) or []
        raise UsageError(f"dependency cycle: {' -> '.join(cycle)}")
    return order


def find_cycle(config: DevConfig) -> list[str] | None:
    """A dependency cycle of the config as a closed path (`a -> b -> a`), or None."""
    return find_cycle_in(dependencies(config))


def stop_order(config: DevConfig) -> list[str]:
    """Every service, dependents before their dependencies (the start order reversed)."""
    return start_order(config)[::-1]


# ---------------------------------------------------------------------------- on networkx


def to_networkx(config: DevConfig) -> nx.DiGraph:
    """A DiGraph with one node per service (declaration order) and an edge dependency -> dependent."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(config.names)
    for name, deps in dependencies(config).items():
        graph.add_edges_from((d, name) for d in deps)
    return graph


def reachable(edges: Mapping[str, Iterable[str]], start: Iterable[str]) -> set[str]:
    """`start` and every name reachable from it through `edges` (name -> next names)."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges.get(name, ()))
    return seen


def dependents(config: DevConfig) -> dict[str, list[str]]:
    """Each service's direct dependents, in declaration order."""
    found: dict[str, list[str]] = {name: [] for name in config.names}
    for name, deps in dependencies(config).items():
        for dep in deps:
            found[dep].append(name)
    return found


def known(config: DevConfig, names: Iterable[str]) -> list[str]:
    """`names` without repeats; UsageError with a "did you mean" for the first unknown one."""
    wanted = list(dict.fromkeys(names))
    error = unknown_service(wanted, config.names)
    if error is not None:
        raise error
    return wanted


# The closures are plain Python like start_order: `a3s up SVC` needs them before networkx
# could even be imported. The tests check them against nx.ancestors / nx.descendants.


def dependency_closure(config: DevConfig, names: Iterable[str]) -> list[str]:
    """`names` and everything they depend on, transitively, in start order (for `up SVC`)."""
    keep = reachable(dependencies(config), known(config, names))
    return [n for n in start_order(config) if n in keep]


def dependents_closure(config: DevConfig, names: Iterable[str]) -> list[str]:
    """`names` and everything that depends on them, transitively, in stop order (for `down SVC`)."""
    keep = reachable(dependents(config), known(config, names))
    return [n for n in stop_order(config) if n in keep]


def waves(config: DevConfig) -> list[list[str]]:
    """Groups of services that can start together: wave N depends only on waves before it."""
    import networkx as nx

    index = {name: i for i, name in enumerate(config.names)}
    graph = to_networkx(config)
    try:
        return [sorted(gen, key=index.__getitem__) for gen in nx.topological_generations(graph)]
    except nx.NetworkXUnfeasible:
        cycle = find_cycle(config) or []
        raise UsageError(f"dependency cycle: {' -> '.join(cycle)}") from None
