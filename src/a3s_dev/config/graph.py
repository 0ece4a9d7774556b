"""The dependency graph of a DevConfig on networkx: start and stop order, waves, closures, cycles.

`build` makes a DiGraph with one node per service (declaration order) and an edge
dependency -> dependent, so that networkx's topological algorithms give dependencies first,
`ancestors` are what a service needs and `descendants` what needs it. networkx costs
~150 ms to import, so it is imported on first use: `a3s status` never loads this module's
engine, and the supervisor computes its `plan` in a worker thread once the services that wait
for nothing are spawned (`independent`, plain Python) and up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from a3s_dev.errors import UsageError, unknown_service

if TYPE_CHECKING:
    import networkx as nx

    from a3s_dev.config.model import DevConfig


def dependencies(config: DevConfig) -> dict[str, tuple[str, ...]]:
    """Each service's known dependencies, in declaration order (unknown names and itself dropped)."""
    names = set(config.names)
    return {s.name: tuple(d for d in s.depends_on if d in names and d != s.name) for s in config.services}


def graph_of(deps: Mapping[str, Sequence[str]]) -> nx.DiGraph:
    """A DiGraph of `deps` (name -> the names it depends on): nodes in mapping order, edges dep -> name."""
    import networkx as nx

    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(deps)
    graph.add_edges_from((d, name) for name, ds in deps.items() for d in ds if d in deps)
    return graph


def build(config: DevConfig) -> nx.DiGraph:
    """The config's graph: one node per service in declaration order, an edge dependency -> dependent."""
    return graph_of(dependencies(config))


def acyclic(deps: Mapping[str, Sequence[str]]) -> bool:
    """True when `deps` (name -> the names it depends on) has no cycle.

    The stdlib's graphlib answers this in microseconds without networkx, so `a3s up` can
    refuse a cycle before spawning anything and still spawn its first wave before networkx
    is imported; the cycle's path, when there is one, comes from networkx (`cycle_in`).
    """
    import graphlib

    try:
        graphlib.TopologicalSorter({n: [d for d in ds if d in deps] for n, ds in deps.items()}).prepare()
    except graphlib.CycleError:
        return False
    return True


def cycle_in(deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One dependency cycle as a closed path [a, b, c, a] (a depends on b ...), or None.

    The search starts at the first declared service, so the path reads from the service a
    user is most likely to look at first.
    """
    import networkx as nx

    graph = graph_of(deps).reverse(copy=False)  # edges name -> dependency: the path reads "needs"
    try:
        edges = nx.find_cycle(graph, source=list(deps))
    except nx.NetworkXNoCycle:
        return None
    return [u for u, _ in edges] + [edges[0][0]]


def find_cycle(config: DevConfig) -> list[str] | None:
    """A dependency cycle of the config as a closed path (`a -> b -> a`), or None."""
    return cycle_in(dependencies(config))


def _cycle_error(config: DevConfig) -> UsageError:
    return UsageError(f"dependency cycle: {' -> '.join(find_cycle(config) or [])}")


def start_order(config: DevConfig) -> list[str]:
    """Every service, dependencies before dependents, declaration order breaking ties.

    Raises UsageError when the services form a cycle (a validated config never does).
    """
    import networkx as nx

    index = {name: i for i, name in enumerate(config.names)}
    try:
        return list(nx.lexicographical_topological_sort(build(config), key=index.__getitem__))
    except nx.NetworkXUnfeasible:
        raise _cycle_error(config) from None


def stop_order(config: DevConfig) -> list[str]:
    """Every service, dependents before their dependencies (the start order reversed)."""
    return start_order(config)[::-1]


def independent(config: DevConfig, wanted: Iterable[str]) -> list[str]:
    """The `wanted` services that wait for no other wanted one: they can be spawned at once.

    Plain Python on purpose: `a3s up` spawns these before networkx is imported.
    """
    chosen = list(wanted)
    keep = set(chosen)
    return [n for n in chosen if not any(d in keep for d in config.service(n).depends_on)]


def known(config: DevConfig, names: Iterable[str]) -> list[str]:
    """`names` without repeats; UsageError with a "did you mean" for the first unknown one."""
    wanted = list(dict.fromkeys(names))
    error = unknown_service(wanted, config.names)
    if error is not None:
        raise error
    return wanted


@dataclass(frozen=True)
class Plan:
    """What the supervisor does with the graph, decided once as plain data (networkx computes it)."""

    order: tuple[str, ...]  # start order: dependencies first, declaration order breaking ties
    waves: tuple[tuple[str, ...], ...]  # topological generations: the launch plan
    needs: Mapping[str, frozenset[str]]  # each service's transitive dependencies (ancestors)
    needed_by: Mapping[str, frozenset[str]]  # its transitive dependents (descendants)
    dependents: Mapping[str, tuple[str, ...]]  # its direct dependents, declaration order

    def closure(self, names: Iterable[str]) -> list[str]:
        """`names` and what they depend on, in start order."""
        keep = set(names)
        for name in list(keep):
            keep |= self.needs.get(name, frozenset())
        return [n for n in self.order if n in keep]

    def dependents_closure(self, names: Iterable[str]) -> list[str]:
        """`names` and what depends on them, in stop order."""
        keep = set(names)
        for name in list(keep):
            keep |= self.needed_by.get(name, frozenset())
        return [n for n in reversed(self.order) if n in keep]


def plan_of(deps: Mapping[str, Sequence[str]]) -> Plan:
    """The plan of `deps` (name -> the names it depends on, in declaration order); a cycle is a
    UsageError (a validated config has none)."""
    import networkx as nx

    graph = graph_of(deps)
    index = {name: i for i, name in enumerate(deps)}
    try:
        order = tuple(nx.lexicographical_topological_sort(graph, key=index.__getitem__))
        waves = tuple(tuple(sorted(gen, key=index.__getitem__)) for gen in nx.topological_generations(graph))
    except nx.NetworkXUnfeasible:
        raise UsageError(f"dependency cycle: {' -> '.join(cycle_in(deps) or [])}") from None
    return Plan(
        order,
        waves,
        {n: frozenset(nx.ancestors(graph, n)) for n in deps},
        {n: frozenset(nx.descendants(graph, n)) for n in deps},
        {n: tuple(sorted(graph.successors(n), key=index.__getitem__)) for n in deps},
    )


def plan(config: DevConfig) -> Plan:
    """The config's plan, computed here (networkx imported in this process)."""
    return plan_of(dependencies(config))
