"""The dependency graph: start/stop order, waves, closures, cycles — checked against networkx."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import networkx as nx
import pytest

from a3s_dev import graph
from a3s_dev.config import DevConfig, ServiceDef
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
    assert graph.waves(STACK) == [["db", "cache", "queue"], ["api"], ["web", "worker"]]


def test_dependency_closure_for_up_svc() -> None:
    assert graph.dependency_closure(STACK, ["web"]) == ["db", "cache", "api", "web"]
    assert graph.dependency_closure(STACK, ["worker", "db"]) == ["db", "cache", "api", "queue", "worker"]


def test_dependents_closure_for_down_svc() -> None:
    assert graph.dependents_closure(STACK, ["db"]) == ["worker", "web", "api", "db"]
    assert graph.dependents_closure(STACK, ["queue"]) == ["worker", "queue"]


def test_unknown_service_in_a_closure_is_a_usage_error_with_suggestion() -> None:
    with pytest.raises(UsageError, match=r"unknown service 'wbe' \(did you mean 'web'\?\)"):
        graph.dependency_closure(STACK, ["wbe"])


def test_three_cycle_is_reported_as_a_path() -> None:
    cfg = make({"a": ["b"], "b": ["c"], "c": ["a"], "d": []})
    assert graph.find_cycle(cfg) == ["a", "b", "c", "a"]
    with pytest.raises(UsageError, match="dependency cycle: a -> b -> c -> a"):
        graph.start_order(cfg)
    with pytest.raises(UsageError, match="dependency cycle"):
        graph.waves(cfg)


def test_acyclic_graph_has_no_cycle() -> None:
    assert graph.find_cycle(STACK) is None


@pytest.mark.parametrize("seed", range(5))
def test_200_service_random_dag_matches_networkx(seed: int) -> None:
    cfg = random_dag(200, seed)
    index = {name: i for i, name in enumerate(cfg.names)}
    g = graph.to_networkx(cfg)
    assert list(g.nodes) == list(cfg.names)
    expected = list(nx.lexicographical_topological_sort(g, key=index.__getitem__))
    order = graph.start_order(cfg)
    assert order == expected
    position = {n: i for i, n in enumerate(order)}
    assert all(position[d] < position[s.name] for s in cfg.services for d in s.depends_on)
    waves = graph.waves(cfg)
    assert sum(len(w) for w in waves) == 200
    wave_of = {n: i for i, w in enumerate(waves) for n in w}
    assert all(wave_of[d] < wave_of[s.name] for s in cfg.services for d in s.depends_on)
    some = [cfg.names[7], cfg.names[42]]
    closure = set(graph.dependency_closure(cfg, some))
    assert closure == set(some).union(*(nx.ancestors(g, n) for n in some))
    dependents = set(graph.dependents_closure(cfg, some))
    assert dependents == set(some).union(*(nx.descendants(g, n) for n in some))


@pytest.mark.parametrize("seed", range(20))
def test_cycle_finder_agrees_with_networkx_on_random_graphs(seed: int) -> None:
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(30)]
    cfg = make({n: rng.sample(names, rng.randint(0, 2)) for n in names})
    g = graph.to_networkx(cfg)
    cycle = graph.find_cycle(cfg)
    assert (cycle is None) == nx.is_directed_acyclic_graph(g)
    if cycle is not None:
        assert cycle[0] == cycle[-1]
        # each step is a real depends_on edge
        deps = {s.name: s.depends_on for s in cfg.services}
        assert all(b in deps[a] for a, b in itertools.pairwise(cycle))


def test_long_chain_does_not_hit_the_recursion_limit() -> None:
    n = 5000
    cfg = make({f"s{i}": ([f"s{i + 1}"] if i + 1 < n else []) for i in range(n)})
    assert graph.start_order(cfg)[0] == f"s{n - 1}"
    assert graph.find_cycle(cfg) is None


def test_validate_path_does_not_import_networkx() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from a3s_dev.config import DevConfig, ServiceDef\n"
        "from a3s_dev import graph\n"
        "from pathlib import Path\n"
        "cfg = DevConfig(Path('/x'), services=(ServiceDef('a', 'x', Path('/')),))\n"
        "graph.start_order(cfg); graph.find_cycle(cfg)\n"
        "import a3s_dev.validate, a3s_dev.entry\n"
        "print('networkx' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
