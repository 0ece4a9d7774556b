"""config.diff: what applying an edited A3sfile to a running stack does (SPEC §16)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from a3s_dev.config.diff import diff, keep_ports
from a3s_dev.config.model import DevConfig, GlobalSettings, ServiceDef

ROOT = Path("/proj")


def svc(name: str, port: int | None = None, **kw: object) -> ServiceDef:
    return ServiceDef(name, kw.pop("cmd", "run"), ROOT, port=port, **kw)  # type: ignore[arg-type]


def config(*services: ServiceDef, settings: GlobalSettings | None = None) -> DevConfig:
    return DevConfig(ROOT / "A3sfile.hcl", settings or GlobalSettings(), services)


def test_nothing_changed_is_an_empty_diff_even_when_blocks_moved() -> None:
    running = config(svc("db", 5432, line=1), svc("api", 8000, line=5))
    edited = config(svc("db", 5432, line=10), svc("api", 8000, line=2))
    assert diff(running, edited).empty


def test_added_removed_and_changed_services_are_named_with_what_changed() -> None:
    running = config(svc("db", 5432), svc("api", 8000), svc("old"))
    edited = config(svc("db", 5432), svc("api", 8000, cmd="run --reload", env={"A": "1"}), svc("new"))
    changes = diff(running, edited)
    assert (changes.added, changes.removed, changes.changed) == (("new",), ("old",), {"api": ("cmd", "env")})
    assert changes.lines() == [
        "old: removed from the A3sfile, stopping it",
        "api: changed (cmd, env), restarting it",
        "new: new in the A3sfile, starting it",
    ]


def test_dependents_restart_only_when_a_dependencys_address_changed() -> None:
    running = config(svc("db", 5432), svc("api", 8000, depends_on=("db",)), svc("web", 3000, depends_on=("api",)))
    env_only = config(svc("db", 5432, env={"X": "1"}), running.services[1], running.services[2])
    assert diff(running, env_only).dependents == ()
    moved = config(svc("db", 5433), running.services[1], running.services[2])
    assert diff(running, moved).dependents == ("api",)  # web's A3S_API_URL did not change


def test_automatic_ports_already_chosen_are_kept() -> None:
    running = config(svc("api", 41234, auto_port=True))
    edited = keep_ports(running, config(svc("api", None, auto_port=True), svc("new", None, auto_port=True)))
    assert edited.service("api").port == 41234 and edited.service("new").port is None
    assert diff(running, edited).changed == {}


def test_a_changed_dev_block_is_said_and_left_for_a_new_supervisor() -> None:
    running = config(svc("api", 8000))
    edited = dataclasses.replace(running, settings=GlobalSettings(https=True))
    changes = diff(running, edited)
    assert changes.settings == ("https",) and not changes.changed
    assert "dev block changed (https): not applied to a running stack" in changes.lines()[-1]
