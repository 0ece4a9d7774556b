"""The dependency graph on networkx: start/stop order, waves, closures, cycles, on small and random graphs."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from a3s_dev.config import graph
from a3s_dev.config.model import DevConfig, ServiceDef
from a3s_dev.errors import UsageError

pytestmark = pytest.mark.timeout(30)


def make(deps: dict[str, list[str]]) -> DevConfig:
    """A config whose services are declared in dict order with these depends_on."""
    return DevConfig(
        path=Path("/tmp/A3sfile.hcl"),
        services=tuple(ServiceDef(name=n, cmd="true", dir=Path("/tmp"), depends_on=tuple(d)) for n, d in deps.items()),
    )


STACK = make(
    {
        "web": ["api"],
        "api": ["db", "cache"],
        "worker": ["api", "queue"],
        "db": [],
        "cache": [],
        "queue": [],
    }
)


def random_dag(n: int, seed: int, p: float = 0.05) -> DevConfig:
    """n services; each may depend on services of a lower rank; declared in shuffled order."""
    rng = random.Random(seed)
    names = [f"s{i:03d}" for i in range(n)]
    deps = {name: [names[j] for j in range(i) if rng.random() < p] for i, name in enumerate(names)}
    order = names[:]
    rng.shuffle(order)
    return make({name: deps[name] for name in order})


def test_start_order_puts_dependencies_first_and_breaks_ties_by_declaration() -> None:
    assert graph.start_order(STACK) == ["db", "cache", "api", "web", "queue", "worker"]


def test_stop_order_is_the_reverse() -> None:
    assert graph.stop_order(STACK) == ["worker", "queue", "web", "api", "cache", "db"]


def test_waves_group_what_can_start_together() -> None:
    assert [list(w) for w in graph.plan(STACK).waves] == [["db", "cache", "queue"], ["api"], ["web", "worker"]]


def test_dependency_closure_for_up_svc() -> None:
    assert graph.plan(STACK).closure(["web"]) == ["db", "cache", "api", "web"]
    assert graph.plan(STACK).closure(["worker", "db"]) == ["db", "cache", "api", "queue", "worker"]


def test_dependents_closure_for_down_svc() -> None:
    assert graph.plan(STACK).dependents_closure(["db"]) == ["worker", "web", "api", "db"]
    assert graph.plan(STACK).dependents_closure(["queue"]) == ["worker", "queue"]


def test_unknown_service_in_a_closure_is_a_usage_error_with_suggestion() -> None:
    with pytest.raises(UsageError, match=r"unknown service 'wbe' \(did you mean 'web'\?\)"):
        graph.known(STACK, ["wbe"])


def test_three_cycle_is_reported_as_a_path() -> None:
    cfg = make({"a": ["b"], "b": ["c"], "c": ["a"], "d": []})
    assert graph.find_cycle(cfg) == ["a", "b", "c", "a"]
    with pytest.raises(UsageError, match="dependency cycle: a -> b -> c -> a"):
        graph.start_order(cfg)
    with pytest.raises(UsageError, match="dependency cycle"):
        graph.plan(cfg)


def test_acyclic_graph_has_no_cycle() -> None:
    assert graph.find_cycle(STACK) is None


@pytest.mark.parametrize("seed", range(5))
def test_200_service_random_dag_orders_waves_and_closures_hold(seed: int) -> None:
    cfg = random_dag(200, seed)
    deps = {s.name: set(s.depends_on) for s in cfg.services}
    g = graph.build(cfg)
    assert list(g.nodes) == list(cfg.names)
    order = graph.start_order(cfg)
    position = {n: i for i, n in enumerate(order)}
    assert sorted(order) == sorted(cfg.names)
    assert all(position[d] < position[s.name] for s in cfg.services for d in s.depends_on)
    # Ties go to declaration order: each service comes as early as its dependencies allow,
    # so no service declared earlier and ready by then is placed after it.
    declared = {n: i for i, n in enumerate(cfg.names)}
    for i, name in enumerate(order):
        ready_then = [n for n in order[i:] if deps[n] <= set(order[:i])]
        assert name == min(ready_then, key=declared.__getitem__)
    plan = graph.plan(cfg)
    waves = plan.waves
    assert sum(len(w) for w in waves) == 200
    wave_of = {n: i for i, w in enumerate(waves) for n in w}
    assert all(wave_of[d] < wave_of[s.name] for s in cfg.services for d in s.depends_on)
    assert all(not deps[n] or max(wave_of[d] for d in deps[n]) == wave_of[n] - 1 for n in cfg.names)
    some = [cfg.names[7], cfg.names[42]]

    def reach(edges: dict[str, set[str]], start: list[str]) -> set[str]:
        seen, todo = set(), list(start)
        while todo:
            if (n := todo.pop()) not in seen:
                seen.add(n)
                todo += edges[n]
        return seen

    dependents = {n: {m for m in cfg.names if n in deps[m]} for n in cfg.names}
    assert set(plan.closure(some)) == reach(deps, some)
    assert set(plan.dependents_closure(some)) == reach(dependents, some)


@pytest.mark.parametrize("seed", range(20))
def test_a_cycle_is_found_exactly_when_there_is_one(seed: int) -> None:
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(30)]
    cfg = make({n: rng.sample(names, rng.randint(0, 2)) for n in names})
    deps = {s.name: [d for d in s.depends_on if d != s.name] for s in cfg.services}
    cycle = graph.find_cycle(cfg)
    assert (cycle is None) == graph.acyclic(deps)
    if cycle is None:
        graph.start_order(cfg)  # no cycle: an order exists
    else:
        assert cycle[0] == cycle[-1]
        assert all(b in deps[a] for a, b in itertools.pairwise(cycle))  # each step a real depends_on


def test_long_chain_does_not_hit_the_recursion_limit() -> None:
    n = 5000
    cfg = make({f"s{i}": ([f"s{i + 1}"] if i + 1 < n else []) for i in range(n)})
    assert graph.start_order(cfg)[0] == f"s{n - 1}"
    assert graph.find_cycle(cfg) is None
