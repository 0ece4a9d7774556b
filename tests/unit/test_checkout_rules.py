"""SPEC §13's pure rules: which services profiles start, and the wrong port in words."""

from __future__ import annotations

from pathlib import Path

from a3s_dev.config.model import DevConfig, ServiceDef
from a3s_dev.core.state import wrong_port


def test_profiles_choose_the_services_without_one_and_those_in_a_chosen_one() -> None:
    config = DevConfig(Path("/x/A3sfile.hcl"), services=(
        ServiceDef("api", "x", Path("/x")),
        ServiceDef("web", "x", Path("/x"), profiles=("front",)),
        ServiceDef("e2e", "x", Path("/x"), profiles=("e2e", "front")),
    ))
    assert config.chosen(()) == ["api"]
    assert config.chosen(["front"]) == ["api", "web", "e2e"]
    assert config.chosen(["e2e"]) == ["api", "e2e"]
    assert config.profiles == {"front": ["web", "e2e"], "e2e": ["e2e"]}


def test_the_wrong_port_names_both_and_the_flag_of_a_known_dev_server() -> None:
    assert wrong_port("web", 18001, [5173], "npx vite") == \
        "web listens on 5173, not on its port 18001 (pass --port $PORT --strictPort)"
    assert wrong_port("web", 18001, [3000], "node_modules/.bin/next dev") == \
        "web listens on 3000, not on its port 18001 (pass -p $PORT)"
    assert wrong_port("api", 8000, [8080, 9090], "python app.py") == \
        "api listens on 8080, 9090, not on its port 8000 (make it listen on $PORT)"
    assert wrong_port("web", 18001, [18001, 24678], "vite --port $PORT") is None  # it does listen there
    assert wrong_port("web", 18001, [], "vite") is None  # nothing listens yet: nothing to say


def test_up_starts_every_service_but_the_lazy_ones_nothing_started_needs() -> None:
    config = DevConfig(Path("/x/A3sfile.hcl"), services=(
        ServiceDef("db", "x", Path("/x"), lazy=True),
        ServiceDef("api", "x", Path("/x"), depends_on=("db",)),
        ServiceDef("docs", "x", Path("/x"), lazy=True),
        ServiceDef("web", "x", Path("/x"), lazy=True, profiles=("front",)),
    ))
    assert config.eager == ["db", "api"]  # db is lazy, but api needs it
    assert config.needed(["web"]) == ["web"] and config.needed(["api"]) == ["db", "api"]
    assert config.chosen(["front"]) == ["api"]  # a lazy service waits for its request, profile or not
